"""SMS waits for the day where the customer is, in the database rather than in the broker."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from notifications import dispatch, planning
from notifications.models import Notification, ReminderRule
from notifications.quiet_hours import next_sms_window
from tests.factories import make_agent, make_customer, make_policy, make_rule

Status = Notification.Status
MADRID = ZoneInfo("Europe/Madrid")
NEW_YORK = ZoneInfo("America/New_York")


@pytest.fixture(autouse=True)
def window(settings):
    settings.SMS_WINDOW_START_HOUR = 8
    settings.SMS_WINDOW_END_HOUR = 21


def at(zone, *args):
    return datetime(*args, tzinfo=zone)


def test_inside_the_window_an_sms_may_go_now():
    assert next_sms_window(at(MADRID, 2026, 3, 10, 12, 0), MADRID) is None
    assert next_sms_window(at(MADRID, 2026, 3, 10, 8, 0), MADRID) is None


def test_late_evening_waits_for_the_next_morning():
    assert next_sms_window(at(MADRID, 2026, 3, 10, 21, 0), MADRID) == at(MADRID, 2026, 3, 11, 8)


def test_early_morning_waits_for_eight_the_same_day():
    assert next_sms_window(at(MADRID, 2026, 3, 10, 6, 59), MADRID) == at(MADRID, 2026, 3, 10, 8)


def test_the_window_follows_the_clock_across_the_spring_change():
    # Madrid moves from UTC+1 to UTC+2 in the night of 28 to 29 March 2026.
    evening = at(MADRID, 2026, 3, 28, 22, 30)
    opens = next_sms_window(evening, MADRID)
    assert opens == at(MADRID, 2026, 3, 29, 8)
    assert opens.astimezone(UTC) == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)
    assert opens.astimezone(UTC) - evening.astimezone(UTC) == timedelta(hours=8, minutes=30)


def test_the_window_follows_the_clock_across_the_autumn_change():
    # New York moves from UTC-4 to UTC-5 in the night of 31 October to 1 November 2026.
    evening = at(NEW_YORK, 2026, 10, 31, 23, 0)
    opens = next_sms_window(evening, NEW_YORK)
    assert opens.astimezone(UTC) == datetime(2026, 11, 1, 13, 0, tzinfo=UTC)
    assert opens.astimezone(UTC) - evening.astimezone(UTC) == timedelta(hours=10)


def test_the_customers_zone_decides_not_the_sites(settings):
    noon_utc = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
    assert next_sms_window(noon_utc, MADRID) is None  # 13:00 there
    assert next_sms_window(noon_utc, ZoneInfo("Pacific/Auckland")) is not None  # 01:00 there


@pytest.fixture
def queued_sms(db, settings, tmp_path):
    settings.OUTBOX_DIR = tmp_path
    settings.SMS_BACKEND = "outbox"
    ReminderRule.objects.all().delete()
    make_rule(7, "sms")
    today = timezone.localdate()
    customer = make_customer("pat@mail.example", phone="+14155550100", timezone="UTC")
    make_policy("P-1", customer=customer, agent=make_agent(), expiry_date=today + timedelta(7))
    planning.plan_due(run_date=today)
    (notification_id,) = planning.claim_for_enqueue(limit=5, stalled_after=timedelta(hours=1))
    return Notification.objects.get(pk=notification_id)


def close_the_window_now(settings):
    """A window that the current UTC hour falls outside of."""
    hour = timezone.now().astimezone(UTC).hour
    settings.SMS_WINDOW_START_HOUR, settings.SMS_WINDOW_END_HOUR = (
        (hour + 1, 24) if hour < 23 else (0, 23)
    )


def claim():
    return planning.claim_for_enqueue(limit=5, stalled_after=timedelta(hours=1))


def test_an_sms_outside_the_window_is_deferred_not_sent(queued_sms, settings, tmp_path):
    close_the_window_now(settings)

    outcome = dispatch.send(queued_sms.pk)

    notification = Notification.objects.get(pk=queued_sms.pk)
    assert outcome.status == Status.DEFERRED
    assert notification.status == Status.DEFERRED
    assert notification.send_after > timezone.now()
    assert notification.attempts == 0
    assert not (tmp_path / "sms").exists()
    assert claim() == []  # not released before its time


def test_a_deferred_sms_is_released_and_sent_when_its_window_opens(queued_sms, settings, tmp_path):
    close_the_window_now(settings)
    dispatch.send(queued_sms.pk)
    # Morning comes.
    Notification.objects.filter(pk=queued_sms.pk).update(
        send_after=timezone.now() - timedelta(seconds=1)
    )
    settings.SMS_WINDOW_START_HOUR, settings.SMS_WINDOW_END_HOUR = 0, 24

    assert claim() == [queued_sms.pk]
    assert dispatch.send(queued_sms.pk).status == Status.SENT
    assert (tmp_path / "sms" / f"notification-{queued_sms.pk}.json").exists()


def test_renewing_the_policy_cancels_a_deferred_sms(queued_sms, settings):
    close_the_window_now(settings)
    dispatch.send(queued_sms.pk)
    policy = queued_sms.policy
    policy.expiry_date += timedelta(days=365)
    policy.save()

    assert planning.cancel_outdated() == 1
    assert Notification.objects.get(pk=queued_sms.pk).status == Status.CANCELLED


@pytest.mark.django_db
def test_a_periodic_task_releases_deferred_reminders_every_minute():
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="notifications.tasks.release_reminders")
    assert (task.interval.every, task.interval.period) == (1, "minutes")
