"""Every minute, the sweep delivers what is due: a retry whose wait is over, what a dead worker
left claimed, an event whose task the broker lost. A PeriodicTask admins can edit."""

from django.db import migrations

from events.schedule import SWEEP_NAME, SWEEP_TASK


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=SWEEP_NAME,
        defaults={
            "task": SWEEP_TASK,
            "interval": every_minute,
            "description": "Delivers the events due to the insurer's systems: retries whose "
            "wait is over, and what a dead worker or a lost task left.",
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=SWEEP_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("events", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
