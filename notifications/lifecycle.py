"""The life of a notification, in one table. Every status change goes through `move`, a
conditional UPDATE: it changes only rows whose current status allows the move, so two workers
racing for one notification cannot both win, and no status ever moves backwards. When someone
listens (events' outbox), the ids that moved are told in the UPDATE's own transaction."""

from collections.abc import Iterable

from django.core.exceptions import EmptyResultSet
from django.db import connections, router, transaction
from django.db.models import QuerySet, functions
from django.db.models.sql import UpdateQuery
from django.utils import timezone

from notifications.models import Notification, NotificationStatus
from notifications.signals import notifications_moved

Status = NotificationStatus

ALLOWED_MOVES: dict[str, set[str]] = {
    Status.PLANNED: {Status.QUEUED, Status.CANCELLED},
    # QUEUED -> QUEUED re-enqueues a task the broker lost.
    Status.QUEUED: {Status.QUEUED, Status.SENDING, Status.CANCELLED},
    # SENDING -> DELIVERED/BOUNCED: the provider's callback overtook the worker's own record.
    # SENDING -> DEFERRED: quiet hours at the customer's, a transient provider error backing
    # off, or a send whose worker died that the provider, asked by recovery, never got; the
    # release task sends it again once its send_after has come.
    Status.SENDING: {
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
# On its way now: planned, queued, or with a worker (or with recovery, its worker gone).
IN_FLIGHT = frozenset({Status.PLANNED, Status.QUEUED, Status.SENDING})
# Not sent yet, and still to be: what a renewal or cancellation of the policy cancels.
WAITING = frozenset({Status.PLANNED, Status.QUEUED, Status.DEFERRED})
FINAL = frozenset(status for status, moves in ALLOWED_MOVES.items() if not moves)


def sources_of(target: str) -> set[str]:
    """The statuses a notification may move to `target` from."""
    return {source for source, targets in ALLOWED_MOVES.items() if target in targets}


def move(
    notification_ids: int | Iterable[int],
    to: str,
    *,
    only_from: Iterable[str] | None = None,
    held_by: int | None = None,
    **fields,
) -> int:
    """Move the given notifications to status `to` where their status allows it (and is one
    of `only_from`, when given; and, with `held_by`, only those sending under that worker
    lease), setting `fields` too. Returns how many moved: 0 means another process got there
    first."""
    ids = [notification_ids] if isinstance(notification_ids, int) else list(notification_ids)
    if not ids:
        return 0
    movable = _movable(ids, to, held_by)
    if only_from is not None:
        movable = movable.filter(current_status__in=list(only_from))
    if not notifications_moved.has_listeners():
        return movable.update(**_with_status(to, fields))
    return len(_move_and_tell(movable, to, fields))


def move_returning_ids(
    notification_ids: Iterable[int], to: str, *, held_by: int | None = None, **fields
) -> list[int]:
    """`move`, in the same single conditional UPDATE, but returning the ids that moved: a
    batch learns which of its notifications it won."""
    ids = list(notification_ids)
    if not ids:
        return []
    return _move_and_tell(_movable(ids, to, held_by), to, fields)


def _move_and_tell(movable: QuerySet, to: str, fields: dict) -> list[int]:
    """The move, and `notifications_moved` for exactly the ids it moved, in one transaction:
    what a listener writes commits with the move or not at all. No savepoint of its own (a
    failed listener fails the caller's transaction whole), so the move stays one query."""
    with transaction.atomic(savepoint=False):
        moved = _update_returning_ids(movable, to, fields)
        if moved:
            notifications_moved.send(Notification, ids=moved, to=to)
    return moved


def _update_returning_ids(movable: QuerySet, to: str, fields: dict) -> list[int]:
    # QuerySet.update() without its row count: Django has no UPDATE ... RETURNING of its own.
    query = movable.query.chain(UpdateQuery)
    query.add_update_values(_with_status(to, fields))
    query.clear_select_clause()
    database = router.db_for_write(Notification)
    try:
        update_sql, params = query.get_compiler(database).as_sql()
    except EmptyResultSet:  # no status may move to `to`
        return []
    primary_key = connections[database].ops.quote_name(Notification._meta.pk.column)
    with connections[database].cursor() as cursor:
        cursor.execute(f"{update_sql} RETURNING {primary_key}", params)
        return [row[0] for row in cursor.fetchall()]


def _with_status(to: str, fields: dict) -> dict:
    """The fields a move sets. Only a sending notification holds a worker's lease."""
    if to != Status.SENDING:
        fields = {"lease": None, "recover_after": None, "no_answer": False, **fields}
    return {"status": to, "status_changed_at": timezone.now(), **fields}


def _movable(ids: list[int], to: str, held_by: int | None) -> QuerySet:
    # The status is compared through Lower() so that PostgreSQL finds these rows by primary
    # key: on the bare column it prefers the in-flight partial index, and walks all of it.
    movable = Notification.objects.alias(current_status=functions.Lower("status")).filter(
        pk__in=ids, current_status__in=sources_of(to)
    )
    return movable if held_by is None else movable.filter(lease_id=held_by)
