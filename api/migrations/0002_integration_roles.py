"""The staff roles (notifications 0011) get the integration's records: renewal admins manage
API keys, event subscriptions and policy feeds; support reads them. Keys' and feeds' secrets are
never shown after saving, whoever reads."""

from django.contrib.auth.management import create_permissions
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
    for label in ("api", "events", "policies"):
        app_config = apps.get_app_config(label)
        models_module = getattr(app_config, "models_module", None)
        app_config.models_module = True  # create_permissions skips an app without models
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = models_module
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, permissions in INTEGRATION_PERMISSIONS.items():
        for group in Group.objects.filter(name=name):  # an admin may have removed the role
            for permission in permissions:
                app_label, codename = permission.split(".")
                group.permissions.add(
                    Permission.objects.get(content_type__app_label=app_label, codename=codename)
                )


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
