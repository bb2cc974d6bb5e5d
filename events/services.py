"""What people do with events: resend a delivery, re-enable a subscription, purge old events."""

from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from events import lifecycle, outbox
from events.models import Delivery, Event, Subscription

Status = Delivery.Status
# Events deleted per statement: each delete is short, whatever the backlog.
PURGE_BATCH = 5000


def resend(delivery_ids: list[int]) -> int:
    """Send these deliveries again (delivered or failed ones), with the same webhook-id and a
    fresh retry budget, once this is committed. Returns how many will go."""
    with transaction.atomic():
        ids = list(
            Delivery.objects.filter(
                pk__in=delivery_ids, status__in=[Status.DELIVERED, Status.FAILED]
            )
            .select_for_update()
            .values_list("pk", flat=True)
        )
        lifecycle.move(ids, Status.PENDING, next_attempt_at=timezone.now(), failing_since=None)
        outbox.deliver_after_commit(ids)
    return len(ids)


def reenable(subscription: Subscription) -> int:
    """Switch a subscription back on, its failures forgotten; what waits for it (pending
    deliveries) is sent at once, each with a fresh retry budget. Returns how many wait."""
    with transaction.atomic():
        Subscription.objects.filter(pk=subscription.pk).update(
            active=True,
            disabled_reason="",
            disabled_at=None,
            consecutive_failures=0,
            failing_since=None,
            updated_at=timezone.now(),
        )
        waiting = subscription.deliveries.filter(status=Status.PENDING)
        ids = list(waiting.values_list("pk", flat=True))
        waiting.update(next_attempt_at=timezone.now(), failing_since=None)
        outbox.deliver_after_commit(ids)
    subscription.refresh_from_db()
    return len(ids)


def purge_delivered(*, before: datetime) -> int:
    """Delete the events written before `before` that every subscription got (each delivery
    delivered), with their deliveries and attempts: for housekeeping (EVENTS_RETENTION_DAYS).
    Events still pending or failed somewhere are kept. Returns how many were deleted."""
    undelivered = Delivery.objects.filter(
        event=OuterRef("pk"),
        subscription__in=Subscription.objects.all(),  # not a deleted one's
    ).exclude(status=Status.DELIVERED)
    old = Event.objects.filter(created_at__lt=before).exclude(Exists(undelivered))
    deleted = 0
    while ids := list(old.order_by("pk").values_list("pk", flat=True)[:PURGE_BATCH]):
        Event.objects.filter(pk__in=ids).delete()
        deleted += len(ids)
    return deleted
