"""Migrations forwards on a database that has rows already, as production's has."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE_RETENTION = [
    ("notifications", "0032_template_experiments"),
    ("policies", "0010_dashboard_expiry_index"),
]


@pytest.fixture
def at_0032(transactional_db):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_RETENTION)
    yield executor.loader.project_state(BEFORE_RETENTION).apps
    call_command("migrate", verbosity=0)  # the latest schema again, for the other tests


def test_retention_figures_migrate_a_database_with_outcomes_and_fill_them_in(at_0032):
    apps = at_0032
    user = apps.get_model("auth", "User").objects.create(username="migrated")
    agent = apps.get_model("policies", "Agent").objects.create(user=user, email="m@a.example")
    customer = apps.get_model("policies", "Customer").objects.create(
        name="Pat", email="pat@mail.example", phone="+14155550100"
    )
    today = timezone.localdate()
    policy = apps.get_model("policies", "Policy").objects.create(
        policy_number="MIGRATED-1",
        customer=customer,
        agent=agent,
        product_line="auto",
        start_date=today - timedelta(days=365),
        expiry_date=today,
    )
    template = apps.get_model("notifications", "MessageTemplate").objects.create(
        name="migrated", channel="email", subject="s", body="b"
    )
    rule = apps.get_model("notifications", "ReminderRule").objects.create(
        lead_days=44, channel="email", template=template
    )
    run = apps.get_model("notifications", "ReminderRun").objects.create(run_date=today)
    earlier = timezone.now() - timedelta(days=3)
    apps.get_model("notifications", "Notification").objects.create(
        policy=policy,
        customer=customer,
        rule=rule,
        run=run,
        channel="email",
        expiry_date=today,
        lead_days=44,
        due_on=today - timedelta(days=44),
        status="delivered",
        sent_at=earlier,
        delivered_at=earlier,
    )
    apps.get_model("notifications", "PolicyOutcome").objects.create(
        policy=policy,
        kind="renewed",
        source="agent",
        expiry_date=today,
        new_expiry_date=today + timedelta(days=365),
        occurred_at=timezone.now(),
        days_before_expiry=0,
    )

    call_command("migrate", verbosity=0)

    from notifications.models import PolicyOutcome

    outcome = PolicyOutcome.objects.get()
    assert (outcome.agent_id, outcome.product_line, outcome.channels_reached) == (
        agent.pk,
        "auto",
        "email",
    )
