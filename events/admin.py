import json

from django import forms
from django.contrib import admin, messages
from django.utils.html import format_html

from events import services
from events.models import (
    Delivery,
    DeliveryAttempt,
    Event,
    EventType,
    Subscription,
    new_secret,
)
from notifications.admin import ReadOnlyAdmin


class SubscriptionForm(forms.ModelForm):
    url = forms.URLField(
        max_length=500, assume_scheme="https", help_text=Subscription.url.field.help_text
    )
    event_types = forms.MultipleChoiceField(
        choices=EventType.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = Subscription
        fields = ["name", "url", "event_types", "active", "secret"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    """The insurer's systems that get events. The secret is shown once, on the page that
    creates it; after that only its first characters."""

    form = SubscriptionForm
    list_display = [
        "name",
        "url",
        "active",
        "types",
        "consecutive_failures",
        "failing_since",
        "disabled_reason",
    ]
    list_filter = ["active"]
    search_fields = ["name", "url"]
    readonly_fields = [
        "masked_secret",
        "disabled_reason",
        "disabled_at",
        "consecutive_failures",
        "failing_since",
    ]
    actions = ["reenable"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["name", "url", "event_types", "active", "secret"]
        return ["name", "url", "event_types", "active", *self.readonly_fields]

    def get_changeform_initial_data(self, request):
        return {**super().get_changeform_initial_data(request), "secret": new_secret()}

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if obj else []

    @admin.display(description="secret")
    def masked_secret(self, subscription: Subscription) -> str:
        return f"{subscription.masked_secret} (shown only when it was created)"

    @admin.display(description="event types")
    def types(self, subscription: Subscription) -> str:
        return ", ".join(subscription.event_types)

    def save_model(self, request, obj, form, change):
        switched_on = change and "active" in form.changed_data and obj.active
        super().save_model(request, obj, form, change)
        if switched_on:
            services.reenable(obj)

    def has_reenable_permission(self, request) -> bool:
        return request.user.has_perm("events.change_subscription")

    @admin.action(description="Re-enable (send what waits now)", permissions=["reenable"])
    def reenable(self, request, queryset):
        waiting = 0
        for subscription in queryset:
            waiting += services.reenable(subscription)
            self.log_change(request, subscription, "Re-enabled.")
        self.message_user(
            request,
            f"{queryset.count()} re-enabled; {waiting} deliveries go now.",
            messages.SUCCESS,
        )


class DeliveryInline(admin.TabularInline):
    model = Delivery
    fields = ["subscription", "status", "attempts", "next_attempt_at", "delivered_at", "last_error"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("subscription")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    """The outbox: each event as its receivers get it (its payload), and where it went."""

    inlines = [DeliveryInline]
    list_display = ["id", "type", "customer_id", "created_at", "webhook_id"]
    list_filter = ["type", "created_at"]
    search_fields = ["=id", "=customer__id"]
    fields = ["id", "type", "customer", "created_at", "webhook_id", "payload_json"]
    readonly_fields = fields
    date_hierarchy = "created_at"
    show_full_result_count = False

    @admin.display(description="payload")
    def payload_json(self, event: Event) -> str:
        return format_html("<pre>{}</pre>", json.dumps(event.payload(), indent=2))


class DeliveryAttemptInline(admin.TabularInline):
    model = DeliveryAttempt
    fields = ["attempted_at", "succeeded", "status_code", "latency_ms", "response_excerpt", "error"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    """Each event for each subscription, with every attempt: status, latency, the answer.
    "Resend" sends a delivered or failed one again, with the same webhook-id."""

    inlines = [DeliveryAttemptInline]
    list_display = [
        "id",
        "event",
        "subscription",
        "status",
        "attempts",
        "next_attempt_at",
        "delivered_at",
        "last_error",
    ]
    list_filter = ["status", "subscription"]
    list_select_related = ["event", "subscription"]
    search_fields = ["=event__id"]
    actions = ["resend"]
    show_full_result_count = False

    def has_resend_permission(self, request) -> bool:
        return request.user.has_perm("events.change_delivery")

    @admin.action(description="Resend (same webhook-id)", permissions=["resend"])
    def resend(self, request, queryset):
        count = services.resend(list(queryset.values_list("pk", flat=True)))
        self.message_user(
            request,
            f"{count} will be sent again; only delivered or failed deliveries are resent.",
            messages.SUCCESS,
        )
