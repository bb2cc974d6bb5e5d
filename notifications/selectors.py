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


# Who a reminder can reach on each channel, as a filter on customers: the rule planning's
# Candidate.reachable_by and dispatch's why_not_send apply row by row (notifications.reach).
REACHABLE_BY = {
    Channel.EMAIL: Q(email_consent=True, email_undeliverable=False) & ~Q(email=""),
    Channel.SMS: Q(sms_consent=True) & ~Q(phone="") & ~Q(phone=F("wrong_phone")),
    Channel.WHATSAPP: Q(whatsapp_consent=True) & ~Q(phone="") & ~Q(phone=F("wrong_phone")),
}


def unreachable_customers() -> QuerySet[Customer]:
    """Customers no channel can reach: no reminder can go to them any more."""
    return Customer.objects.exclude(
        REACHABLE_BY[Channel.EMAIL] | REACHABLE_BY[Channel.SMS] | REACHABLE_BY[Channel.WHATSAPP]
    )
