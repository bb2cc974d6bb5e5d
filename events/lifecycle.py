"""The life of a delivery, in one table, as notifications.lifecycle is a notification's. Every
status change goes through `move`, a conditional UPDATE: two workers cannot both claim a
delivery, and a worker whose claim lapsed (and went to another) records nothing."""

import uuid
from collections.abc import Iterable
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from events.models import Delivery, DeliveryStatus

Status = DeliveryStatus

ALLOWED_MOVES: dict[str, set[str]] = {
    Status.PENDING: {Status.DELIVERING},
    # DELIVERING -> DELIVERING: claimed again once its claim lapsed (its worker died).
    # DELIVERING -> PENDING: a failed attempt waits out its backoff, or the claim ran too short
    # for the POST to start.
    Status.DELIVERING: {Status.DELIVERING, Status.DELIVERED, Status.PENDING, Status.FAILED},
    # Sent again by hand (the admin's Resend), with the same webhook-id.
    Status.DELIVERED: {Status.PENDING},
    Status.FAILED: {Status.PENDING},
}


def sources_of(target: str) -> set[str]:
    return {source for source, targets in ALLOWED_MOVES.items() if target in targets}


def move(
    deliveries: QuerySet | Iterable[int], to: str, *, held_by: uuid.UUID | None = None, **fields
) -> int:
    """Move the deliveries (a queryset, or ids) to `to` where their status allows it (and, with
    `held_by`, only those still claimed under that claim), setting `fields` too. Returns how
    many moved."""
    if not isinstance(deliveries, QuerySet):
        ids = list(deliveries)
        if not ids:  # most of a batch's outcomes are empty: no query to build
            return 0
        deliveries = Delivery.objects.filter(pk__in=ids)
    movable = deliveries.filter(status__in=sources_of(to))
    if held_by is not None:
        movable = movable.filter(claim=held_by)
    if to != Status.DELIVERING:
        fields = {"claim": None, "claimed_until": None, **fields}
    return movable.update(status=to, status_changed_at=timezone.now(), **fields)


def due() -> QuerySet:
    """What a worker may claim now: pending deliveries whose time has come, and those claimed
    by a worker that died (the claim lapsed), of active subscriptions."""
    return Delivery.objects.filter(
        Q(status=Status.PENDING, next_attempt_at__lte=Now())
        | Q(status=Status.DELIVERING, claimed_until__lt=Now()),
        subscription__active=True,
    )


def claim(*, limit: int, seconds: int, among: Iterable[int] | None = None) -> uuid.UUID:
    """Claim up to `limit` due deliveries (of `among`, when given) for `seconds`, oldest first,
    and return the claim: `Delivery.objects.filter(claim=...)` are this caller's. Concurrent
    callers never claim the same delivery: rows another holds are skipped (PostgreSQL), and
    the UPDATE checks them due again (SQLite, which runs one writer at a time)."""
    token = uuid.uuid4()
    candidates = due() if among is None else due().filter(pk__in=list(among))
    with transaction.atomic():
        ids = list(
            candidates.order_by("id")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:limit]
        )
        move(
            due().filter(pk__in=ids),
            Status.DELIVERING,
            claim=token,
            claimed_until=Now() + timedelta(seconds=seconds),
            attempts=F("attempts") + 1,
        )
    return token
