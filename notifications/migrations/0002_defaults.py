"""Sensible defaults an admin can change: reminder templates, rules, the daily scan at 08:00 in
TIME_ZONE, and every 5 minutes the release of what quiet hours deferred (an SMS deferred
overnight goes when its customer's morning comes, whatever their time zone)."""

from django.conf import settings
from django.db import migrations

from notifications.schedule import DAILY_SCAN_NAME, DAILY_SCAN_TASK, RELEASE_NAME, RELEASE_TASK

EMAIL_SUBJECT = (
    "Your {{ policy.product_line }} policy {{ policy.policy_number }} expires in "
    "{{ days_left }} day{{ days_left|pluralize }}"
)
EMAIL_BODY = """Dear {{ customer.name }},

Your {{ policy.product_line }} policy {{ policy.policy_number }} expires on {{ expiry_date|date:"j F Y" }}, in {{ days_left }} day{{ days_left|pluralize }}.

To keep your cover without a gap, renew before that date. Your agent, {{ agent.name }}, can help: {{ agent.email }}{% if agent.phone %} or {{ agent.phone }}{% endif %}.

Renewly, on behalf of your insurer"""
SMS_BODY = (
    "Your {{ policy.product_line }} policy {{ policy.policy_number }} expires "
    '{{ expiry_date|date:"j M Y" }}. To renew, contact {{ agent.name }} {{ agent.email }}. '
    "Reply STOP to opt out."
)
# (lead days, channel): email well ahead, SMS close to the date.
DEFAULT_RULES = [
    (60, "email"),
    (30, "email"),
    (14, "email"),
    (14, "sms"),
    (7, "email"),
    (7, "sms"),
    (1, "sms"),
]


def create_defaults(apps, schema_editor):
    MessageTemplate = apps.get_model("notifications", "MessageTemplate")
    ReminderRule = apps.get_model("notifications", "ReminderRule")
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")

    templates = {
        "email": MessageTemplate.objects.get_or_create(
            name="Renewal reminder (email)",
            defaults={"channel": "email", "subject": EMAIL_SUBJECT, "body": EMAIL_BODY},
        )[0],
        "sms": MessageTemplate.objects.get_or_create(
            name="Renewal reminder (SMS)", defaults={"channel": "sms", "body": SMS_BODY}
        )[0],
    }
    for lead_days, channel in DEFAULT_RULES:
        ReminderRule.objects.get_or_create(
            lead_days=lead_days,
            channel=channel,
            product_line="",
            defaults={"template": templates[channel]},
        )
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute="0",
        hour="8",
        day_of_month="*",
        month_of_year="*",
        day_of_week="*",
        timezone=settings.TIME_ZONE,
    )
    PeriodicTask.objects.get_or_create(
        name=DAILY_SCAN_NAME,
        defaults={
            "task": DAILY_SCAN_TASK,
            "crontab": crontab,
            "description": "Plans the reminders due today and sends them.",
        },
    )
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    every_five_minutes, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=RELEASE_NAME,
        defaults={
            "task": RELEASE_TASK,
            "interval": every_five_minutes,
            "description": "Sends reminders whose quiet hours ended, and re-sends stalled ones.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(
        name__in=[DAILY_SCAN_NAME, RELEASE_NAME]
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_defaults, remove_schedule)]
