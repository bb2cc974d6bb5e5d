"""Delivery tracking, written once for every provider: a provider's webhook parses its payload
into a TrackingEvent, and `apply` records it and moves the notification's status. A replayed
event is recorded once; an event that arrives late never moves a status backwards. An event
about a digest's message is about each of the reminders it carried: each records it on its
own timeline, and each moves."""

import logging
from dataclasses import dataclass, field
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from notifications import fallback, lifecycle, preferences
from notifications.models import Channel, ConsentChange, DeliveryEvent, Notification
from notifications.signals import email_undeliverable
from policies.models import Customer

logger = logging.getLogger(__name__)
Status = Notification.Status
Type = DeliveryEvent.Type

# What each event means for its notification's status; events not listed leave it alone.
STATUS_AFTER = {
    Type.SENT: Status.SENT,
    Type.DELIVERED: Status.DELIVERED,
    Type.READ: Status.DELIVERED,  # read on WhatsApp: delivered, whichever callback came first
    Type.BOUNCED: Status.BOUNCED,
    Type.REJECTED: Status.FAILED,
    Type.FAILED: Status.FAILED,
    Type.UNDELIVERED: Status.FAILED,
}
# The timestamp a status records when an event moves a notification there.
TIMESTAMP_OF = {Status.SENT: "sent_at", Status.DELIVERED: "delivered_at"}
# Twilio's code for "the recipient replied STOP": the customer opted out of SMS.
TWILIO_UNSUBSCRIBED = "21610"


@dataclass(frozen=True)
class TrackingEvent:
    provider: str
    event_type: str
    event_id: str
    occurred_at: datetime
    provider_message_id: str = ""
    notification_id: int | None = None
    digest_id: int | None = None
    error_code: str = ""
    reason: str = ""
    payload: dict = field(default_factory=dict)


def apply(event: TrackingEvent) -> DeliveryEvent | None:
    """Record the event and act on it. Returns None for a replay (nothing happens twice)."""
    notifications = _find_notifications(event)
    # A digest's reminders each record the event, under an id of their own: the provider's
    # event id once per reminder, so that a replay is still told by it (even by a reminder
    # that went in the digest and is now its only member left).
    each = bool(notifications) and (len(notifications) > 1 or event.digest_id is not None)
    try:
        with transaction.atomic():
            recorded = [
                DeliveryEvent.objects.create(
                    notification=notification,
                    provider=event.provider,
                    event_type=event.event_type,
                    provider_event_id=f"{event.event_id}/{notification.pk}"
                    if each
                    else event.event_id,
                    provider_message_id=event.provider_message_id,
                    occurred_at=event.occurred_at,
                    error_code=event.error_code,
                    reason=event.reason,
                    raw_payload=event.payload,
                )
                for notification in notifications or [None]
            ]
    except IntegrityError:
        return None  # the same event again: its effects were applied the first time
    if not notifications:
        logger.warning(
            "%s %s event for an unknown message %r",
            event.provider,
            event.event_type,
            event.provider_message_id,
        )
        return recorded[0]
    target = STATUS_AFTER.get(event.event_type)
    if target:
        fields = {}
        if target in TIMESTAMP_OF:
            fields[TIMESTAMP_OF[target]] = event.occurred_at
        if target in (Status.FAILED, Status.BOUNCED):
            fields["last_error"] = describe(event)
        moved = lifecycle.move(
            [notification.pk for notification in notifications], target, **fields
        )
        if moved and target == Status.FAILED:
            for notification in notifications:
                if fallback.falls_back_on_failure_report(notification):
                    _fall_back(notification)
    apply_to_customer(
        notifications[0].customer_id,
        event.event_type,
        event.error_code,
        channel=notifications[0].channel,
    )
    return recorded[0]


def _fall_back(notification: Notification) -> None:
    """The provider reported the message failed for good: its rule's fallback goes instead,
    with the next release of waiting reminders (every minute)."""
    notification = Notification.objects.select_related("rule__fallback_template").get(
        pk=notification.pk
    )
    if fallback_id := fallback.plan_fallback(notification, status=Status.PLANNED):
        logger.info("notification %s failed: %s planned in its place", notification.pk, fallback_id)


def apply_to_customer(
    customer_id: int, event_type: str, error_code: str = "", *, channel: str = Channel.SMS
) -> None:
    """What an event about a message on `channel` says about the customer: bounces make the
    address undeliverable, a complaint or an unsubscribe withdraws email consent, Twilio's STOP
    code withdraws consent to the channel it came on (SMS, WhatsApp)."""
    customers = Customer.objects.filter(pk=customer_id)
    Source = ConsentChange.Source
    if event_type == Type.BOUNCED:
        with transaction.atomic(savepoint=False):  # the signal's receivers write in it
            if customers.filter(email_undeliverable=False).update(
                email_undeliverable=True, updated_at=timezone.now()
            ):
                email_undeliverable.send(Customer, customer_ids=[customer_id])
    elif event_type in (Type.COMPLAINED, Type.UNSUBSCRIBED):
        source = Source.COMPLAINT if event_type == Type.COMPLAINED else Source.EMAIL_PROVIDER
        preferences.change_consent(customers, channel=Channel.EMAIL, accepted=False, source=source)
    elif error_code == TWILIO_UNSUBSCRIBED:
        phone_channel = Channel.WHATSAPP if channel == Channel.WHATSAPP else Channel.SMS
        preferences.change_consent(
            customers, channel=phone_channel, accepted=False, source=Source.CARRIER
        )


def describe(event: TrackingEvent) -> str:
    code = f" (error {event.error_code})" if event.error_code else ""
    return f"{event.provider}: {event.reason or event.event_type}{code}"


def _find_notifications(event: TrackingEvent) -> list[Notification]:
    """The notifications an event is about: by the id we attached to the message (a
    notification's, or a digest's: all it carried), else by the provider's message id (which
    a digest's reminders share)."""
    notifications = Notification.objects.only("pk", "customer_id", "status", "channel").order_by(
        "pk"
    )
    if event.notification_id is not None:
        return list(notifications.filter(pk=event.notification_id))
    if event.digest_id is not None:
        return list(notifications.filter(digest_id=event.digest_id))
    if event.provider_message_id:
        return list(notifications.filter(provider_message_id=event.provider_message_id))
    return []
