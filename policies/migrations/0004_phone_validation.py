# Phone numbers checked where they are stored (policies/phones.py); the column is unchanged.

from django.db import migrations

import policies.phones


class Migration(migrations.Migration):
    dependencies = [
        ("policies", "0003_book_permissions"),
    ]

    operations = [
        migrations.AlterField(
            model_name="agent",
            name="phone",
            field=policies.phones.PhoneField(
                blank=True, help_text="E.164, e.g. +14155550100.", max_length=16
            ),
        ),
        migrations.AlterField(
            model_name="customer",
            name="phone",
            field=policies.phones.PhoneField(
                blank=True, help_text="E.164, e.g. +14155550100; empty when unknown.", max_length=16
            ),
        ),
    ]
