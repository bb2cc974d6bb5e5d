# Policy feeds (policies/feeds.py): Feed, each with its own PeriodicTask, and its run log.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import policies.models


class Migration(migrations.Migration):
    dependencies = [
        ("django_celery_beat", "0019_alter_periodictasks_options"),
        ("policies", "0004_phone_validation"),
    ]

    operations = [
        migrations.CreateModel(
            name="Feed",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("name", models.CharField(max_length=100, unique=True)),
                (
                    "kind",
                    models.CharField(
                        choices=[("https", "HTTPS URL"), ("folder", "Shared folder")],
                        default="https",
                        max_length=8,
                    ),
                ),
                (
                    "url",
                    models.URLField(
                        blank=True,
                        help_text="HTTPS feeds: the extract's address, without credentials.",
                        max_length=2000,
                        validators=[policies.models.validate_feed_url],
                    ),
                ),
                (
                    "path",
                    models.CharField(
                        blank=True,
                        help_text="Folder feeds: a folder inside FEEDS_FOLDER_ROOT (absolute, or relative to it).",
                        max_length=500,
                    ),
                ),
                (
                    "pattern",
                    models.CharField(
                        default="*.csv",
                        help_text="Folder feeds: the newest complete file matching this is imported.",
                        max_length=100,
                        validators=[policies.models.validate_file_pattern],
                    ),
                ),
                (
                    "auth",
                    models.CharField(
                        choices=[
                            ("none", "None"),
                            ("basic", "Basic (username and password)"),
                            ("bearer", "Bearer token"),
                            ("header", "Custom header"),
                        ],
                        default="none",
                        max_length=8,
                    ),
                ),
                (
                    "username",
                    models.CharField(blank=True, help_text="Basic authentication.", max_length=200),
                ),
                (
                    "header_name",
                    models.CharField(
                        blank=True,
                        help_text="Custom header authentication, e.g. X-API-Key.",
                        max_length=100,
                    ),
                ),
                ("secret_encrypted", models.TextField(blank=True, editable=False)),
                ("active", models.BooleanField(default=True, help_text="Fetched on its schedule.")),
                ("etag", models.CharField(blank=True, editable=False, max_length=500)),
                ("last_modified", models.CharField(blank=True, editable=False, max_length=100)),
                ("content_sha256", models.CharField(blank=True, editable=False, max_length=64)),
                ("consecutive_failures", models.PositiveIntegerField(default=0, editable=False)),
                ("last_success_at", models.DateTimeField(blank=True, editable=False, null=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                (
                    "periodic_task",
                    models.OneToOneField(
                        blank=True,
                        editable=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="feed",
                        to="django_celery_beat.periodictask",
                    ),
                ),
            ],
            options={
                "ordering": ["name"],
            },
        ),
        migrations.CreateModel(
            name="FeedRun",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "outcome",
                    models.CharField(
                        choices=[
                            ("running", "Running"),
                            ("imported", "Imported"),
                            ("unchanged", "Unchanged (same content)"),
                            ("not_modified", "Not modified (HTTP 304)"),
                            ("failed", "Failed"),
                        ],
                        default="running",
                        max_length=16,
                    ),
                ),
                ("started_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("heartbeat_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                (
                    "file_name",
                    models.CharField(
                        blank=True, help_text="The file a folder feed picked.", max_length=255
                    ),
                ),
                ("size_bytes", models.PositiveBigIntegerField(default=0)),
                ("content_sha256", models.CharField(blank=True, max_length=64)),
                ("rows_total", models.PositiveIntegerField(default=0)),
                ("rows_created", models.PositiveIntegerField(default=0)),
                ("rows_updated", models.PositiveIntegerField(default=0)),
                ("rows_unchanged", models.PositiveIntegerField(default=0)),
                ("rows_rejected", models.PositiveIntegerField(default=0)),
                (
                    "rejected_rows",
                    models.JSONField(
                        blank=True,
                        default=list,
                        help_text="The first rejected: [{line, policy_number, reason}]",
                    ),
                ),
                ("error", models.TextField(blank=True, help_text="Why the run failed.")),
                (
                    "feed",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="runs",
                        to="policies.feed",
                    ),
                ),
            ],
            options={
                "ordering": ["-started_at", "-id"],
            },
        ),
        migrations.AddConstraint(
            model_name="feed",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("kind", "https"), models.Q(("url", ""), _negated=True), ("path", "")),
                    models.Q(
                        ("kind", "folder"),
                        models.Q(("path", ""), _negated=True),
                        ("url", ""),
                        ("auth", "none"),
                    ),
                    _connector="OR",
                ),
                name="feed_kind_has_its_location",
            ),
        ),
        migrations.AddConstraint(
            model_name="feed",
            constraint=models.CheckConstraint(
                condition=models.Q(("auth__in", ["none", "basic", "bearer", "header"])),
                name="feed_auth_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="feed",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("auth", "basic"), _negated=True),
                    models.Q(("username", ""), _negated=True),
                    _connector="OR",
                ),
                name="feed_basic_auth_has_username",
            ),
        ),
        migrations.AddConstraint(
            model_name="feed",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("auth", "header"), _negated=True),
                    models.Q(("header_name", ""), _negated=True),
                    _connector="OR",
                ),
                name="feed_header_auth_has_header_name",
            ),
        ),
        migrations.AddIndex(
            model_name="feedrun",
            index=models.Index(fields=["feed", "-started_at"], name="feed_run_feed_recent"),
        ),
        migrations.AddConstraint(
            model_name="feedrun",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("outcome__in", ["running", "imported", "unchanged", "not_modified", "failed"])
                ),
                name="feed_run_outcome_valid",
            ),
        ),
        migrations.AddConstraint(
            model_name="feedrun",
            constraint=models.UniqueConstraint(
                condition=models.Q(("outcome", "running")),
                fields=("feed",),
                name="feed_run_one_running",
            ),
        ),
    ]
