"""Indexes on the policies table for the call list (an agent's active policies by expiry) and
the dashboard (expiries by status), built CONCURRENTLY on PostgreSQL: imports go on meanwhile."""

from django.db import migrations, models

from policies.migration_operations import AddIndexConcurrentlyOnPostgres


class Migration(migrations.Migration):
    atomic = False  # CONCURRENTLY cannot run inside a transaction

    dependencies = [
        ("policies", "0009_call_outcomes"),
    ]

    operations = [
        AddIndexConcurrentlyOnPostgres(
            model_name="policy",
            index=models.Index(
                condition=models.Q(("status", "active")),
                fields=["agent", "expiry_date"],
                name="policy_active_agent_expiry",
            ),
        ),
        AddIndexConcurrentlyOnPostgres(
            model_name="policy",
            index=models.Index(fields=["expiry_date", "status"], name="policy_expiry_status"),
        ),
    ]
