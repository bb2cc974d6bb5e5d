"""Housekeeping removes what is past its retention period (task results, uploaded files, raw
provider payloads) and records what it removed; a notification and its delivery timeline stay."""

import importlib
from datetime import date, timedelta

import pytest
from celery import current_app
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from notifications.models import (
    DeliveryEvent,
    HousekeepingRun,
    Notification,
    ReminderRun,
    WorkerLease,
)
from notifications.schedule import HOUSEKEEPING_NAME
from ops import housekeeping, tasks
from policies.models import ImportJob
from tests.factories import make_agent, make_customer, make_policy, make_rule, rule_for


@pytest.fixture(autouse=True)
def retention(settings, tmp_path):
    settings.UPLOADS_DIR = tmp_path / "uploads"
    settings.RESULTS_RETENTION_DAYS = 30
    settings.UPLOADS_RETENTION_DAYS = 90
    settings.PROVIDER_PAYLOAD_RETENTION_DAYS = 180


def days_ago(days: int):
    return timezone.now() - timedelta(days=days)


def task_result(task_id: str, *, age_days: int) -> TaskResult:
    result = TaskResult.objects.create(task_id=task_id, status="SUCCESS")
    TaskResult.objects.filter(pk=result.pk).update(date_done=days_ago(age_days))  # auto_now
    return result


def uploaded_job(settings, name: str, *, finished_days_ago: int | None) -> ImportJob:
    path = settings.UPLOADS_DIR / f"{name}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("policy_number\n")
    finished = finished_days_ago is not None
    return ImportJob.objects.create(
        original_name=f"{name}.csv",
        stored_name=f"{name}.csv",
        status=ImportJob.Status.SUCCEEDED if finished else ImportJob.Status.RUNNING,
        finished_at=days_ago(finished_days_ago) if finished else None,
    )


@pytest.fixture
def delivered(db) -> Notification:
    policy = make_policy(
        "P-1", customer=make_customer(), agent=make_agent(), expiry_date=date(2026, 6, 1)
    )
    rule = make_rule(45, "email")
    return Notification.objects.create(
        policy=policy,
        customer=policy.customer,
        rule=rule,
        channel="email",
        expiry_date=policy.expiry_date,
        lead_days=45,
        due_on=policy.expiry_date - timedelta(days=45),
        run=ReminderRun.objects.create(run_date=date(2026, 4, 17)),
        status=Notification.Status.DELIVERED,
    )


def event(notification, event_id: str, *, age_days: int) -> DeliveryEvent:
    recorded = DeliveryEvent.objects.create(
        notification=notification,
        provider="postmark",
        event_type="delivered",
        provider_event_id=event_id,
        occurred_at=days_ago(age_days),
        reason="delivered to the mailbox",
        raw_payload={"RecordType": "Delivery", "Recipient": "pat@mail.example"},
    )
    DeliveryEvent.objects.filter(pk=recorded.pk).update(received_at=days_ago(age_days))
    return recorded


def test_housekeeping_removes_what_is_past_retention_and_records_it(settings, delivered):
    task_result("old", age_days=31)
    task_result("recent", age_days=29)
    old_upload = uploaded_job(settings, "old", finished_days_ago=91)
    recent_upload = uploaded_job(settings, "recent", finished_days_ago=89)
    running_upload = uploaded_job(settings, "running", finished_days_ago=None)
    old_event = event(delivered, "e-old", age_days=181)
    recent_event = event(delivered, "e-recent", age_days=179)

    result = tasks.run_housekeeping()

    run = HousekeepingRun.objects.get()
    assert result == {
        "run_id": run.pk,
        "task_results_deleted": 1,
        "uploads_purged": 1,
        "payloads_cleared": 1,
        "idempotency_keys_deleted": 0,
        "events_deleted": 0,
    }
    assert run.finished_at is not None
    assert run.error == ""
    assert list(TaskResult.objects.values_list("task_id", flat=True)) == ["recent"]
    # The old upload's file is gone; its job's record stays, marked purged.
    assert not (settings.UPLOADS_DIR / old_upload.stored_name).exists()
    old_upload.refresh_from_db()
    assert old_upload.file_purged_at is not None
    for kept in (recent_upload, running_upload):
        assert (settings.UPLOADS_DIR / kept.stored_name).exists()
        kept.refresh_from_db()
        assert kept.file_purged_at is None
    # The old event lost only its raw payload: the delivery timeline is whole.
    old_event.refresh_from_db()
    assert old_event.raw_payload == {}
    assert (old_event.event_type, old_event.reason) == ("delivered", "delivered to the mailbox")
    recent_event.refresh_from_db()
    assert recent_event.raw_payload["RecordType"] == "Delivery"
    assert list(delivered.events.order_by("pk")) == [old_event, recent_event]
    assert Notification.objects.filter(pk=delivered.pk, status="delivered").exists()


def test_a_second_run_finds_nothing_more_to_remove(settings, delivered):
    task_result("old", age_days=31)
    uploaded_job(settings, "old", finished_days_ago=91)
    event(delivered, "e-old", age_days=181)
    tasks.run_housekeeping()

    again = tasks.run_housekeeping()

    assert again["task_results_deleted"] == again["uploads_purged"] == 0
    assert again["payloads_cleared"] == 0
    assert HousekeepingRun.objects.count() == 2


def test_a_retention_of_zero_keeps_everything(settings, delivered):
    settings.RESULTS_RETENTION_DAYS = 0
    settings.UPLOADS_RETENTION_DAYS = 0
    settings.PROVIDER_PAYLOAD_RETENTION_DAYS = 0
    task_result("ancient", age_days=3000)
    uploaded_job(settings, "ancient", finished_days_ago=3000)
    ancient = event(delivered, "e-ancient", age_days=3000)

    result = tasks.run_housekeeping()

    assert (result["task_results_deleted"], result["uploads_purged"]) == (0, 0)
    assert result["payloads_cleared"] == 0
    ancient.refresh_from_db()
    assert ancient.raw_payload != {}


def test_payloads_are_cleared_in_batches(delivered, monkeypatch):
    monkeypatch.setattr(housekeeping, "PAYLOAD_BATCH", 2)
    for n in range(5):
        event(delivered, f"e-{n}", age_days=200)

    with CaptureQueriesContext(connection) as queries:
        assert tasks.run_housekeeping()["payloads_cleared"] == 5

    clearing = f'UPDATE "{DeliveryEvent._meta.db_table}"'
    batches = [query for query in queries if query["sql"].startswith(clearing)]
    assert len(batches) == 3  # 2 + 2 + 1 events
    assert not DeliveryEvent.objects.exclude(raw_payload={}).exists()


def housekeeping_schedule() -> PeriodicTask:
    """The PeriodicTask the migration creates, made again (a flush may have removed it)."""
    migration = importlib.import_module(
        "notifications.migrations.0004_weekly_reports_and_housekeeping"
    )
    migration.create_schedules(django_apps, schema_editor=None)
    return PeriodicTask.objects.select_related("crontab").get(name=HOUSEKEEPING_NAME)


def test_housekeeping_is_a_daily_periodic_task(db, settings):
    task = housekeeping_schedule()
    assert task.task == "notifications.tasks.run_housekeeping"
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week) == ("30", "3", "*")
    assert str(crontab.timezone) == settings.TIME_ZONE


def test_the_admin_lists_each_run_and_what_it_removed(client, settings, delivered):
    task_result("old", age_days=31)
    tasks.run_housekeeping()
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@insurer.example"))

    page = client.get(reverse("admin:notifications_housekeepingrun_changelist"))

    assert page.status_code == 200
    assert 'class="field-task_results_deleted">1<' in page.content.decode()
    run = HousekeepingRun.objects.get()
    change = client.get(reverse("admin:notifications_housekeepingrun_change", args=[run.pk]))
    assert change.status_code == 200  # readable, not editable
    assert client.get(reverse("admin:notifications_housekeepingrun_add")).status_code == 403


def test_the_name_existing_schedules_store_runs_housekeeping_from_ops(settings, delivered):
    # Beat sends the task by the name its PeriodicTask row stores, from before the task moved.
    stored = housekeeping_schedule().task
    task_result("old", age_days=31)

    result = current_app.tasks[stored].apply().get()

    assert current_app.tasks[stored].__module__ == "ops.tasks"
    assert result["task_results_deleted"] == 1
    assert HousekeepingRun.objects.get().task_results_deleted == 1


def test_housekeeping_deletes_dead_workers_leases_but_not_one_still_holding_a_send(db):
    gone = WorkerLease.objects.create(name="gone", expires_at=days_ago(8))
    holding = WorkerLease.objects.create(name="holding", expires_at=days_ago(8))
    WorkerLease.objects.create(name="recent", expires_at=days_ago(1))
    policy = make_policy(
        "HK-1", customer=make_customer(), agent=make_agent(), expiry_date=date(2026, 6, 8)
    )
    run = ReminderRun.objects.create(run_date=date(2026, 6, 1))
    Notification.objects.create(
        policy=policy,
        customer=policy.customer,
        rule=rule_for("email", 7),
        run=run,
        channel="email",
        expiry_date=policy.expiry_date,
        lead_days=7,
        due_on=policy.expiry_date - timedelta(days=7),
        status="sending",
        lease=holding,
    )

    housekeeping.run_housekeeping()

    mine = WorkerLease.objects.filter(name__in=["gone", "holding", "recent"])
    assert set(mine.values_list("name", flat=True)) == {"holding", "recent"}
    assert not WorkerLease.objects.filter(pk=gone.pk).exists()
