"""Services that people start by hand: retrying one notification (the agents' workspace), or
every one an outage made fail (the admin), and a renewal with what it means for the
reminders."""

from collections import Counter
from dataclasses import dataclass
from datetime import date, datetime

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from notifications import dispatch, lifecycle, outcomes, planning, retries
from notifications.models import Channel, Notification, PolicyOutcome
from notifications.tasks import send_batch
from policies.models import Policy
from policies.services import mark_cancelled, mark_lapsed, mark_renewed

Status = Notification.Status
Source = PolicyOutcome.Source


class RetryError(Exception):
    """The notification cannot be retried; the message says why, for the agent."""


# Notifications an outage retry checks, moves and publishes at a time.
RETRY_CHUNK = 1000
NO_LONGER_FAILED = "Only a failed notice can be retried; this one is no longer failed."


# A message on each channel, in a sentence.
MESSAGE = {Channel.EMAIL: "email", Channel.SMS: "SMS", Channel.WHATSAPP: "WhatsApp message"}
A_MESSAGE = {
    Channel.EMAIL: "An email",
    Channel.SMS: "An SMS",
    Channel.WHATSAPP: "A WhatsApp message",
}


def retry_failed(*, notification: Notification) -> None:
    """Put a failed notification back in the queue and send it again once that is committed,
    unless sending it no longer makes sense. The move is from failed only (queued -> queued is
    the scan's re-enqueue, not a retry), so two clicks at once send it once."""
    notification = Notification.objects.select_related("policy", "customer").get(pk=notification.pk)
    if refusal := why_not_retry([notification]).get(notification.pk):
        raise RetryError(refusal)
    if not _requeue([notification.pk]):
        raise RetryError(NO_LONGER_FAILED)


@dataclass(frozen=True)
class OutageRetry:
    """What retrying an outage's failures did: how many went back in the queue, and how many
    were refused, by reason."""

    requeued: int
    refused: Counter[str]


def outage_failures(*, start: datetime, end: datetime, channel: str = "") -> QuerySet[Notification]:
    """The notifications that gave up on transient provider errors they met between `start`
    and `end` (their errors began before the end, and they gave up after the start), on one
    channel or all."""
    failures = Notification.objects.filter(
        status=Status.FAILED,
        failed_transiently=True,
        status_changed_at__gte=start,
        failing_since__lte=end,
    )
    return failures.filter(channel=channel) if channel else failures


def retry_outage(*, start: datetime, end: datetime, channel: str = "") -> OutageRetry:
    """Retry, in one go, every notification that gave up on provider errors during an outage
    (`outage_failures`), with the agent's Retry's checks for each one."""
    ids = list(
        outage_failures(start=start, end=end, channel=channel)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    refused: Counter[str] = Counter()
    requeued = 0
    for first in range(0, len(ids), RETRY_CHUNK):
        chunk = list(
            Notification.objects.select_related("policy", "customer").filter(
                pk__in=ids[first : first + RETRY_CHUNK]
            )
        )
        refusals = why_not_retry(chunk)
        refused.update(refusals.values())
        allowed = [n.pk for n in chunk if n.pk not in refusals]
        moved = _requeue(allowed)
        requeued += moved
        if moved < len(allowed):  # someone else retried them meanwhile
            refused[NO_LONGER_FAILED] += len(allowed) - moved
    return OutageRetry(requeued=requeued, refused=refused)


def why_not_retry(notifications: list[Notification]) -> dict[int, str]:
    """Why each of these failed notifications must not be sent again, by id, in words for the
    agent (those absent may be): no longer failed, an email went in its place, or it can no
    longer be sent (notifications.dispatch.why_not_send) or is no longer useful
    (notifications.retries)."""
    useless = retries.no_longer_useful(notifications, today=timezone.localdate())
    # The channel each failed reminder's stand-in went by (an email for an SMS; an SMS or an
    # email for a WhatsApp message).
    replaced = dict(
        Notification.objects.filter(fallback_for__in=notifications).values_list(
            "fallback_for", "channel"
        )
    )
    refusals = {}
    for notification in notifications:
        if notification.status != Status.FAILED:
            refusals[notification.pk] = NO_LONGER_FAILED
        elif notification.pk in replaced:
            refusals[notification.pk] = (
                f"{A_MESSAGE[replaced[notification.pk]]} was sent in place of this "
                f"{MESSAGE[notification.channel]}; a retry would remind the customer twice."
            )
        elif reason := dispatch.why_not_send(notification) or useless.get(notification.pk):
            refusals[notification.pk] = f"This notice cannot be sent any more: {reason}."
    return refusals


def _requeue(notification_ids: list[int]) -> int:
    """Move failed notifications back to queued, each with a fresh retry budget as before its
    first try, and send them once that is committed. Returns how many moved."""
    if not notification_ids:
        return 0
    with transaction.atomic():
        # Locked: what this transaction moves is exactly what it sends.
        ids = list(
            Notification.objects.filter(pk__in=notification_ids, status=Status.FAILED)
            .select_for_update()
            .values_list("pk", flat=True)
        )
        lifecycle.move(
            ids,
            Status.QUEUED,
            only_from={Status.FAILED},
            queued_at=timezone.now(),
            attempts=0,
            failing_since=None,
            failed_transiently=False,
        )
        # The same task the fan-out sends; after commit, so the worker sees "queued".
        size = settings.REMINDER_SEND_BATCH_SIZE
        for start in range(0, len(ids), size):
            batch = ids[start : start + size]
            transaction.on_commit(lambda batch=batch: send_batch.delay(batch))
    return len(ids)


@transaction.atomic
def renew_policy(*, policy: Policy, new_expiry_date: date, source: str = Source.AGENT) -> int:
    """The customer renewed (policies.services.mark_renewed, which raises RenewalError for a
    renewal the policy cannot take), and the reminders about the old expiry that were not sent
    yet are cancelled by planning's own rule; the next daily scan plans the new term's. Returns
    how many reminders were cancelled."""
    return len(
        change_policy(policy=policy, to="renewed", new_expiry_date=new_expiry_date, source=source)
    )


@transaction.atomic
def change_policy(
    *, policy: Policy, to: str, new_expiry_date: date | None = None, source: str = Source.AGENT
) -> list[Notification]:
    """Renew ("renewed"), cancel ("cancelled") or lapse ("lapsed") the policy
    (policies.services, which raises PolicyChangeError for a change it cannot take) and cancel,
    in the same transaction, the reminders it makes outdated (planning's own rule). A renewal
    or a lapse records the term's outcome (notifications.outcomes), told by `source`. Returns
    the reminders cancelled."""
    # Locked first: the expiry the term ran to is the one the change replaces.
    old_expiry = (
        Policy.objects.select_for_update().values_list("expiry_date", flat=True).get(pk=policy.pk)
    )
    if to == "renewed":
        changed = mark_renewed(policy=policy, new_expiry_date=new_expiry_date)
        term = outcomes.Term(changed.pk, old_expiry, changed.expiry_date)
        outcomes.record([term], kind=outcomes.Kind.RENEWED, source=source)
    elif to == "cancelled":
        changed = mark_cancelled(policy=policy)
    else:
        changed = mark_lapsed(policy=policy)
    cancelled = planning.cancelled_outdated(policy_id=changed.pk)
    if to == "lapsed":
        outcomes.lapsed([outcomes.Term(changed.pk, old_expiry)], source=source)
    return list(Notification.objects.filter(pk__in=cancelled).order_by("due_on", "pk"))
