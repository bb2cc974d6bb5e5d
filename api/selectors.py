"""What the API reads, as plain values: a policy with its customer's consent and its reminders'
timeline, and pages of policies and notifications walked by keyset (no OFFSET: a page deep in
a million rows costs what the first one does)."""

import base64
import binascii
import json
from datetime import date, datetime

from django.db import connection
from django.db.models import Prefetch, Q, QuerySet

from api.problems import Problem
from notifications.models import DeliveryEvent, Notification
from policies.models import Agent, Customer, Policy


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
        "whatsapp": customer.whatsapp_consent,
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


def policy_out(policy_number: str, policies: QuerySet[Policy]) -> dict | None:
    """The policy (of `policies`, the caller's reach), its customer, and its reminders with
    their delivery events: three queries; None when it is not there."""
    events = DeliveryEvent.objects.order_by("occurred_at", "pk")
    reminders = Notification.objects.order_by("due_on", "pk").prefetch_related(
        Prefetch("events", queryset=events)
    )
    try:
        # get(), not first(): the number is unique, and ordering a row with its customer and
        # agent (Policy's Meta.ordering) cost Django's compiler a third of a PUT's time.
        policy = (
            policies.select_related("customer", "agent")
            .prefetch_related(Prefetch("notifications", queryset=reminders))
            .get(policy_number=policy_number)
        )
    except Policy.DoesNotExist:
        return None
    return {
        **policy_summary_out(policy),
        "customer": customer_out(policy.customer),
        "reminders": [
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
        ],
    }


# The customer's fields an answer shows, read beside its policy by upserted_policy_out.
_CUSTOMER_FIELDS = [
    Customer._meta.get_field(name)
    for name in (
        "name",
        "email",
        "phone",
        "language",
        "timezone",
        "email_consent",
        "sms_consent",
        "whatsapp_consent",
        "email_undeliverable",
    )
]


def upserted_policy_out(policy_number: str) -> dict:
    """What a PUT answers: the policy it just wrote, with its customer, as policy_out shows them
    without reminders. One raw query: the ORM's compiler spends more on policy_out's join than
    PostgreSQL spends running it, a tenth of a single PUT's time."""
    policy_table, customer_table, agent_table = (
        connection.ops.quote_name(model._meta.db_table) for model in (Policy, Customer, Agent)
    )
    customer_columns = ", ".join(
        f"c.{connection.ops.quote_name(field.column)} AS customer_{field.attname}"
        for field in _CUSTOMER_FIELDS
    )
    # raw() converts the policy's own columns; the joined ones are text or booleans.
    policy = Policy.objects.raw(
        f"SELECT p.*, a.email AS agent_email, {customer_columns} FROM {policy_table} p "
        f"JOIN {customer_table} c ON c.id = p.customer_id "
        f"JOIN {agent_table} a ON a.id = p.agent_id WHERE p.policy_number = %s",
        [policy_number],
    )[0]
    policy.agent = Agent(pk=policy.agent_id, email=policy.agent_email)
    policy.customer = Customer(
        pk=policy.customer_id,
        **{
            field.attname: field.to_python(getattr(policy, f"customer_{field.attname}"))
            for field in _CUSTOMER_FIELDS
        },
    )
    return {**policy_summary_out(policy), "customer": customer_out(policy.customer)}


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
