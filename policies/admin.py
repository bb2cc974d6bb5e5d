from django.contrib import admin
from django.db.models import Count

from notifications import preferences
from notifications.models import ConsentChange
from policies.models import Agent, Customer, ImportJob, Policy


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


class ConsentChangeInline(admin.TabularInline):
    """When and how the customer's consent changed, newest first: read-only history."""

    model = ConsentChange
    fields = ["changed_at", "channel", "accepted", "source"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Customer)
class CustomerAdmin(admin.ModelAdmin):
    inlines = [ConsentChangeInline]
    list_display = [
        "name",
        "email",
        "phone",
        "language",
        "timezone",
        "email_consent",
        "sms_consent",
        "email_undeliverable",
    ]
    list_filter = ["language", "email_consent", "sms_consent", "email_undeliverable"]
    search_fields = ["name", "email", "phone"]
    readonly_fields = ["created_at", "updated_at"]

    def save_model(self, request, obj, form, change):
        """Consent changed here is recorded like any other change: through change_consent."""
        changed = {
            channel: form.cleaned_data[field]
            for channel, field in preferences.CONSENT_FIELDS.items()
            if change and field in form.changed_data
        }
        for channel in changed:
            field = preferences.CONSENT_FIELDS[channel]
            setattr(obj, field, form.initial[field])  # saved below, with its history
        super().save_model(request, obj, form, change)
        for channel, accepted in changed.items():
            preferences.change_consent(
                Customer.objects.filter(pk=obj.pk),
                channel=channel,
                accepted=accepted,
                source=ConsentChange.Source.ADMIN,
            )


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
