"""Long jobs never slow the reminders: imports, feeds, reports and housekeeping wait on a queue of
their own (config/queues.py), read by a worker of its own, while the reminders keep the default
queue. Routed by Celery's own router, as every `apply_async` and Beat's `send_task` are."""

import json
import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.utils import timezone

from config.celery import app
from config.queues import LONG_JOBS, bulk_queue_for
from notifications.models import Notification, ReminderRule
from policies.import_jobs import start_import
from policies.models import ImportJob, Policy
from tests.factories import (
    make_agent,
    make_customer,
    make_policy,
    make_rule,
    policy_csv,
    policy_row,
)
from tests.publishing import publishing_to
from tests.workers import BASE_DIR, celery_worker, wait_for, worker_log

REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")

# What must never wait behind a long job: planning and sending, releasing what waits, recovering
# what dead workers left, and events out (integrators read a reminder's fate within seconds).
REMINDER_PATH = {
    "notifications.tasks.daily_scan",
    "notifications.tasks.send_batch",
    "notifications.tasks.release_reminders",
    "events.tasks.deliver_events",
    "events.tasks.deliver_due_events",
}


@pytest.fixture(scope="module", autouse=True)
def every_task_registered():
    app.loader.import_default_modules()  # as a worker starts: every app's tasks.py


def queue_of(task_name: str) -> str:
    return app.amqp.router.route({}, task_name)["queue"].name


@pytest.mark.parametrize("task_name", LONG_JOBS)
def test_each_long_job_goes_to_the_bulk_queue(task_name):
    assert task_name in app.tasks  # a real task's name, not a typo the router would accept
    assert queue_of(task_name) == settings.CELERY_BULK_QUEUE == "celery-bulk"


@pytest.mark.parametrize("task_name", sorted(REMINDER_PATH))
def test_each_reminder_task_stays_on_the_default_queue(task_name):
    assert task_name in app.tasks
    assert queue_of(task_name) == settings.CELERY_TASK_DEFAULT_QUEUE == "celery"


def test_every_task_of_ours_is_placed_on_purpose():
    ours = {name for name in app.tasks if not name.startswith("celery.")}
    assert ours == REMINDER_PATH | set(LONG_JOBS)


def test_a_queue_named_by_the_caller_still_wins():
    route = app.amqp.router.route({"queue": "elsewhere"}, "policies.tasks.run_import_job")
    assert route["queue"].name == "elsewhere"


def routes_under(**env: str) -> dict:
    """CELERY_TASK_ROUTES as a process started with these variables reads them."""
    code = (
        "import json\nfrom django.conf import settings\n"
        "print(json.dumps(settings.CELERY_TASK_ROUTES))"
    )
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("CELERY_")}
    environment = {**inherited, "DEBUG": "1", "DJANGO_SETTINGS_MODULE": "config.settings", **env}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=BASE_DIR, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_installations_sharing_a_broker_get_long_job_queues_of_their_own():
    routes = routes_under(CELERY_TASK_DEFAULT_QUEUE="renewly-acme")
    assert {route["queue"] for route in routes.values()} == {"renewly-acme-bulk"}
    named = routes_under(CELERY_TASK_DEFAULT_QUEUE="renewly-acme", CELERY_BULK_QUEUE="acme-imports")
    assert {route["queue"] for route in named.values()} == {"acme-imports"}


# --- Through real workers ----------------------------------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_an_import_waits_for_the_bulk_worker_while_the_reminder_worker_sends(
    require_service, tmp_path, uploads_dir
):
    redis_url = require_service("Redis", REDIS_TEST_URL)
    queue = f"renewly-queues-{uuid.uuid4().hex[:8]}"
    ReminderRule.objects.all().delete()
    make_rule(7, "email")
    agent = make_agent(email="alice@agency.example")
    run_date = timezone.localdate()
    make_policy("DUE-7", customer=make_customer(), agent=agent, expiry_date=run_date + timedelta(7))
    admin = get_user_model().objects.create_superuser("admin", None, None)
    rows = [policy_row(f"UP-{n}", "alice@agency.example") for n in range(50)]
    worker = {
        "broker_url": redis_url,
        "var_dir": tmp_path,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "UPLOADS_DIR": str(uploads_dir),
    }

    with publishing_to(broker_url=redis_url, queue=queue) as publisher:
        job = start_import(
            upload=policy_csv(rows), original_name="book.csv", uploaded_by=admin, agent=None
        )
        with celery_worker(queue=queue, **worker):
            publisher.send_task(
                "notifications.tasks.daily_scan", kwargs={"run_date": run_date.isoformat()}
            )
            wait_for(
                lambda: Notification.objects.filter(status="sent").exists(),
                timeout=60,
                explain=lambda: worker_log(tmp_path, queue),
            )
            # The reminder went while the upload waited: the reminders' worker never takes it.
            job.refresh_from_db()
            assert job.status == ImportJob.Status.QUEUED

            bulk = bulk_queue_for(queue)
            with celery_worker(queue=bulk, **worker):
                wait_for(
                    lambda: ImportJob.objects.get(pk=job.pk).status == ImportJob.Status.SUCCEEDED,
                    timeout=60,
                    explain=lambda: worker_log(tmp_path, bulk),
                )

    assert Policy.objects.filter(policy_number__startswith="UP-").count() == 50
    # "Task <name>[<id>] received": a task a worker took (its banner lists every task it knows).
    assert "Task policies.tasks.run_import_job[" in worker_log(tmp_path, bulk)
    assert "Task policies.tasks.run_import_job[" not in worker_log(tmp_path, queue)
    assert "Task notifications.tasks.daily_scan[" in worker_log(tmp_path, queue)
    assert "Task notifications.tasks.daily_scan[" not in worker_log(tmp_path, bulk)


def test_the_demo_worker_reads_every_queue():
    demo = (BASE_DIR / "scripts" / "demo").read_text()
    assert '--queues="$queues"' in demo
    assert 'queues="$default_queue,${CELERY_BULK_QUEUE:-$default_queue-bulk}"' in demo
