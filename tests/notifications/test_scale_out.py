"""Scale out: four worker processes on one queue, as four hosts would run them against one
PostgreSQL and one Redis, send every reminder exactly once through the real channels (twilio's
Client, anymail's Postmark backend) to the fake provider."""

import os
import uuid
from contextlib import ExitStack
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Notification
from tests.factories import make_agent, make_customer, make_policy
from tests.fake_provider import FakeProvider
from tests.publishing import publishing_to
from tests.workers import celery_worker, wait_for, worker_log

REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
CUSTOMERS = 150  # an email and an SMS each: 300 reminders
WORKERS = 4

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def test_four_workers_on_one_queue_send_each_reminder_once_and_lose_none(
    rules, require_service, tmp_path
):
    redis_url = require_service("Redis", REDIS_TEST_URL)
    rules(7, "email")
    rules(7, "sms")
    run_date = timezone.localdate()
    agent = make_agent()
    for n in range(CUSTOMERS):
        customer = make_customer(f"c{n}@mail.example", phone=f"+1415{5550000 + n:07d}")
        make_policy(f"S-{n}", customer=customer, agent=agent, expiry_date=run_date + timedelta(7))
    queue = f"renewly-scale-{uuid.uuid4().hex[:8]}"
    names = [f"{queue}-{n}" for n in range(WORKERS)]

    with ExitStack() as stack:
        fake = stack.enter_context(FakeProvider(status_callbacks=False))
        for name in names:
            stack.enter_context(
                celery_worker(
                    broker_url=redis_url,
                    queue=queue,
                    name=name,
                    var_dir=tmp_path,
                    concurrency=2,
                    CELERY_TASK_DEFAULT_QUEUE=queue,
                    # Small batches, so that every process takes some: 30 batches of 10.
                    REMINDER_SEND_BATCH_SIZE="10",
                    REMINDER_SEND_THREADS="4",
                    SMS_WINDOW_START_HOUR="0",
                    SMS_WINDOW_END_HOUR="24",
                    **fake.worker_environment("+14155550199"),
                )
            )
        for name in names:
            wait_for(
                lambda name=name: " ready." in worker_log(tmp_path, name),
                timeout=30,
                explain=lambda name=name: worker_log(tmp_path, name),
            )
        publisher = stack.enter_context(publishing_to(broker_url=redis_url, queue=queue))
        publisher.send_task(
            "notifications.tasks.daily_scan", kwargs={"run_date": run_date.isoformat()}
        )
        unsettled = Notification.objects.exclude(status=Notification.Status.SENT)
        wait_for(
            lambda: Notification.objects.count() == 2 * CUSTOMERS and not unsettled.exists(),
            timeout=25,
            explain=lambda: "\n".join(worker_log(tmp_path, name)[-3000:] for name in names),
        )
        accepted = fake.accepted

    notifications = Notification.objects.all()
    assert notifications.count() == 2 * CUSTOMERS
    assert set(notifications.values_list("status", flat=True)) == {Notification.Status.SENT}
    recipients = {f"c{n}@mail.example" for n in range(CUSTOMERS)} | {
        f"+1415{5550000 + n:07d}" for n in range(CUSTOMERS)
    }
    assert set(accepted) == recipients  # none lost
    assert set(accepted.values()) == {1}  # none twice
    assert notifications.filter(provider_message_id="").count() == 0
    # All four took part: each process ran send batches that raced the others' for the rows.
    for name in names:
        assert "notifications.tasks.send_batch[" in worker_log(tmp_path, name), name
