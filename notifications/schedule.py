"""The daily scan's schedule: a django-celery-beat PeriodicTask that admins edit in the admin.
Cron mode (reminders_cron) reads the same crontab, so both fire at the same time."""

from django_celery_beat.models import CrontabSchedule, PeriodicTask

DAILY_SCAN_NAME = "Daily reminder scan"
DAILY_SCAN_TASK = "notifications.tasks.daily_scan"
RELEASE_NAME = "Release deferred and stalled reminders"
RELEASE_TASK = "notifications.tasks.release_reminders"


def daily_scan_task() -> PeriodicTask:
    return PeriodicTask.objects.select_related("crontab").get(name=DAILY_SCAN_NAME)


def crontab_expression(crontab: CrontabSchedule) -> str:
    return " ".join(
        [
            crontab.minute,
            crontab.hour,
            crontab.day_of_month,
            crontab.month_of_year,
            crontab.day_of_week,
        ]
    )


WEEKLY_REPORT_NAME = "Weekly agent reports"
WEEKLY_REPORT_TASK = "notifications.tasks.weekly_reports"
HOUSEKEEPING_NAME = "Housekeeping"
# ops.tasks.run_housekeeping, registered under the name it had before it moved to ops.
HOUSEKEEPING_TASK = "notifications.tasks.run_housekeeping"
CALL_LIST_NAME = "Morning call lists"
CALL_LIST_TASK = "notifications.tasks.call_list_emails"
