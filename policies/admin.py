from django.contrib import admin
from django.db.models import Count

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
        "email_undeliverable",
    ]
    list_filter = ["language", "email_consent", "sms_consent", "email_undeliverable"]
    search_fields = ["name", "email", "phone"]
    readonly_fields = ["created_at", "updated_at"]


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
