from csp.constants import UNSAFE_INLINE
from csp.decorators import csp_update
from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from notifications import circuit, experiments, preferences, previews, services
from notifications.models import (
    ONE_RUNNING_EXPERIMENT,
    CallListEmail,
    CallListRule,
    CallOutcome,
    Channel,
    CircuitBreaker,
    ConsentChange,
    DeliveryEvent,
    Digest,
    HousekeepingRun,
    InboundMessage,
    MessageTemplate,
    Notification,
    PolicyOutcome,
    ReminderRule,
    ReminderRun,
    TemplateExperiment,
    TemplateTranslation,
    TemplateVariant,
    WeeklyReport,
    WhatsAppContent,
    WorkerLease,
)
from policies import admin as policies_admin
from policies import languages
from policies.models import Customer

# Retrying an outage's failures is the agent's Retry on any book, many at once.
RETRY_ANY = "notifications.change_notification"


class PreviewForm(forms.Form):
    policy_number = forms.CharField(
        required=False, help_text="Empty: the next active policy to expire."
    )
    language = forms.CharField(
        required=False,
        max_length=languages.MAX_LENGTH,
        validators=[languages.validate_language],
        help_text="Any language tag, e.g. de, pt-BR. Empty: the customer's own.",
    )


class SendTestForm(forms.Form):
    to = forms.CharField(
        label="Send a test to",
        help_text=(
            "Your own email address, or for SMS your number like +14155550100 (or one the site "
            "lists in PREVIEW_TEST_RECIPIENTS)."
        ),
    )
    policy_number = forms.CharField(required=False, widget=forms.HiddenInput)


class OutageRetryForm(forms.Form):
    start = forms.DateTimeField(
        help_text=f"When the provider's errors began: YYYY-MM-DD HH:MM, {settings.TIME_ZONE}."
    )
    end = forms.DateTimeField(help_text="When they ended (or now).")
    channel = forms.ChoiceField(choices=[("", "Both"), *Channel.choices], required=False)

    def clean(self):
        data = super().clean()
        if data.get("start") and data.get("end") and data["start"] >= data["end"]:
            raise forms.ValidationError("The start must come before the end.")
        return data


class PreviewAdminMixin:
    """A "Preview" page beside the change form: the reminder as a real policy's customer would
    read it, and a test send to an address the admin types."""

    preview_template = "admin/notifications/preview.html"

    def get_urls(self):
        info = self.model._meta.app_label, self.model._meta.model_name
        return [
            path(
                "<int:object_id>/preview/",
                # The email's HTML, shown in a sandboxed srcdoc frame that inherits this page's
                # policy, is styled inline (mail clients drop style sheets): styles only, never
                # script.
                self.admin_site.admin_view(
                    csp_update({"style-src": [UNSAFE_INLINE]})(self.preview_view)
                ),
                name="{}_{}_preview".format(*info),
            ),
            *super().get_urls(),
        ]

    def templates_of(self, obj) -> list[MessageTemplate]:
        raise NotImplementedError

    def preview_view(self, request, object_id: int):
        obj = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_view_permission(request, obj):
            return redirect("admin:index")
        form = PreviewForm(request.GET or None)
        send_form = SendTestForm(request.POST or None)
        # A rule's, or an experiment's rule's, scope and lead time; a template has none.
        rule = obj if isinstance(obj, ReminderRule) else getattr(obj, "rule", None)
        found, error = [], ""
        try:
            if form.is_bound and not form.is_valid():
                raise previews.PreviewError(
                    " ".join(f"{name}: {' '.join(errors)}" for name, errors in form.errors.items())
                )
            data = getattr(form, "cleaned_data", {})
            policy = previews.policy_for_preview(
                data.get("policy_number", ""),
                rule=rule,
                may_see_customers=request.user.has_perm("policies.view_customer"),
            )
            found = [
                previews.preview(
                    template,
                    policy,
                    language=data.get("language", ""),
                    lead_days=rule.lead_days if rule else None,
                )
                for template in self.templates_of(obj)
            ]
        except previews.PreviewError as problem:
            policy, error = None, str(problem)
        if request.method == "POST" and policy and send_form.is_valid():
            if not self.has_change_permission(request, obj):
                return redirect("admin:index")
            to = send_form.cleaned_data["to"]
            try:
                provider_id = previews.send_test_reminder(
                    self.templates_of(obj)[0], policy, to=to, sender=request.user
                )
            except previews.PreviewError as problem:
                send_form.add_error("to", str(problem))
            else:
                sent = f"Test reminder sent to {to} (provider id {provider_id})."
                self.log_change(request, obj, f"{sent} Filled in for {policy.policy_number}.")
                self.message_user(request, sent, messages.SUCCESS)
                return redirect(request.get_full_path())
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": obj,
            "title": f"Preview: {obj}",
            "form": form,
            "send_form": send_form,
            "policy": policy,
            "previews": found,
            "error": error,
        }
        return TemplateResponse(request, self.preview_template, context)


class TemplateTranslationInline(admin.StackedInline):
    model = TemplateTranslation
    extra = 0


class WhatsAppContentInline(admin.StackedInline):
    """A WhatsApp template's approved content, one per language (its Content SID and the
    values of its variables); a customer's language without one gets the default language's."""

    model = WhatsAppContent
    extra = 0


@admin.register(MessageTemplate)
class MessageTemplateAdmin(PreviewAdminMixin, admin.ModelAdmin):
    list_display = ["name", "channel", "kind", "languages"]
    list_filter = ["channel", "kind"]
    search_fields = ["name", "subject", "body"]
    inlines = [TemplateTranslationInline, WhatsAppContentInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("translations")

    @admin.display(description="languages")
    def languages(self, template: MessageTemplate) -> str:
        others = [t.language for t in template.translations.all()]
        return ", ".join([settings.LANGUAGE_CODE, *others])

    def templates_of(self, template):
        return [template]


@admin.register(ReminderRule)
class ReminderRuleAdmin(PreviewAdminMixin, admin.ModelAdmin):
    list_display = ["__str__", "lead_days", "channel", "product_line", "template", "active"]
    list_editable = ["lead_days", "active"]
    list_filter = ["active", "channel", "product_line"]
    list_select_related = ["template"]
    actions = ["preview_and_send_test"]

    def templates_of(self, rule):
        return [rule.template] + ([rule.fallback_template] if rule.fallback_template else [])

    @admin.action(description="Preview and send a test reminder")
    def preview_and_send_test(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one rule to test.", messages.WARNING)
            return None
        return redirect(reverse("admin:notifications_reminderrule_preview", args=[queryset[0].pk]))


class VariantFormSet(forms.BaseInlineFormSet):
    """An experiment's variants: two or more, each a reminder template of the rule's channel.
    A variant reminders went in keeps its words: its results are about them."""

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        kept = [
            form
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE", False)
        ]
        if len(kept) < 2:
            raise forms.ValidationError(
                "An experiment compares two or more variants: add at least two."
            )
        rule = self.instance.rule if self.instance.rule_id else None
        for form in kept:
            template = form.cleaned_data.get("template")
            if template is None:
                continue
            if rule and template.channel != rule.channel:
                form.add_error(
                    "template",
                    f"Choose an {rule.get_channel_display()} template: the rule sends by "
                    f"{rule.get_channel_display()}.",
                )
            elif template.kind != MessageTemplate.Kind.REMINDER:
                form.add_error("template", "Choose a reminder template: digests go on their own.")
            elif (
                form.instance.pk
                and "template" in form.changed_data
                and form.instance.notifications.exists()
            ):
                form.add_error(
                    "template",
                    "Reminders went in this variant's words already: end the experiment and "
                    "start another to try other words.",
                )
        if self._moves_policies(kept) and self._reminders_went():
            # A policy's variant follows from the weights in variant id order (variant_for).
            raise forms.ValidationError(
                "Reminders went in this experiment's variants already: other weights or "
                "variants would move policies to another variant. To try another split, end "
                "the experiment and start another."
            )

    def _moves_policies(self, kept: list[forms.Form]) -> bool:
        removed = [form for form in self.deleted_forms if form.instance.pk]
        return bool(removed) or any(
            form.instance.pk is None or "weight" in form.changed_data for form in kept
        )

    def _reminders_went(self) -> bool:
        return self.instance.pk is not None and (
            Notification.objects.filter(variant__experiment=self.instance).exists()
        )


class TemplateExperimentForm(forms.ModelForm):
    def clean(self):
        data = super().clean()
        # The constraint's own check skips it: ended_at is not a field of the form.
        rule = data.get("rule")
        if rule and rule.experiments.filter(ended_at__isnull=True).exists():
            self.add_error("rule", ONE_RUNNING_EXPERIMENT)
        return data


class TemplateVariantInline(admin.TabularInline):
    model = TemplateVariant
    formset = VariantFormSet
    fields = ["label", "template", "weight"]
    extra = 2
    min_num = 0  # the formset says "at least two" in words, rather than Django's count


@admin.register(TemplateExperiment)
class TemplateExperimentAdmin(PreviewAdminMixin, admin.ModelAdmin):
    """Run two or more wordings of a rule's reminder side by side; each policy gets one of them
    (by its id and the weights) for as long as the experiment runs. Ended, it is kept as it
    was: read-only, with its results. Its preview shows every variant's words."""

    form = TemplateExperimentForm
    list_display = ["name", "rule", "started_at", "ended_at", "results"]
    list_filter = [("ended_at", admin.EmptyFieldListFilter)]
    list_select_related = ["rule"]
    inlines = [TemplateVariantInline]
    actions = ["end_experiments", "count_results"]

    def get_readonly_fields(self, request, obj=None):
        # Its rule is fixed once it exists: its variants' words are that rule's channel's.
        started = ["started_at", "ended_at", "counted_at", "results"]  # it starts when saved
        return ["rule", *started] if obj else started

    def templates_of(self, experiment):
        return [variant.template for variant in experiment.variants.select_related("template")]

    def has_change_permission(self, request, obj=None):
        if obj is not None and not obj.is_running:
            return False  # ended: its history stays as it was
        return super().has_change_permission(request, obj)

    @admin.display(description="results")
    def results(self, experiment: TemplateExperiment) -> str:
        if experiment.pk is None:
            return "-"
        url = reverse("workspace:experiments") + f"#experiment-{experiment.pk}"
        return format_html('<a href="{}">See the results in the workspace</a>', url)

    @admin.action(
        description="End the experiment (the rule's own template again)", permissions=["change"]
    )
    def end_experiments(self, request, queryset):
        ended = sum(experiments.end(experiment) for experiment in queryset)
        self.message_user(
            request,
            f"{ended} experiment(s) ended; their variants and results are kept.",
            messages.SUCCESS,
        )

    @admin.action(
        description="Count every experiment's results now (the daily scan does)",
        permissions=["change"],
    )
    def count_results(self, request, queryset):
        experiments.tally()
        self.message_user(request, "Results counted.", messages.SUCCESS)


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record of what happened: people read it, only Renewly writes it."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class DeliveryEventInline(admin.TabularInline):
    model = DeliveryEvent
    fields = ["occurred_at", "provider", "event_type", "error_code", "reason"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    inlines = [DeliveryEventInline]
    list_display = [
        "id",
        "policy",
        "channel",
        "lead_days",
        "due_on",
        "status",
        "attempts",
        "sent_at",
        "last_error",
    ]
    list_filter = ["status", "channel", "lead_days", "due_on"]
    search_fields = ["policy__policy_number", "customer__name", "customer__email"]
    list_select_related = ["policy"]
    date_hierarchy = "due_on"
    show_full_result_count = False  # a count over millions of rows on every page is slow

    def get_urls(self):
        return [
            path(
                "retry-outage/",
                self.admin_site.admin_view(self.retry_outage_view),
                name="notifications_notification_retry_outage",
            ),
            *super().get_urls(),
        ]

    def retry_outage_view(self, request):
        """Retry everything an outage made fail: the notifications that gave up on transient
        provider errors in a time range, each with the agent's Retry's checks. A GET counts
        them; the POST retries them."""
        if not request.user.has_perm(RETRY_ANY):
            return redirect("admin:index")
        form = OutageRetryForm(request.POST or request.GET or None)
        found = None
        if form.is_bound and form.is_valid():
            outage = form.cleaned_data
            if request.method == "POST":
                result = services.retry_outage(**outage)
                self.message_user(
                    request, f"{result.requeued} re-queued to be sent again.", messages.SUCCESS
                )
                for reason, count in result.refused.most_common():
                    self.message_user(request, f"{count} refused: {reason}", messages.WARNING)
                return redirect(request.get_full_path())
            found = services.outage_failures(**outage).count()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Retry an outage's failures",
            "form": form,
            "found": found,
        }
        return TemplateResponse(request, "admin/notifications/retry_outage.html", context)


@admin.register(CircuitBreaker)
class CircuitBreakerAdmin(ReadOnlyAdmin):
    """Each provider's circuit breaker: sending, or paused after a run of transient errors
    (its reminders wait in the database) and probed at growing intervals. "Resume" closes one
    by hand, for a provider known to be back."""

    list_display = [
        "channel",
        "provider",
        "state",
        "consecutive_failures",
        "opened_at",
        "next_probe_at",
        "probe_interval_seconds",
        "last_error",
    ]
    actions = ["resume"]

    def has_resume_permission(self, request) -> bool:
        return request.user.has_perm("notifications.change_circuitbreaker")

    @admin.action(description="Resume sending now (close the breaker)", permissions=["resume"])
    def resume(self, request, queryset):
        resumed = [breaker for breaker in queryset if circuit.resume(breaker)]
        for breaker in resumed:
            self.log_change(request, breaker, "Resumed by hand.")
        self.message_user(
            request,
            f"{len(resumed)} resumed; what waited goes with the next release of waiting "
            "reminders (every minute).",
            messages.SUCCESS,
        )


@admin.register(WorkerLease)
class WorkerLeaseAdmin(ReadOnlyAdmin):
    """The processes that send: one whose lease lapsed died, and recovery reconciles what it
    left sending."""

    list_display = ["name", "started_at", "expires_at", "alive", "sending"]
    ordering = ["-expires_at"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                sending_count=Count("held_notifications")  # only sending ones hold a lease
            )
        )

    @admin.display(boolean=True)
    def alive(self, lease: WorkerLease) -> bool:
        return lease.expires_at > timezone.now()

    @admin.display(description="notifications sending", ordering="sending_count")
    def sending(self, lease: WorkerLease) -> int:
        return lease.sending_count


@admin.register(Digest)
class DigestAdmin(ReadOnlyAdmin):
    """The messages that carried several reminders: what each said, to whom, and which."""

    list_display = ["id", "channel", "to", "provider_message_id", "created_at"]
    list_filter = ["channel"]
    search_fields = ["to", "provider_message_id", "notifications__policy__policy_number"]
    date_hierarchy = "created_at"


@admin.register(PolicyOutcome)
class PolicyOutcomeAdmin(ReadOnlyAdmin):
    """How each term ended (renewed or lapsed), with the reminders before it and the last one
    delivered: written by the engine, read here."""

    list_display = [
        "policy",
        "kind",
        "source",
        "expiry_date",
        "new_expiry_date",
        "days_before_expiry",
        "reminders_delivered",
        "last_touch_channel",
        "last_touch_lead_days",
    ]
    list_filter = ["kind", "source", "last_touch_channel"]
    search_fields = ["policy__policy_number"]
    list_select_related = ["policy"]
    date_hierarchy = "occurred_at"


@admin.register(ReminderRun)
class ReminderRunAdmin(ReadOnlyAdmin):
    list_display = [
        "run_date",
        "started_at",
        "finished_at",
        "planned",
        "skipped",
        "cancelled",
        "enqueued",
    ]
    date_hierarchy = "run_date"


@admin.register(DeliveryEvent)
class DeliveryEventAdmin(ReadOnlyAdmin):
    list_display = [
        "occurred_at",
        "provider",
        "event_type",
        "notification_id",
        "provider_message_id",
        "error_code",
        "reason",
    ]
    list_filter = ["provider", "event_type", "occurred_at"]
    search_fields = ["provider_message_id", "error_code"]
    date_hierarchy = "occurred_at"
    show_full_result_count = False


@admin.register(WeeklyReport)
class WeeklyReportAdmin(ReadOnlyAdmin):
    list_display = [
        "week_start",
        "__str__",
        "planned",
        "sent",
        "delivered",
        "failed",
        "opted_out",
        "expiring_undelivered",
        "emailed_at",
        "emailed_to",
        "email_error",
    ]
    list_filter = ["week_start"]
    list_select_related = ["agent__user"]


@admin.register(CallListRule)
class CallListRuleAdmin(admin.ModelAdmin):
    """The one rule of the agents' call lists: edited, never added or removed."""

    list_display = ["__str__", "days_before_expiry", "updated_at"]

    def has_add_permission(self, request):
        return not CallListRule.objects.exists()

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CallOutcome)
class CallOutcomeAdmin(ReadOnlyAdmin):
    """Agents' calls and what came of them, recorded in the workspace."""

    list_display = ["policy", "expiry_date", "outcome", "phone", "called_by", "called_at"]
    list_filter = ["outcome"]
    search_fields = ["policy__policy_number", "phone"]
    list_select_related = ["policy", "called_by"]
    date_hierarchy = "called_at"


@admin.register(CallListEmail)
class CallListEmailAdmin(ReadOnlyAdmin):
    list_display = ["day", "agent", "policies", "emailed_at", "emailed_to", "email_error"]
    list_filter = ["day"]
    list_select_related = ["agent__user"]


@admin.register(HousekeepingRun)
class HousekeepingRunAdmin(ReadOnlyAdmin):
    """The clean-up's last runs and what each removed; its schedule is the "Housekeeping"
    periodic task."""

    list_display = [
        "started_at",
        "finished_at",
        "task_results_deleted",
        "uploads_purged",
        "payloads_cleared",
        "idempotency_keys_deleted",
        "events_deleted",
        "error",
    ]


@admin.register(InboundMessage)
class InboundMessageAdmin(ReadOnlyAdmin):
    """Customers' SMS replies, each once by its MessageSid: what a STOP or START did."""

    list_display = ["received_at", "sender", "keyword", "customers_changed", "message_sid"]
    list_filter = ["keyword", "received_at"]
    search_fields = ["sender", "message_sid"]
    date_hierarchy = "received_at"
    show_full_result_count = False


# --- The customer's consent, on the policies' customer page ---------------------------------


class ConsentChangeInline(admin.TabularInline):
    """When and how the customer's consent changed, newest first: read-only history."""

    model = ConsentChange
    fields = ["changed_at", "channel", "accepted", "source"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


# The domain's customer page, with what the engine knows of the customer's consent.
admin.site.unregister(Customer)


@admin.register(Customer)
class CustomerAdmin(policies_admin.CustomerAdmin):
    inlines = [*policies_admin.CustomerAdmin.inlines, ConsentChangeInline]

    def save_model(self, request, obj, form, change):
        """Consent changed here is recorded like any other change: through change_consent. A
        new customer's consent differing from the default (a WhatsApp opt-in, above all) is a
        change too: WhatsApp must never be on without its history saying how."""
        changed = {
            channel: form.cleaned_data[field]
            for channel, field in preferences.CONSENT_FIELDS.items()
            if field in form.changed_data
            and (change or form.cleaned_data[field] != Customer._meta.get_field(field).default)
        }
        for channel in changed:
            field = preferences.CONSENT_FIELDS[channel]
            # Saved below as it was, then changed with its history.
            setattr(obj, field, form.initial.get(field, Customer._meta.get_field(field).default))
        super().save_model(request, obj, form, change)
        for channel, accepted in changed.items():
            preferences.change_consent(
                Customer.objects.filter(pk=obj.pk),
                channel=channel,
                accepted=accepted,
                source=ConsentChange.Source.ADMIN,
            )
