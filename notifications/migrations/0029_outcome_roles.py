"""The staff roles (0011) read policy outcomes: renewal admins and support."""

import importlib

from django.db import migrations

OUTCOME_PERMISSIONS = {
    "Renewal admins": ["notifications.view_policyoutcome"],
    "Support (read-only)": ["notifications.view_policyoutcome"],
}


def grant_outcome_permissions(apps, schema_editor):
    roles = importlib.import_module("notifications.migrations.0011_staff_roles")
    roles.grant(apps, ["notifications"], OUTCOME_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0028_policy_outcomes"),
    ]

    operations = [
        migrations.RunPython(grant_outcome_permissions, migrations.RunPython.noop),
    ]
