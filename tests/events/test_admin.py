"""The admin: subscriptions whose secret is shown once, events with their payload, deliveries
with every attempt, Resend and Re-enable."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from events import delivery
from events.models import Delivery, Event, EventType, Subscription
from notifications import lifecycle
from notifications.models import Notification
from tests.events.conftest import subscribe


@pytest.fixture
def admin_client(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("root", "root@insurer.example"))
    return client


def test_a_new_subscriptions_secret_is_shown_once_then_only_masked(admin_client):
    add = admin_client.get(reverse("admin:events_subscription_add"))
    secret = add.context["adminform"].form.initial["secret"]
    assert secret.startswith("whsec_")
    assert secret in add.content.decode()

    response = admin_client.post(
        reverse("admin:events_subscription_add"),
        {
            "name": "Core system",
            "url": "https://core.insurer.example/renewly",
            "event_types": [EventType.NOTIFICATION_DELIVERED, EventType.POLICY_UNREACHABLE],
            "active": "on",
            "secret": secret,
        },
    )

    assert response.status_code == 302
    subscription = Subscription.objects.get()
    assert subscription.secret == secret
    assert subscription.event_types == ["notification.delivered", "policy.unreachable"]
    page = admin_client.get(reverse("admin:events_subscription_change", args=[subscription.pk]))
    assert secret not in page.content.decode()
    assert subscription.masked_secret in page.content.decode()


def test_a_secret_not_in_standard_webhooks_form_is_refused(admin_client):
    response = admin_client.post(
        reverse("admin:events_subscription_add"),
        {
            "name": "Core",
            "url": "https://core.insurer.example/",
            "event_types": [EventType.NOTIFICATION_SENT],
            "secret": "hunter2",
        },
    )

    assert "at least 24 bytes in base64" in response.content.decode()
    assert not Subscription.objects.exists()


def test_resend_sends_a_delivered_event_again_with_the_same_webhook_id(
    admin_client, reminder, receiver
):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    lifecycle.move(reminder.pk, Notification.Status.DELIVERED)
    delivery.deliver_due()
    sent = Delivery.objects.get()

    admin_client.post(
        reverse("admin:events_delivery_changelist"),
        {"action": "resend", ACTION_CHECKBOX_NAME: [sent.pk]},
    )
    delivery.deliver_due()

    assert receiver.received == [Event.objects.get().webhook_id] * 2
    page = admin_client.get(reverse("admin:events_delivery_change", args=[sent.pk]))
    assert page.content.decode().count("{&quot;status&quot;: 200}") == 2  # both attempts


def test_reenable_switches_a_disabled_subscription_back_on(admin_client, receiver):
    subscription = subscribe(
        receiver,
        EventType.NOTIFICATION_SENT,
        active=False,
        disabled_at=timezone.now(),
        disabled_reason="Disabled after 10 failed attempts",
        consecutive_failures=10,
    )

    admin_client.post(
        reverse("admin:events_subscription_changelist"),
        {"action": "reenable", ACTION_CHECKBOX_NAME: [subscription.pk]},
    )

    subscription.refresh_from_db()
    assert (subscription.active, subscription.disabled_reason) == (True, "")
    assert subscription.consecutive_failures == 0


def test_an_event_shows_its_payload(admin_client, reminder, receiver):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    lifecycle.move(reminder.pk, Notification.Status.DELIVERED)
    event = Event.objects.get()

    page = admin_client.get(reverse("admin:events_event_change", args=[event.pk]))

    assert event.webhook_id in page.content.decode()
    assert "&quot;policy_number&quot;: &quot;P-100&quot;" in page.content.decode()
