"""The staff roles (0011) get product lines: renewal admins and template editors name them in
customers' languages and set their renewal pages; support reads them."""

import importlib

from django.db import migrations

NAMING = [
    f"policies.{action}_{model}"
    for model in ("productline", "productlinename")
    for action in ("view", "add", "change")
]
PRODUCT_LINE_PERMISSIONS = {
    "Renewal admins": [*NAMING, "policies.delete_productlinename"],
    "Template editors": [*NAMING, "policies.delete_productlinename"],
    "Support (read-only)": ["policies.view_productline", "policies.view_productlinename"],
}


def grant_product_line_permissions(apps, schema_editor):
    roles = importlib.import_module("notifications.migrations.0011_staff_roles")
    roles.grant(apps, ["policies"], PRODUCT_LINE_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0018_any_language_and_plain_wording"),
        ("policies", "0006_languages_and_product_lines"),
    ]

    operations = [
        migrations.RunPython(grant_product_line_permissions, migrations.RunPython.noop),
    ]
