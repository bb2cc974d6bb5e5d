"""The staff roles (notifications 0011) get the integration's records: renewal admins manage
API keys, event subscriptions and policy feeds; support reads them. Keys' and feeds' secrets are
never shown after saving, whoever reads."""

import importlib

from django.db import migrations

READ = [
    "api.view_apikey",
    "events.view_subscription",
    "events.view_event",
    "events.view_delivery",
    "events.view_deliveryattempt",
    "policies.view_feed",
    "policies.view_feedrun",
]
INTEGRATION_PERMISSIONS = {
    "Renewal admins": [
        *READ,
        "api.add_apikey",
        "api.change_apikey",
        "events.add_subscription",
        "events.change_subscription",
        "events.change_delivery",
        "policies.add_feed",
        "policies.change_feed",
        "policies.delete_feed",
    ],
    "Support (read-only)": READ,
}


def grant_integration_permissions(apps, schema_editor):
    roles = importlib.import_module("notifications.migrations.0011_staff_roles")
    roles.grant(apps, ["api", "events", "policies"], INTEGRATION_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("api", "0001_initial"),
        ("events", "0002_sweep_schedule"),
        ("policies", "0005_feeds"),
        ("notifications", "0011_staff_roles"),
    ]

    operations = [
        migrations.RunPython(grant_integration_permissions, migrations.RunPython.noop),
    ]
