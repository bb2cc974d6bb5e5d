"""Every 5 minutes, send what quiet hours deferred and what stalled: an SMS deferred overnight
goes when its customer's morning comes, whatever their time zone."""

from django.db import migrations

from notifications.schedule import RELEASE_NAME, RELEASE_TASK


def create_release_task(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_five_minutes, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=RELEASE_NAME,
        defaults={
            "task": RELEASE_TASK,
            "interval": every_five_minutes,
            "description": "Sends reminders whose quiet hours ended, and re-sends stalled ones.",
        },
    )


def remove_release_task(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=RELEASE_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("notifications", "0004_deferred_status")]

    operations = [migrations.RunPython(create_release_task, remove_release_task)]
