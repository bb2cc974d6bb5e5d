"""The life of a notification, in one table. Every status change goes through `move`, a
conditional UPDATE: it changes only rows whose current status allows the move, so two workers
racing for one notification cannot both win, and no status ever moves backwards."""

from collections.abc import Iterable

from django.utils import timezone

from notifications.models import Notification, NotificationStatus

Status = NotificationStatus

ALLOWED_MOVES: dict[str, set[str]] = {
    Status.PLANNED: {Status.QUEUED, Status.CANCELLED},
    # QUEUED -> QUEUED re-enqueues a task the broker lost; QUEUED -> FAILED gives up retrying.
    Status.QUEUED: {Status.QUEUED, Status.SENDING, Status.FAILED, Status.CANCELLED},
    # SENDING -> QUEUED: a transient provider error to retry, or a worker that died mid-send.
    # SENDING -> DELIVERED/BOUNCED: the provider's callback overtook the worker's own record.
    # SENDING -> DEFERRED: quiet hours at the customer's; the fan-out releases it after them.
    Status.SENDING: {
        Status.QUEUED,
        Status.DEFERRED,
        Status.SENT,
        Status.DELIVERED,
        Status.FAILED,
        Status.BOUNCED,
        Status.CANCELLED,
    },
    Status.DEFERRED: {Status.QUEUED, Status.CANCELLED},
    Status.SENT: {Status.DELIVERED, Status.FAILED, Status.BOUNCED},
    Status.DELIVERED: {Status.BOUNCED},
    # A failed notification can be retried by hand.
    Status.FAILED: {Status.QUEUED},
    Status.BOUNCED: set(),
    Status.CANCELLED: set(),
    Status.SKIPPED: set(),
}
# On its way now: the daily scan re-enqueues these when they stall.
IN_FLIGHT = frozenset({Status.PLANNED, Status.QUEUED, Status.SENDING})
# Not sent yet, and still to be: what a renewal or cancellation of the policy cancels.
WAITING = frozenset({Status.PLANNED, Status.QUEUED, Status.DEFERRED})
FINAL = frozenset(status for status, moves in ALLOWED_MOVES.items() if not moves)


def sources_of(target: str) -> set[str]:
    """The statuses a notification may move to `target` from."""
    return {source for source, targets in ALLOWED_MOVES.items() if target in targets}


def move(notification_ids: int | Iterable[int], to: str, **fields) -> int:
    """Move the given notifications to status `to` where their status allows it, setting
    `fields` too. Returns how many moved: 0 means another process got there first."""
    ids = [notification_ids] if isinstance(notification_ids, int) else list(notification_ids)
    if not ids:
        return 0
    return Notification.objects.filter(pk__in=ids, status__in=sources_of(to)).update(
        status=to, status_changed_at=timezone.now(), **fields
    )
