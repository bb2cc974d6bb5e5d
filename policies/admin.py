from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import Count, OuterRef, Subquery
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from policies import feeds, tasks
from policies.models import (
    Agent,
    Customer,
    Feed,
    FeedRun,
    ImportJob,
    Policy,
    ProductLine,
    ProductLineName,
)


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["email", "name", "phone", "policy_count"]
    search_fields = ["email", "user__username", "user__first_name", "user__last_name"]
    autocomplete_fields = ["user"]
    list_select_related = ["user"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(policy_count=Count("policies"))

    @admin.display(description="policies", ordering="policy_count")
    def policy_count(self, agent: Agent) -> int:
        return agent.policy_count


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    """The engine (notifications.admin) adds the consent history and records consent changed
    here."""

    list_display = [
        "name",
        "email",
        "phone",
        "language",
        "timezone",
        "email_consent",
        "sms_consent",
        "whatsapp_consent",
        "email_undeliverable",
    ]
    list_filter = [
        "language",
        "email_consent",
        "sms_consent",
        "whatsapp_consent",
        "email_undeliverable",
    ]
    search_fields = ["name", "email", "phone"]
    readonly_fields = ["created_at", "updated_at"]


class ProductLineNameInline(admin.TabularInline):
    model = ProductLineName
    extra = 1


@admin.register(ProductLine)
class ProductLineAdmin(admin.ModelAdmin):
    """Lines come from imports (a new code adds one); an admin names them in each language
    customers read and may give one its own renewal page."""

    list_display = ["code", "names", "renew_url"]
    search_fields = ["code", "names__name"]
    inlines = [ProductLineNameInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("names")

    def get_readonly_fields(self, request, obj=None):
        return ["code"] if obj else []  # policies name their line by it

    @admin.display(description="names")
    def names(self, line: ProductLine) -> str:
        return ", ".join(f"{name.language}: {name.name}" for name in line.names.all()) or "-"

    def has_delete_permission(self, request, obj=None):
        # Policies name a line by its code: a line still named stays.
        if obj is not None and Policy.objects.filter(product_line=obj.code).exists():
            return False
        return super().has_delete_permission(request, obj)


@admin.register(Policy)
class PolicyAdmin(admin.ModelAdmin):
    list_display = [
        "policy_number",
        "product_line",
        "customer",
        "agent",
        "start_date",
        "expiry_date",
        "status",
    ]
    list_filter = ["status", "product_line", "agent"]
    search_fields = ["policy_number", "customer__name", "customer__email"]
    date_hierarchy = "expiry_date"
    list_select_related = ["customer", "agent__user"]
    autocomplete_fields = ["customer", "agent"]
    readonly_fields = ["created_at", "updated_at"]


@admin.register(ImportJob)
class ImportJobAdmin(admin.ModelAdmin):
    """Uploads are made and re-run on the upload page; the admin only lists them."""

    list_display = [
        "id",
        "original_name",
        "agent",
        "uploaded_by",
        "status",
        "attempt",
        "rows_done",
        "rows_total",
        "rejected",
        "created_at",
        "finished_at",
        "file_purged_at",
    ]
    list_filter = ["status", "agent"]
    list_select_related = ["agent__user", "uploaded_by"]
    exclude = ["rejected_rows"]  # thousands of rows: the upload page offers them as CSV

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


def https_by_default(field, **kwargs):
    """An address typed without a scheme is taken for https://, as Django 6 will."""
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class FeedForm(forms.ModelForm):
    """The secret is write-only: never sent back to the browser, kept when left empty."""

    secret = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        label="Password, token or header value",
        help_text="Write-only. Leave empty to keep the current value.",
    )
    clear_secret = forms.BooleanField(required=False, label="Remove the stored secret")
    every_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=7 * 24 * 60,
        label="Every N minutes",
        help_text="Fetch every so many minutes; or give a cron expression instead.",
    )
    cron = forms.CharField(
        required=False,
        label="Cron expression",
        help_text=(
            'minute hour day-of-month month day-of-week, in TIME_ZONE, e.g. "0 2 * * *" for '
            "nightly at 02:00 (a new feed's schedule when neither is given). Also editable "
            "under Periodic tasks."
        ),
    )

    class Meta:
        model = Feed
        fields = ["name", "kind", "url", "path", "pattern", "auth", "username", "header_name"]
        fields += ["active"]
        formfield_callback = https_by_default

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        cron, every_minutes = feeds.schedule_of(self.instance.periodic_task)
        self.initial.setdefault("cron", cron)
        self.initial.setdefault("every_minutes", every_minutes)

    def clean_cron(self) -> str:
        cron = " ".join(self.cleaned_data["cron"].split())
        if cron:
            feeds.cron_fields(cron)
        return cron

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("cron") and cleaned.get("every_minutes"):
            raise forms.ValidationError("Give either every N minutes or a cron expression.")
        authenticated = cleaned.get("kind") == Feed.Kind.HTTPS and cleaned.get("auth") not in (
            None,
            Feed.Auth.NONE,
        )
        kept = self.instance.has_secret and not cleaned.get("clear_secret")
        if authenticated and not (cleaned.get("secret") or kept):
            self.add_error("secret", "This authentication needs its password, token or value.")
        return cleaned

    def secret_to_store(self) -> str | None:
        """The new secret, "" to remove it, None to keep the current one."""
        if self.cleaned_data.get("secret"):
            return self.cleaned_data["secret"]
        return "" if self.cleaned_data.get("clear_secret") else None

    def schedule_changed(self) -> bool:
        return bool({"cron", "every_minutes"} & set(self.changed_data))


class LastRun:
    """The latest run's outcome and start, annotated on the feed list in one query."""

    runs = FeedRun.objects.filter(feed=OuterRef("pk")).order_by("-started_at", "-id")
    annotations = {
        "last_outcome": Subquery(runs.values("outcome")[:1]),
        "last_started_at": Subquery(runs.values("started_at")[:1]),
    }


@admin.register(Feed)
class FeedAdmin(admin.ModelAdmin):
    """Feeds with their schedule (the PeriodicTask save_feed keeps in step), a "Fetch now"
    action and the latest runs; the secret is shown only as set or not set."""

    form = FeedForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    list_display = [
        "name",
        "kind",
        "schedule",
        "active",
        "last_run",
        "last_started_at",
        "consecutive_failures",
    ]
    list_filter = ["kind", "active"]
    search_fields = ["name"]
    list_select_related = ["periodic_task__crontab", "periodic_task__interval"]
    actions = ["fetch_now"]
    readonly_fields = [
        "secret_status",
        "schedule_link",
        "consecutive_failures",
        "last_success_at",
        "etag",
        "last_modified",
        "content_sha256",
        "recent_runs",
    ]
    fieldsets = [
        (None, {"fields": ["name", "kind", "active"]}),
        ("Where", {"fields": ["url", "path", "pattern"]}),
        (
            "Authentication (HTTPS)",
            {
                "fields": [
                    "auth",
                    "username",
                    "header_name",
                    "secret_status",
                    "secret",
                    "clear_secret",
                ]
            },
        ),
        ("Schedule", {"fields": ["every_minutes", "cron", "schedule_link"]}),
        (
            "Fetches",
            {
                "fields": [
                    "consecutive_failures",
                    "last_success_at",
                    "etag",
                    "last_modified",
                    "content_sha256",
                    "recent_runs",
                ]
            },
        ),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(**LastRun.annotations)

    def save_model(self, request, obj, form, change):
        changed = form.schedule_changed()
        feeds.save_feed(
            obj,
            cron=form.cleaned_data["cron"] if changed else "",
            every_minutes=form.cleaned_data["every_minutes"] if changed else None,
            secret=form.secret_to_store(),
        )

    @admin.action(description="Fetch now")
    def fetch_now(self, request, queryset):
        ids = list(queryset.values_list("pk", flat=True))
        for feed_id in ids:
            transaction.on_commit(lambda feed_id=feed_id: tasks.fetch_feed.delay(feed_id))
        self.message_user(
            request, f"{len(ids)} feed(s) will be fetched; their runs appear below.", messages.INFO
        )

    @admin.display(description="schedule")
    def schedule(self, feed: Feed) -> str:
        return feeds.describe_schedule(feed.periodic_task)

    @admin.display(description="last run", ordering="last_outcome")
    def last_run(self, feed: Feed) -> str:
        return FeedRun.Outcome(feed.last_outcome).label if feed.last_outcome else "never run"

    @admin.display(description="last started", ordering="last_started_at")
    def last_started_at(self, feed: Feed):
        return feed.last_started_at

    @admin.display(description="secret")
    def secret_status(self, feed: Feed) -> str:
        return "set" if feed.has_secret else "not set"

    @admin.display(description="periodic task")
    def schedule_link(self, feed: Feed) -> str:
        task = feed.periodic_task
        if task is None:
            return "none yet: saving the feed creates it"
        url = reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
        return format_html(
            '<a href="{}">{}</a> ({}, {})',
            url,
            task.name,
            feeds.describe_schedule(task),
            "enabled" if task.enabled else "disabled",
        )

    @admin.display(description="latest runs")
    def recent_runs(self, feed: Feed) -> str:
        runs = feed.runs.all()[:10] if feed.pk else []
        if not runs:
            return "none yet"
        rows = format_html_join(
            "",
            "<tr><td><a href='{}'>{}</a></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    reverse("admin:policies_feedrun_change", args=[run.pk]),
                    f"{run.started_at:%Y-%m-%d %H:%M:%S}",
                    run.get_outcome_display(),
                    f"{run.rows_created} created, {run.rows_updated} updated, "
                    f"{run.rows_rejected} rejected"
                    if run.outcome == FeedRun.Outcome.IMPORTED
                    else "",
                    run.error,
                )
                for run in runs
            ),
        )
        every = reverse("admin:policies_feedrun_changelist") + f"?feed__id__exact={feed.pk}"
        return format_html(
            "<table><tr><th>started</th><th>outcome</th><th>rows</th><th>error</th></tr>{}"
            "</table><a href='{}'>Every run</a>",
            rows,
            every,
        )


@admin.register(FeedRun)
class FeedRunAdmin(admin.ModelAdmin):
    """The feeds' run log, read-only: each fetch and what it imported or why it failed."""

    list_display = [
        "feed",
        "started_at",
        "finished_at",
        "outcome",
        "size_bytes",
        "rows_total",
        "rows_created",
        "rows_updated",
        "rows_unchanged",
        "rows_rejected",
        "error",
    ]
    list_filter = ["outcome", "feed"]
    list_select_related = ["feed"]
    date_hierarchy = "started_at"

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
