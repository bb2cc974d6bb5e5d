"""The dashboard's counts by due date and status, from an index. The notifications table holds
millions of rows in production: on PostgreSQL the index is built CONCURRENTLY (as 0005's), so
sending goes on meanwhile."""

import importlib

from django.db import migrations, models

concurrently = importlib.import_module("notifications.migrations.0005_workspace_pending_index")


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("notifications", "0033_retention_figures"),
    ]

    operations = [
        concurrently.AddIndexConcurrentlyOnPostgres(
            model_name="notification",
            index=models.Index(
                fields=["due_on", "status", "policy"], name="notification_due_status"
            ),
        ),
    ]
