"""The notifications indexes of the call list (its terms' settled reminders), the experiments
(variant reminders) and the dashboard's counts by due date and status. The notifications table holds
millions of rows in production: on PostgreSQL the index is built CONCURRENTLY (as 0005's), so
sending goes on meanwhile."""

from django.db import migrations, models

from policies.migration_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("notifications", "0033_retention_figures"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="notification",
            index=models.Index(
                condition=models.Q(("status__in", ["delivered", "failed", "bounced"])),
                fields=["policy", "expiry_date", "-status_changed_at", "status"],
                name="notification_settled_by_term",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="notification",
            index=models.Index(
                condition=models.Q(("variant__isnull", False)),
                fields=["variant", "policy", "expiry_date", "delivered_at"],
                name="notification_variant",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="notification",
            index=models.Index(
                fields=["due_on", "status", "policy"], name="notification_due_status"
            ),
        ),
    ]
