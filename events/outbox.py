"""The outbox: events written in the transaction of the change they announce, one delivery per
subscription that wants them, handed to a worker once that transaction commits. A change that
rolls back takes its events with it; a committed one has them, and the sweep (every minute)
delivers what a lost task did not."""

import threading
import time
from dataclasses import dataclass
from functools import partial

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from events.models import Delivery, Event, Subscription
from events.tasks import deliver_events


@dataclass(frozen=True)
class Change:
    """What one event says: about which customer, its `data` (plain values only), and for an
    event that must happen once (policy.unreachable), its key."""

    customer_id: int | None
    data: dict
    once_key: str = ""


def record(event_type: str, changes: list[Change]) -> list[Event]:
    """Write an event for each change, for the active subscriptions that want `event_type`, in
    the caller's transaction; nothing (not a query) when none wants it. An event whose once_key
    was recorded before is left out. Returns the events written."""
    subscription_ids = subscribers(event_type)
    if not subscription_ids or not changes:
        return []
    now = timezone.now()
    events = Event.objects.bulk_create(
        Event(type=event_type, customer_id=change.customer_id, data=change.data, created_at=now)
        for change in changes
        if not change.once_key
    )
    events += [
        event
        for change in changes
        if change.once_key and (event := _record_once(event_type, change, now)) is not None
    ]
    deliveries = Delivery.objects.bulk_create(
        Delivery(event=event, subscription_id=pk, next_attempt_at=now, status_changed_at=now)
        for event in events
        for pk in subscription_ids
    )
    deliver_after_commit([delivery.pk for delivery in deliveries])
    return events


def deliver_after_commit(delivery_ids: list[int]) -> None:
    """Hand the deliveries to workers, in batches, once the caller's transaction commits."""
    size = settings.EVENTS_BATCH_SIZE
    for start in range(0, len(delivery_ids), size):
        # robust: a broker out of reach must not undo a committed change; the sweep delivers.
        batch = delivery_ids[start : start + size]
        transaction.on_commit(partial(deliver_events.delay, batch), robust=True)


def _record_once(event_type: str, change: Change, now) -> Event | None:
    try:
        with transaction.atomic():  # a savepoint: the caller's change goes on without it
            return Event.objects.create(
                type=event_type,
                customer_id=change.customer_id,
                data=change.data,
                once_key=change.once_key,
                created_at=now,
            )
    except IntegrityError:
        return None


# {event type: ids of the active subscriptions that want it}, and when it was read
# (time.monotonic()): replaced whole, read by every change without a lock.
_subscribers: tuple[dict[str, list[int]], float] = ({}, float("-inf"))
_reading = threading.Lock()


def subscribers(event_type: str) -> list[int]:
    """The active subscriptions that want `event_type`, as this process last read them: again
    EVENTS_SUBSCRIPTIONS_REFRESH_SECONDS later, and at once after a subscription is saved or
    deleted in this process. So a new subscription gets the changes of other processes (the
    workers) from at most that long after it was saved."""
    global _subscribers
    wanted, read_at = _subscribers
    if time.monotonic() - read_at > settings.EVENTS_SUBSCRIPTIONS_REFRESH_SECONDS:
        with _reading:
            began = time.monotonic()
            wanted = {}
            for pk, types in Subscription.objects.filter(active=True).values_list(
                "pk", "event_types"
            ):
                for name in types:
                    wanted.setdefault(name, []).append(pk)
            _subscribers = (wanted, began)
    return wanted.get(event_type, [])


def forget_subscribers(**_signal_arguments) -> None:
    """Read the subscriptions again at the next change (a subscription was saved here)."""
    global _subscribers
    _subscribers = ({}, float("-inf"))
