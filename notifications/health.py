"""Is the daily scan keeping to its schedule? /readyz asks; Beat (or cron mode) answers by
finishing a scan after each time the schedule named."""

from datetime import date, datetime, time, timedelta

from django.conf import settings
from django.db.models import Max
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from notifications.models import ReminderRun
from notifications.schedule import DAILY_SCAN_NAME


def daily_scan_on_time(now: datetime | None = None) -> tuple[bool, str]:
    """(ok, why): the last finished scan is no older than the latest time the schedule fired,
    once the scan has had READYZ_SCAN_GRACE_MINUTES to finish."""
    now = now or timezone.now()
    task = (
        PeriodicTask.objects.select_related("crontab", "interval")
        .filter(name=DAILY_SCAN_NAME)
        .first()
    )
    if task is None or not (task.crontab or task.interval):
        return False, f'no "{DAILY_SCAN_NAME}" schedule'
    grace = timedelta(minutes=settings.READYZ_SCAN_GRACE_MINUTES)
    if task.crontab:
        due = previous_time(task.crontab.schedule, now - grace)
    else:  # an admin made it run every so often
        due = now - grace - task.interval.schedule.run_every
    if due is None:
        return True, "the schedule names no time in the past year"
    last = ReminderRun.objects.aggregate(last=Max("finished_at"))["last"]
    if last is not None and last >= due:
        return True, f"last scan finished {last.isoformat(timespec='seconds')}"
    # A schedule created or changed since (a fresh install, an admin's edit) owes no scan yet;
    # Beat saving the task as it fires changes it too, which last_run_at tells apart.
    fired = task.last_run_at is not None and task.last_run_at >= due
    if task.date_changed >= due and not fired:
        return True, "the schedule is new or changed: no scan due yet"
    since = last.isoformat(timespec="seconds") if last else "never"
    return False, f"no scan finished since {due.isoformat(timespec='minutes')} (last: {since})"


def previous_time(schedule, before: datetime) -> datetime | None:
    """The latest time at or before `before` that a celery crontab names, in its time zone;
    None if there is none within a year."""
    zone = schedule.tz or timezone.get_default_timezone()
    local = before.astimezone(zone)
    times = sorted((hour, minute) for hour in schedule.hour for minute in schedule.minute)
    for days_back in range(367):
        day: date = local.date() - timedelta(days=days_back)
        if not (
            day.month in schedule.month_of_year
            and day.day in schedule.day_of_month
            and day.isoweekday() % 7 in schedule.day_of_week  # cron counts Sunday as 0
        ):
            continue
        for hour, minute in reversed(times):
            fired = datetime.combine(day, time(hour, minute), tzinfo=zone)
            if fired <= before:
                return fired
    return None
