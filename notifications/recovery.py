"""Recovery: a notification left sending with no live worker (its worker died, or its send got
no answer) is reconciled with the provider before anything else happens to it. The provider
has it: it is recorded as sent, and never sent again. It does not: it is sent again. It cannot
say (down, 5xx): it is asked again later, with growing waits, and never sent blindly.

A provider with no lookup (SMTP, an ESP without a message search) cannot be asked: there the
channel is at-least-once, and recovery waits REMINDER_RESEND_UNCONFIRMED_AFTER_MINUTES after the
attempt began (time for the provider's callback, which names the notification, to report it)
before sending again.

A digest (several reminders in one message) is reconciled as the one message it is: its
reminders are taken over together, the provider is asked once about the message as recorded
before it went (notifications.digests), and the answer settles each of them alike."""

import logging
import random
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.db.models.functions import Now
from django.utils import timezone

from notifications import dispatch, leases, lifecycle, retries
from notifications.channels import (
    FoundMessage,
    OutgoingMessage,
    TransientSendError,
    sending_through,
)
from notifications.models import DeliveryEvent, Digest, Notification
from notifications.rendering import render
from notifications.signals import reconciled, tell

logger = logging.getLogger(__name__)
Status = Notification.Status
# How long recovery waits before asking a provider that could not answer again: half the
# time since the attempt began, within these bounds.
SHORTEST_WAIT = timedelta(seconds=30)
LONGEST_WAIT = timedelta(hours=1)

FOUND = "found"  # the provider has it: recorded as sent
NOT_FOUND = "not_found"  # sent again
UNAVAILABLE = "unavailable"  # the provider could not answer: asked again later
WAITING = "waiting"  # no lookup: waits for a callback, then sent again
RESENT_UNVERIFIED = "resent_unverified"  # no lookup, waited long enough: sent again
GAVE_UP = "gave_up"  # the provider could not say for REMINDER_RECONCILE_FOR_HOURS: failed
# How far apart the provider's clock and ours may be, when matching a message to an attempt.
CLOCK_SKEW = timedelta(minutes=5)


def without_worker() -> QuerySet:
    """Sending notifications no live worker holds: to be reconciled with their provider."""
    return Notification.objects.filter(
        Q(lease__isnull=True) | Q(lease__expires_at__lt=Now()), status=Status.SENDING
    )


def abandoned() -> QuerySet:
    """Those without a worker whose time to be reconciled has come. One with neither a lease
    nor a time set was claimed before leases existed (an older worker, during an upgrade):
    it is taken for abandoned once it has been sending as long as such a worker's stall rule
    said, REMINDER_REQUEUE_AFTER_MINUTES."""
    legacy_stalled = timezone.now() - timedelta(minutes=settings.REMINDER_REQUEUE_AFTER_MINUTES)
    return without_worker().filter(
        Q(recover_after__lte=Now())
        | Q(lease__isnull=False, recover_after__isnull=True)
        | Q(recover_after__isnull=True, status_changed_at__lt=legacy_stalled)
    )


def recover_abandoned(*, limit: int | None = None) -> dict[str, int]:
    """Take over up to `limit` abandoned notifications under this process's lease and
    reconcile each with its provider. Returns how many ended each way (FOUND, NOT_FOUND...).
    Two processes recovering at once never take the same notification."""
    lease_id = leases.current().renew()
    try:
        return _recover(lease_id, limit or settings.REMINDER_FANOUT_CHUNK)
    except BaseException:
        leases.current().abandon(lease_id)  # what it took over goes to the next recovery
        raise


def _recover(lease_id: int, limit: int) -> dict[str, int]:
    with transaction.atomic():
        ids = list(
            abandoned()
            .order_by("id")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("id", flat=True)[:limit]
        )
        ids += _rest_of_their_digests(ids)
        Notification.objects.filter(pk__in=ids).update(lease_id=lease_id)
    notifications = list(
        Notification.objects.select_related(*dispatch.SEND_RELATED, "digest")
        .filter(pk__in=ids, lease_id=lease_id)
        .order_by("pk")
    )
    dispatch.attach_rules(notifications)
    outcomes = Counter()
    for notification, provider, answer in _ask_providers(notifications):
        outcome = _settle(notification, answer, lease_id)
        outcomes[outcome] += 1
        tell(
            reconciled,
            Notification,
            channel=notification.channel,
            provider=provider,
            outcome=outcome,
        )
    if outcomes:
        logger.info("recovered %s abandoned sends: %s", len(notifications), dict(outcomes))
    return dict(outcomes)


def _rest_of_their_digests(ids: list[int]) -> list[int]:
    """The other abandoned reminders of the digests among `ids` (past the limit), locked with
    them: a digest's message is asked about once, for all it carried."""
    digests = Notification.objects.filter(pk__in=ids, digest__isnull=False).values("digest_id")
    return list(
        abandoned()
        .filter(digest_id__in=digests)
        .exclude(pk__in=ids)
        .select_for_update(skip_locked=True, of=("self",))
        .values_list("id", flat=True)
    )


def _by_message(notifications: list[Notification]) -> list[list[Notification]]:
    """The notifications by the message they went in: a digest's together, the others alone."""
    messages: dict[tuple, list[Notification]] = {}
    for notification in notifications:
        key = (
            ("digest", notification.digest_id)
            if notification.digest_id
            else ("alone", notification.pk)
        )
        messages.setdefault(key, []).append(notification)
    return list(messages.values())


def _ask_providers(notifications: list[Notification]) -> Iterator[tuple]:
    """(notification, provider, answer) for each: the provider's FoundMessage, None (it has
    no such message), the TransientSendError it could not answer with, or WAITING /
    RESENT_UNVERIFIED for a provider with no lookup. Lookups run on the send threads."""
    pool = dispatch.send_threads()
    with ExitStack() as stack:
        senders = {
            name: stack.enter_context(sending_through(name))
            for name in {notification.channel for notification in notifications}
        }
        futures = []
        for members in _by_message(notifications):
            sender = senders[members[0].channel]
            if sender.can_look_up:
                futures.append((members, sender, pool.submit(_look_up, sender, members)))
            else:
                for notification in members:
                    yield notification, sender.provider, _unverifiable(notification)
        for members, sender, future in futures:
            try:
                answer = future.result()
            except TransientSendError as error:
                answer = error
            except Exception as error:  # a bug: asked again later, never sent blindly
                logger.error("could not reconcile notification %s", members[0].pk, exc_info=True)
                answer = TransientSendError(f"unexpected error: {error!r}")
            for notification in members:
                yield notification, sender.provider, answer


def _look_up(sender, members: list[Notification]) -> FoundMessage | None:
    """The provider's message for this attempt of `members` (one notification, or a digest's):
    accepted since it began (less the clock skew between us and the provider), and not the
    one an earlier attempt recorded (a reminder retried by hand after the provider reported
    it failed)."""
    notification = members[0]
    if digest := notification.digest:  # asked about as it was sent, whoever is in it now
        message = OutgoingMessage(
            notification.pk,
            to=digest.to,
            subject=digest.subject,
            body=digest.body,
            digest_id=digest.pk,
        )
    else:
        try:
            message = render(notification)
        except Exception:  # a template broken since: an email is found by its id all the same
            message = OutgoingMessage(notification.pk, to=notification.customer.email, body="")
    earliest = min(member.status_changed_at for member in members) - CLOCK_SKEW
    earlier = {member.provider_message_id for member in members}
    for found in sender.find_sent(message, since=earliest):
        recent = found.accepted_at is None or found.accepted_at >= earliest
        if recent and found.provider_message_id not in earlier:
            return found
    return None


def _unverifiable(notification: Notification) -> str:
    waited = timezone.now() - notification.status_changed_at
    if waited >= timedelta(minutes=settings.REMINDER_RESEND_UNCONFIRMED_AFTER_MINUTES):
        return RESENT_UNVERIFIED
    return WAITING


def _settle(notification: Notification, answer, lease_id: int) -> str:
    now = timezone.now()
    if isinstance(answer, TransientSendError) and now - notification.status_changed_at > (
        timedelta(hours=settings.REMINDER_RECONCILE_FOR_HOURS)
    ):
        lifecycle.move(
            notification.pk,
            Status.FAILED,
            held_by=lease_id,
            last_error="sent without an answer, and the provider could not say for "
            f"{settings.REMINDER_RECONCILE_FOR_HOURS} h whether it has it ({answer}): check with "
            "the provider before retrying",
        )
        return GAVE_UP
    if isinstance(answer, FoundMessage):
        sent = {
            "sent_at": answer.accepted_at or now,
            "provider_message_id": answer.provider_message_id,
        }
        if not lifecycle.move(notification.pk, Status.SENT, held_by=lease_id, **sent):
            dispatch.keep_provider_ids([notification.pk], sent)
        if notification.digest_id:
            Digest.objects.filter(pk=notification.digest_id).update(
                provider_message_id=answer.provider_message_id
            )
        _tell_timeline(
            notification,
            answer.provider_message_id,
            "already delivered to the provider: recorded as sent, not sent again",
        )
        return FOUND
    if answer is None or answer == RESENT_UNVERIFIED:
        if _resend(notification, lease_id, now) == GAVE_UP:
            return GAVE_UP
        if answer is None:
            _tell_timeline(notification, "", "the provider does not have it: sent again")
            return NOT_FOUND
        _tell_timeline(
            notification,
            "",
            "the provider cannot be asked and reported nothing: sent again "
            "(at-least-once: it may arrive twice)",
        )
        return RESENT_UNVERIFIED
    if answer == WAITING:
        wait_until = notification.status_changed_at + timedelta(
            minutes=settings.REMINDER_RESEND_UNCONFIRMED_AFTER_MINUTES
        )
        _release(
            notification,
            lease_id,
            wait_until,
            "sent without an answer; waiting for the provider's callback before sending again",
        )
        return WAITING
    _release(
        notification,
        lease_id,
        now + _next_wait(now - notification.status_changed_at, notification),
        f"sent without an answer, and the provider cannot say yet whether it has it: {answer}",
    )
    return UNAVAILABLE


def _resend(notification: Notification, lease_id: int, now: datetime) -> str:
    """Put back to be sent again what the provider does not have: at once after a worker's
    death; after the usual backoff when the send got no answer (a provider error, whose retry
    budget then applies: spent, the notification fails)."""
    if not notification.no_answer:
        lifecycle.move(notification.pk, Status.DEFERRED, held_by=lease_id, send_after=now)
        return NOT_FOUND
    if retries.out_of_time(notification, now):
        lifecycle.move(
            notification.pk,
            Status.FAILED,
            held_by=lease_id,
            last_error=retries.gave_up(notification, notification.last_error),
            failed_transiently=True,
        )
        return GAVE_UP
    wait = timedelta(seconds=retries.retry_backoff(notification.attempts))
    lifecycle.move(notification.pk, Status.DEFERRED, held_by=lease_id, send_after=now + wait)
    return NOT_FOUND


def _release(notification: Notification, lease_id: int, until: datetime, why: str) -> None:
    """Leave it sending with no worker, to be reconciled again once `until` has come."""
    Notification.objects.filter(
        pk=notification.pk, status=Status.SENDING, lease_id=lease_id
    ).update(lease=None, recover_after=until, last_error=why)


def _next_wait(elapsed: timedelta, notification: Notification) -> timedelta:
    """Half what it has waited so far, within bounds, jittered by message: a digest's
    reminders wait alike, to be asked about together again, as the one message they are."""
    wait = min(max(elapsed / 2, SHORTEST_WAIT), LONGEST_WAIT)
    message = notification.digest_id or -notification.pk
    return wait * random.Random(message).uniform(0.75, 1.0)


def _tell_timeline(notification: Notification, provider_message_id: str, what: str) -> None:
    """Recovery's finding, on the notification's timeline beside the providers' events."""
    DeliveryEvent.objects.bulk_create(
        [
            DeliveryEvent(
                notification=notification,
                provider="renewly",
                event_type=DeliveryEvent.Type.RECONCILED,
                provider_event_id=f"reconciled-{notification.pk}-{notification.attempts}",
                provider_message_id=provider_message_id,
                occurred_at=timezone.now(),
                reason=f"recovered: {what}",
            )
        ],
        ignore_conflicts=True,
    )
