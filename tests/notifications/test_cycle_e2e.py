"""A whole daily cycle as production runs it: `run_reminders --wait` sends the scan through
Redis, a real worker process plans and fans out, more tasks send each reminder to the outbox."""

import json
import os
import subprocess
import sys
import uuid
from datetime import date, timedelta

import pytest
from django.utils import timezone

from notifications.models import Notification, ReminderRule, ReminderRun
from tests.factories import make_agent, make_customer, make_policy, make_rule
from tests.workers import BASE_DIR, celery_worker, worker_environment, worker_log

REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
RUN_DATE = timezone.localdate()  # reminders about expiries still to come: worth sending

pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def redis_url(require_service):
    return require_service("Redis", REDIS_TEST_URL)


@pytest.fixture
def book():
    """Rules: email 30 days ahead, SMS 7 days ahead. Four policies around RUN_DATE."""
    ReminderRule.objects.all().delete()
    make_rule(30, "email")
    make_rule(7, "sms")
    agent = make_agent()
    due_by_email = make_customer("ana@mail.example", name="Ana", phone="")
    due_by_both = make_customer("ben@mail.example", name="Ben", phone="+14155550100")
    sms_refused = make_customer("cai@mail.example", name="Cai", sms_consent=False)
    make_policy("E-30", customer=due_by_email, agent=agent, expiry_date=RUN_DATE + timedelta(30))
    make_policy("B-7", customer=due_by_both, agent=agent, expiry_date=RUN_DATE + timedelta(7))
    make_policy("N-7", customer=sms_refused, agent=agent, expiry_date=RUN_DATE + timedelta(7))
    make_policy("LATER", customer=due_by_both, agent=agent, expiry_date=RUN_DATE + timedelta(60))
    return agent


def run_reminders(*, redis_url: str, queue: str, var_dir, run_date: date):
    command = ["run_reminders", "--wait", "--timeout", "120", "--date", run_date.isoformat()]
    return subprocess.run(
        [sys.executable, "manage.py", *command],
        cwd=BASE_DIR,
        env=worker_environment(
            broker_url=redis_url, var_dir=var_dir, CELERY_TASK_DEFAULT_QUEUE=queue
        ),
        capture_output=True,
        text=True,
        timeout=180,
    )


def summary_row(output: str, label: str) -> dict[str, int]:
    """Read one row of run_reminders' summary table (columns named in its header line)."""
    lines = output.splitlines()
    header = next(line for line in lines if line.startswith("channel"))
    columns = [name.strip() for name in header[9:].split("  ") if name.strip()]
    row = next(line for line in lines if line.startswith(label))
    values = dict(zip(columns, map(int, row[9:].split()), strict=True))
    return {name: values[name] for name in ("planned", "sent", "in flight")}


def outbox_files(var_dir) -> tuple[list[str], list[str]]:
    def names(folder):
        path = var_dir / "outbox" / folder
        return sorted(p.name for p in path.iterdir()) if path.exists() else []

    return names("email"), names("sms")


def test_run_reminders_sends_each_due_reminder_once_through_a_real_worker(
    book, redis_url, tmp_path
):
    queue = f"renewly-e2e-{uuid.uuid4().hex[:8]}"
    with celery_worker(
        broker_url=redis_url,
        queue=queue,
        var_dir=tmp_path,
        concurrency=4,
        CELERY_TASK_DEFAULT_QUEUE=queue,
    ):
        first = run_reminders(redis_url=redis_url, queue=queue, var_dir=tmp_path, run_date=RUN_DATE)
        assert first.returncode == 0, first.stderr + worker_log(tmp_path, queue)
        emails, sms = outbox_files(tmp_path)

        again = run_reminders(redis_url=redis_url, queue=queue, var_dir=tmp_path, run_date=RUN_DATE)
        assert again.returncode == 0, again.stderr + worker_log(tmp_path, queue)

    sent = Notification.objects.filter(status=Notification.Status.SENT)
    expected = {("E-30", "email"), ("B-7", "email"), ("B-7", "sms"), ("N-7", "email")}
    assert set(sent.values_list("policy__policy_number", "channel")) == expected
    assert emails == sorted(
        f"notification-{pk}.eml" for pk in sent.filter(channel="email").values_list("pk", flat=True)
    )
    (sms_id,) = sent.filter(channel="sms").values_list("pk", flat=True)
    assert sms == [f"notification-{sms_id}.json"]
    record = json.loads((tmp_path / "outbox" / "sms" / sms[0]).read_text())
    assert record["to"] == "+14155550100"
    assert "B-7" in record["body"]
    # The second cycle of the same day found nothing new and sent nothing again.
    assert outbox_files(tmp_path) == (emails, sms)
    assert summary_row(first.stdout, "email") == {"planned": 3, "sent": 3, "in flight": 0}
    assert summary_row(first.stdout, "sms") == {"planned": 1, "sent": 1, "in flight": 0}
    assert summary_row(again.stdout, "total") == {"planned": 0, "sent": 0, "in flight": 0}
    assert ReminderRun.objects.filter(finished_at__isnull=False).count() == 2


def test_a_task_lost_with_the_broker_is_sent_by_the_next_scan(book, redis_url, tmp_path):
    # Yesterday's scan planned and queued B-7's SMS, then its task vanished with the broker.
    yesterday = ReminderRun.objects.create(run_date=RUN_DATE - timedelta(1))
    ReminderRun.objects.filter(pk=yesterday.pk).update(finished_at=timezone.now())
    policy = book.policies.get(policy_number="B-7")
    lost = Notification.objects.create(
        policy=policy,
        customer=policy.customer,
        rule=ReminderRule.objects.get(channel="sms"),
        run=yesterday,
        channel="sms",
        expiry_date=policy.expiry_date,
        lead_days=7,
        due_on=policy.expiry_date - timedelta(7),
        status=Notification.Status.QUEUED,
    )
    Notification.objects.filter(pk=lost.pk).update(
        status_changed_at=timezone.now() - timedelta(hours=2)
    )
    queue = f"renewly-e2e-{uuid.uuid4().hex[:8]}"
    with celery_worker(
        broker_url=redis_url, queue=queue, var_dir=tmp_path, CELERY_TASK_DEFAULT_QUEUE=queue
    ):
        result = run_reminders(
            redis_url=redis_url, queue=queue, var_dir=tmp_path, run_date=RUN_DATE
        )
    assert result.returncode == 0, result.stderr + worker_log(tmp_path, queue)

    lost.refresh_from_db()
    assert lost.status == Notification.Status.SENT
    assert lost.attempts == 1
    assert (tmp_path / "outbox" / "sms" / f"notification-{lost.pk}.json").exists()
    # ...and it was not planned a second time under today's run.
    assert Notification.objects.filter(policy=policy, channel="sms").count() == 1
