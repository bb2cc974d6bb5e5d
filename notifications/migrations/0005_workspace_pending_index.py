"""The agents' pending notices index. The notifications table holds millions of rows in
production: on PostgreSQL the index is built CONCURRENTLY, so sending goes on meanwhile."""

from django.db import migrations, models

from policies.migration_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("notifications", "0004_weekly_reports_and_housekeeping"),
        ("policies", "0002_import_jobs"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="notification",
            index=models.Index(
                condition=models.Q(
                    ("status__in", ["planned", "queued", "sending", "deferred", "failed"])
                ),
                fields=["due_on", "id"],
                name="notification_pending_due",
            ),
        ),
    ]
