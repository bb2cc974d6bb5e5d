"""Read-only questions about notifications."""

from django.db.models import Count, F, Q, QuerySet

from notifications.lifecycle import IN_FLIGHT
from notifications.models import Channel, Notification, ReminderRun
from policies.models import Customer

Status = Notification.Status
# The summary's columns, and the statuses each one counts.
SUMMARY_COLUMNS = {
    "planned": set(Status.values) - {Status.SKIPPED},
    "sent": {Status.SENT, Status.DELIVERED},
    "skipped": {Status.SKIPPED},
    "deferred": {Status.DEFERRED},
    "cancelled": {Status.CANCELLED},
    "failed": {Status.FAILED, Status.BOUNCED},
    "in flight": set(IN_FLIGHT),
}


def in_flight_count(run: ReminderRun) -> int:
    return run.notifications.filter(status__in=IN_FLIGHT).count()


def run_summary(run: ReminderRun) -> dict[str, dict[str, int]]:
    """For each channel, how many of the run's notifications fall in each summary column."""
    counts = {
        (channel, status): number
        for channel, status, number in run.notifications.values_list("channel", "status")
        .annotate(Count("id"))
        .order_by()
    }
    return {
        channel: {
            column: sum(counts.get((channel, status), 0) for status in statuses)
            for column, statuses in SUMMARY_COLUMNS.items()
        }
        for channel in Channel.values
    }


def reachable_on(channel: str, *, via: str = "") -> Q:
    """Who a reminder can reach on `channel`, as a filter on customers (or on rows that reach
    their customer by `via`, e.g. "customer__"): the rule planning's Candidate.reachable_by and
    dispatch's why_not_send apply row by row (notifications.reach)."""
    rules = {
        Channel.EMAIL: Q(email_consent=True, email_undeliverable=False) & ~Q(email=""),
        Channel.SMS: Q(sms_consent=True) & ~Q(phone="") & ~Q(phone=F("wrong_phone")),
        Channel.WHATSAPP: Q(whatsapp_consent=True) & ~Q(phone="") & ~Q(phone=F("wrong_phone")),
    }
    return _prefixed(rules[channel], via) if via else rules[channel]


def reachable_on_none(*, via: str = "") -> Q:
    """Customers no channel can reach."""
    return ~(
        reachable_on(Channel.EMAIL, via=via)
        | reachable_on(Channel.SMS, via=via)
        | reachable_on(Channel.WHATSAPP, via=via)
    )


def _prefixed(q: Q, via: str) -> Q:
    """`q` with each lookup and each F() it compares with reached through `via`."""
    prefixed = Q(_connector=q.connector, _negated=q.negated)
    for child in q.children:
        if isinstance(child, Q):
            prefixed.children.append(_prefixed(child, via))
        else:
            lookup, value = child
            if isinstance(value, F):
                value = F(via + value.name)
            prefixed.children.append((via + lookup, value))
    return prefixed


REACHABLE_BY = {channel: reachable_on(channel) for channel in Channel.values}


def unreachable_customers() -> QuerySet[Customer]:
    """Customers no channel can reach: no reminder can go to them any more."""
    return Customer.objects.filter(reachable_on_none())
