"""Beat, with django-celery-beat's DatabaseScheduler, fires the daily scan's PeriodicTask as the
admin set it, and a worker runs it."""

import uuid

import pytest
from django_celery_beat.models import IntervalSchedule

from notifications.models import ReminderRun
from notifications.schedule import daily_scan_task
from tests.workers import celery_beat, celery_worker, process_log, wait_for, worker_log

# The daily scan PeriodicTask comes from a data migration, which the flush after an earlier
# transactional test removed: seeded_defaults puts it back.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded_defaults")]


def test_beat_fires_the_daily_scan_on_the_schedule_an_admin_set(tmp_path):
    # The admin makes the daily scan run every second (instead of 08:00) for a given day.
    task = daily_scan_task()
    task.crontab = None
    task.interval = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.SECONDS)
    task.kwargs = '{"run_date": "2026-03-10"}'
    task.save()
    queue = f"renewly-beat-{uuid.uuid4().hex[:8]}"
    broker = "filesystem://localhost/"

    def scans():
        return ReminderRun.objects.filter(run_date="2026-03-10", finished_at__isnull=False).count()

    with (
        celery_worker(
            broker_url=broker, queue=queue, var_dir=tmp_path, CELERY_TASK_DEFAULT_QUEUE=queue
        ),
        celery_beat(broker_url=broker, var_dir=tmp_path, CELERY_TASK_DEFAULT_QUEUE=queue),
    ):
        wait_for(
            lambda: scans() >= 2,
            timeout=60,
            explain=lambda: process_log(tmp_path, "beat") + worker_log(tmp_path, queue),
        )
    task.refresh_from_db()
    assert task.total_run_count >= 2
    assert task.last_run_at is not None
