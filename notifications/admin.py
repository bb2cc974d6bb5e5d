from django.contrib import admin

from notifications.models import MessageTemplate, Notification, ReminderRule, ReminderRun


@admin.register(MessageTemplate)
class MessageTemplateAdmin(admin.ModelAdmin):
    list_display = ["name", "channel"]
    list_filter = ["channel"]
    search_fields = ["name", "subject", "body"]


@admin.register(ReminderRule)
class ReminderRuleAdmin(admin.ModelAdmin):
    list_display = ["__str__", "lead_days", "channel", "product_line", "template", "active"]
    list_editable = ["lead_days", "active"]
    list_filter = ["active", "channel", "product_line"]
    list_select_related = ["template"]


class ReadOnlyAdmin(admin.ModelAdmin):
    """A record of what happened: people read it, only Renewly writes it."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
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
