"""Template experiments: a rule's variants (TemplateVariant) with weights, the variant each
reminder went in (Notification.variant, with a partial index for the results), the last
touch's variant on outcomes, the daily counts of results per variant and agent
(ExperimentTally); the staff roles (0011) get them: renewal admins run experiments,
template editors and support read them."""

import importlib

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

EXPERIMENT_PERMISSIONS = {
    "Renewal admins": [
        f"notifications.{action}_{model}"
        for action in ("add", "change", "delete", "view")
        for model in ("templateexperiment", "templatevariant")
    ],
    "Template editors": [
        "notifications.view_templateexperiment",
        "notifications.view_templatevariant",
    ],
    "Support (read-only)": [
        "notifications.view_templateexperiment",
        "notifications.view_templatevariant",
    ],
}


def grant_experiment_permissions(apps, schema_editor):
    roles = importlib.import_module("notifications.migrations.0011_staff_roles")
    roles.grant(apps, ["notifications"], EXPERIMENT_PERMISSIONS)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0031_call_list_defaults"),
        ("policies", "0008_languages_in_canonical_form"),
    ]

    operations = [
        migrations.CreateModel(
            name="TemplateExperiment",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100)),
                ("started_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("ended_at", models.DateTimeField(blank=True, null=True)),
                (
                    "counted_at",
                    models.DateTimeField(
                        blank=True,
                        editable=False,
                        help_text="When its results were last counted (the daily scan); empty: not yet.",
                        null=True,
                    ),
                ),
                (
                    "rule",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="experiments",
                        to="notifications.reminderrule",
                    ),
                ),
            ],
            options={
                "ordering": ["-started_at", "-id"],
            },
        ),
        migrations.CreateModel(
            name="TemplateVariant",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "label",
                    models.CharField(
                        help_text='A short name for results, e.g. "A".', max_length=20
                    ),
                ),
                (
                    "weight",
                    models.PositiveIntegerField(
                        default=1,
                        help_text="Its share of the policies: weights 1 and 1 split them evenly.",
                    ),
                ),
                (
                    "experiment",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="variants",
                        to="notifications.templateexperiment",
                    ),
                ),
                (
                    "template",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="variants",
                        to="notifications.messagetemplate",
                    ),
                ),
            ],
            options={
                "ordering": ["experiment_id", "label"],
            },
        ),
        migrations.CreateModel(
            name="ExperimentTally",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("delivered", models.PositiveIntegerField(help_text="Its reminders delivered.")),
                (
                    "decided",
                    models.PositiveIntegerField(
                        help_text="Of the terms they reached: renewed or lapsed by then."
                    ),
                ),
                (
                    "renewed",
                    models.PositiveIntegerField(
                        help_text="Of those: renewed on or before the expiry."
                    ),
                ),
                (
                    "agent",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="policies.agent",
                    ),
                ),
                (
                    "variant",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="tallies",
                        to="notifications.templatevariant",
                    ),
                ),
            ],
        ),
        migrations.AddField(
            model_name="notification",
            name="variant",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                help_text="The experiment's wording it was sent in, which replaces the rule's template; empty when its rule ran no experiment.",
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="notifications",
                to="notifications.templatevariant",
            ),
        ),
        migrations.AddField(
            model_name="policyoutcome",
            name="last_touch_variant",
            field=models.ForeignKey(
                blank=True,
                help_text="The experiment's variant the last touch was sent in, if any.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="notifications.templatevariant",
            ),
        ),
        migrations.AddConstraint(
            model_name="templateexperiment",
            constraint=models.UniqueConstraint(
                condition=models.Q(("ended_at__isnull", True)),
                fields=("rule",),
                name="experiment_one_running_per_rule",
                violation_error_message="This rule runs an experiment already: end it first.",
            ),
        ),
        migrations.AddConstraint(
            model_name="templateexperiment",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("ended_at__isnull", True),
                    ("ended_at__gt", models.F("started_at")),
                    _connector="OR",
                ),
                name="experiment_ends_after_start",
                violation_error_message="An experiment ends after it started.",
            ),
        ),
        migrations.AddConstraint(
            model_name="templatevariant",
            constraint=models.UniqueConstraint(
                fields=("experiment", "label"),
                name="variant_unique_label",
                violation_error_message="Each variant of an experiment needs its own label.",
            ),
        ),
        migrations.AddConstraint(
            model_name="templatevariant",
            constraint=models.CheckConstraint(
                condition=models.Q(("weight__gt", 0)),
                name="variant_weight_positive",
                violation_error_message="A weight is a whole number of at least 1.",
            ),
        ),
        migrations.AddConstraint(
            model_name="experimenttally",
            constraint=models.UniqueConstraint(
                fields=("variant", "agent"), name="experiment_tally_once"
            ),
        ),
        migrations.AddConstraint(
            model_name="experimenttally",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("decided__lte", models.F("delivered")), ("renewed__lte", models.F("decided"))
                ),
                name="experiment_tally_counts_nest",
            ),
        ),
        migrations.RunPython(grant_experiment_permissions, migrations.RunPython.noop),
    ]
