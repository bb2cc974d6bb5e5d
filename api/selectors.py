"""What the API reads, as plain values: a policy with its customer's consent and its reminders'
timeline, and pages of policies and notifications walked by keyset (no OFFSET: a page deep in
a million rows costs what the first one does)."""

import base64
import binascii
import json
from datetime import date, datetime

from django.db.models import Prefetch, Q, QuerySet

from api.problems import Problem
from notifications.models import DeliveryEvent, Notification
from policies.models import Customer, Policy


def customer_out(customer: Customer) -> dict:
    return {
        "id": customer.pk,
        "name": customer.name,
        "email": customer.email,
        "phone": customer.phone,
        "language": customer.language,
        "timezone": str(customer.timezone),
        "consent": consent_out(customer),
    }


def consent_out(customer: Customer) -> dict:
    return {
        "email": customer.email_consent,
        "sms": customer.sms_consent,
        "email_undeliverable": customer.email_undeliverable,
    }


def policy_summary_out(policy: Policy) -> dict:
    return {
        "policy_number": policy.policy_number,
        "product_line": policy.product_line,
        "status": policy.status,
        "start_date": policy.start_date,
        "expiry_date": policy.expiry_date,
        "agent_email": policy.agent.email,
        "customer_id": policy.customer_id,
        "created_at": policy.created_at,
        "updated_at": policy.updated_at,
    }


def notification_out(notification: Notification, policy_number: str) -> dict:
    return {
        "id": notification.pk,
        "policy_number": policy_number,
        "customer_id": notification.customer_id,
        "channel": notification.channel,
        "lead_days": notification.lead_days,
        "due_on": notification.due_on,
        "expiry_date": notification.expiry_date,
        "status": notification.status,
        "status_changed_at": notification.status_changed_at,
        "attempts": notification.attempts,
        "sent_at": notification.sent_at,
        "delivered_at": notification.delivered_at,
        "provider_message_id": notification.provider_message_id,
        "last_error": notification.last_error,
    }


def policy_out(
    policy_number: str, policies: QuerySet[Policy], *, with_reminders: bool = True
) -> dict | None:
    """The policy (of `policies`, the caller's reach) and its customer, and (`with_reminders`)
    its reminders with their delivery events: one query, or three; None when it is not there."""
    if with_reminders:
        events = DeliveryEvent.objects.order_by("occurred_at", "pk")
        reminders = Notification.objects.order_by("due_on", "pk").prefetch_related(
            Prefetch("events", queryset=events)
        )
        policies = policies.prefetch_related(Prefetch("notifications", queryset=reminders))
    try:
        # get(), not first(): the number is unique, and ordering a row with its customer and
        # agent (Policy's Meta.ordering) cost Django's compiler a third of a PUT's time.
        policy = policies.select_related("customer", "agent").get(policy_number=policy_number)
    except Policy.DoesNotExist:
        return None
    found = {**policy_summary_out(policy), "customer": customer_out(policy.customer)}
    if with_reminders:
        found["reminders"] = [
            {
                **notification_out(reminder, policy.policy_number),
                "events": [
                    {
                        "type": event.event_type,
                        "provider": event.provider,
                        "occurred_at": event.occurred_at,
                        "error_code": event.error_code,
                        "reason": event.reason,
                    }
                    for event in reminder.events.all()
                ],
            }
            for reminder in policy.notifications.all()
        ]
    return found


class Keyset:
    """Pages ordered by (field, id), each starting after the last row of the one before; the
    cursor is that row's (field, id), opaque to the caller."""

    def __init__(self, field: str, parse):
        self.field = field
        self.parse = parse  # the field's value from its ISO text

    def page(self, rows: QuerySet, cursor: str | None, limit: int) -> tuple[list, str | None]:
        if cursor:
            value, last_id = self._decode(cursor)
            rows = rows.filter(
                Q(**{f"{self.field}__gt": value}) | Q(**{self.field: value}, pk__gt=last_id)
            )
        found = list(rows.order_by(self.field, "pk")[: limit + 1])
        if len(found) <= limit:
            return found, None
        last = found[limit - 1]
        return found[:limit], self._encode(getattr(last, self.field), last.pk)

    def _encode(self, value: date | datetime, last_id: int) -> str:
        raw = json.dumps([value.isoformat(), last_id]).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def _decode(self, cursor: str) -> tuple:
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            value, last_id = json.loads(raw)
            if not isinstance(last_id, int):
                raise ValueError
            return self.parse(value), last_id
        except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
            raise Problem(
                400,
                "The cursor is not one this API gave; pass next_cursor as it came.",
                errors=[{"pointer": "", "detail": "invalid cursor query parameter"}],
            ) from None


POLICY_PAGES = Keyset("updated_at", datetime.fromisoformat)
NOTIFICATION_PAGES = Keyset("due_on", date.fromisoformat)
