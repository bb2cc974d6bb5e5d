"""What each of the engine's changes becomes in the outbox. The engine sends its signals inside
the transaction of the change (notifications.signals), so each event here commits with its
change or not at all. When no subscription wants an event type, nothing is read or written."""

from django.utils import timezone

from events import outbox
from events.models import EventType
from events.outbox import Change
from notifications.models import Notification
from notifications.selectors import unreachable_customers
from policies.models import Policy

NOTIFICATION_TYPES = frozenset(
    name for name in EventType.values if name.startswith("notification.")
)
# What a notification event says, read in the move's transaction: as it was at the move.
NOTIFICATION_FIELDS = {
    "notification_id": "id",
    "policy_id": "policy_id",
    "policy_number": "policy__policy_number",
    "customer_id": "customer_id",
    "channel": "channel",
    "status": "status",
    "lead_days": "lead_days",
    "expiry_date": "expiry_date",
    "provider_message_id": "provider_message_id",
    "reason": "last_error",
    "occurred_at": "status_changed_at",
}


def notifications_moved(sender, *, ids: list[int], to: str, **_signal_arguments) -> None:
    """A notification's move to status x is the event "notification.x", if that type exists."""
    event_type = f"notification.{to}"
    if event_type not in NOTIFICATION_TYPES or not outbox.subscribers(event_type):
        return
    rows = (
        Notification.objects.filter(pk__in=ids)
        .order_by("pk")
        .values_list(*NOTIFICATION_FIELDS.values())
    )
    outbox.record(
        event_type,
        [
            Change(customer_id=data["customer_id"], data=data)
            for data in (_plain(dict(zip(NOTIFICATION_FIELDS, row, strict=True))) for row in rows)
        ],
    )


def consent_changed(
    sender,
    *,
    customer_ids: list[int],
    channel: str,
    accepted: bool,
    source: str,
    changed_by: str = "",
    **_arguments,
) -> None:
    now = timezone.now().isoformat()
    outbox.record(
        EventType.CUSTOMER_OPTED_IN if accepted else EventType.CUSTOMER_OPTED_OUT,
        [
            Change(
                customer_id=pk,
                data={
                    "customer_id": pk,
                    "channel": channel,
                    "source": source,
                    "changed_by": changed_by,
                    "occurred_at": now,
                },
            )
            for pk in customer_ids
        ],
    )
    if not accepted:
        record_unreachable(customer_ids)


def email_undeliverable(sender, *, customer_ids: list[int], **_signal_arguments) -> None:
    record_unreachable(customer_ids)


def policies_lapsed(sender, *, policy_ids: list[int], **_signal_arguments) -> None:
    """policy.lapsed, once per policy and the expiry it ran out at."""
    if not outbox.subscribers(EventType.POLICY_LAPSED):
        return
    _record_per_policy(EventType.POLICY_LAPSED, Policy.objects.filter(pk__in=policy_ids))


def record_unreachable(customer_ids: list[int]) -> None:
    """policy.unreachable, once per policy and expiry date: the customer just lost a channel
    (refused it, or their address bounced) and none is left (notifications.selectors.
    unreachable_customers), while the policy is active and has not expired yet."""
    if not outbox.subscribers(EventType.POLICY_UNREACHABLE):
        return
    today = timezone.localdate()
    policies = Policy.objects.filter(
        customer__in=unreachable_customers().filter(pk__in=customer_ids),
        status=Policy.Status.ACTIVE,
        expiry_date__gte=today,
    )
    _record_per_policy(EventType.POLICY_UNREACHABLE, policies)


def _record_per_policy(event_type: str, policies) -> None:
    """One `event_type` event per policy and the expiry date it is about, never twice."""
    now = timezone.now().isoformat()
    outbox.record(
        event_type,
        [
            Change(
                customer_id=customer_id,
                data={
                    "policy_id": pk,
                    "policy_number": number,
                    "customer_id": customer_id,
                    "expiry_date": expiry_date.isoformat(),
                    "occurred_at": now,
                },
                once_key=f"{pk}:{expiry_date.isoformat()}",
            )
            for pk, number, customer_id, expiry_date in policies.order_by("pk").values_list(
                "pk", "policy_number", "customer_id", "expiry_date"
            )
        ],
    )


def _plain(data: dict) -> dict:
    """Dates and times as ISO 8601 text: the payload is plain JSON."""
    return {
        name: value.isoformat() if hasattr(value, "isoformat") else value
        for name, value in data.items()
    }
