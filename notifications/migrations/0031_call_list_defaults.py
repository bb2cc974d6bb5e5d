"""The call list's rule (7 days), the morning email's schedule (weekdays at 8:00 in TIME_ZONE,
editable under Periodic tasks), and the staff roles' permissions on calls: renewal admins tune
the rule and record calls on any book; support reads them."""

import importlib

from django.conf import settings
from django.db import migrations

from notifications.schedule import CALL_LIST_NAME, CALL_LIST_TASK

CALL_PERMISSIONS = {
    "Renewal admins": [
        "notifications.view_calllistrule",
        "notifications.change_calllistrule",
        "notifications.view_calloutcome",
        "notifications.add_calloutcome",
        "notifications.view_calllistemail",
    ],
    "Support (read-only)": [
        "notifications.view_calllistrule",
        "notifications.view_calloutcome",
        "notifications.view_calllistemail",
    ],
}


def create_call_list_defaults(apps, schema_editor):
    apps.get_model("notifications", "CallListRule").objects.get_or_create(
        pk=1, defaults={"days_before_expiry": 7}
    )
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="0",
        hour="8",
        day_of_month="*",
        month_of_year="*",
        day_of_week="1-5",
        timezone=settings.TIME_ZONE,
    )
    PeriodicTask.objects.get_or_create(
        name=CALL_LIST_NAME,
        defaults={
            "task": CALL_LIST_TASK,
            "crontab": crontab,
            "description": "Weekdays: each agent's call list by email (none when it is empty).",
        },
    )


def grant_call_permissions(apps, schema_editor):
    roles = importlib.import_module("notifications.migrations.0011_staff_roles")
    roles.grant(apps, ["notifications"], CALL_PERMISSIONS)


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name=CALL_LIST_NAME
    ).delete()


def seed(apps, schema_editor):
    create_call_list_defaults(apps, schema_editor)
    grant_call_permissions(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("notifications", "0030_call_list"),
    ]

    operations = [migrations.RunPython(seed, remove_schedule)]
