"""Read-only questions about notifications."""

import functools
import operator

from django.db.models import Count, QuerySet

from notifications import reach
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


def unreachable_customers() -> QuerySet[Customer]:
    """Customers no channel can reach: no reminder can go to them any more."""
    return Customer.objects.exclude(
        functools.reduce(operator.or_, map(reach.reachable_filter, Channel.values))
    )
