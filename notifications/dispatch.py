"""Sending notifications: claim them, check they still stand, render them, hand them to their
channel and record what the provider said. `send_many` is the one way a notification goes out,
safe to run any number of times for the same ids. Nothing waits in the broker: quiet hours and a
transient provider error both put the notification back in the database as deferred, with the
time it may go (`send_after`), for the release task to pick up; so does every reminder of a
channel whose provider is paused by its circuit breaker (notifications.circuit)."""

import logging
import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Value
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone

from notifications import (
    circuit,
    digests,
    fallback,
    leases,
    lifecycle,
    planning,
    reach,
    retries,
    tracking,
)
from notifications.channels import (
    NotTried,
    OutgoingMessage,
    PermanentSendError,
    TransientSendError,
    sending_through,
)
from notifications.models import (
    Channel,
    DeliveryEvent,
    Digest,
    Notification,
    ReminderRule,
    TemplateVariant,
)
from notifications.quiet_hours import next_sms_window
from notifications.rendering import ProductLines
from notifications.updates import each_row
from policies.models import Policy

logger = logging.getLogger(__name__)
Status = Notification.Status
# How long a message that never went to the provider (NotTried) waits before it goes again.
NOT_TRIED_WAIT = timedelta(seconds=30)
# What checking and rendering a notification read, loaded with it.
SEND_RELATED = ("policy__agent__user", "customer")
# Sends that come back within this long of each other are recorded together, one UPDATE for
# them all rather than one per answer; a worker killed meanwhile leaves no more than these for
# recovery to ask the provider about (on channels whose provider can be asked: the others'
# sends are recorded one by one, see _send_concurrently).
RECORD_EVERY_SECONDS = 0.1


@dataclass(frozen=True)
class Outcome:
    """What became of a notification this process claimed."""

    status: Status
    detail: str = ""
    fallback_id: int | None = None  # a reminder planned in its place (its rule's fallback)


@dataclass(frozen=True)
class NotClaimed:
    """Nothing was done: another process claimed the notification first, or it is no longer
    due (sent, cancelled, or not released from waiting yet)."""

    detail: str = "already sent, sending, or no longer due"


def send_many(notification_ids: Iterable[int]) -> dict[int, Outcome | NotClaimed]:
    """Send a batch with a few queries for the whole of it: one conditional UPDATE claims it,
    one query loads it, the messages go out concurrently on the process's send threads over
    connections kept open for the batch, and one UPDATE per kind of outcome records each round
    of sends as it comes back. A
    notification another process claimed is skipped. A transient error defers its notification
    by `retries.retry_backoff`, or fails it once its retry budget is spent; one whose send may
    have reached the provider without an answer is left for recovery to ask the provider about;
    a notification of a paused provider waits, untried, except the one that probes it.

    The batch is claimed under this process's worker lease (notifications.leases): should the
    process die, the lease lapses and recovery reconciles what it left sending."""
    ids = list(notification_ids)
    lease_id = leases.current().renew()
    try:
        return _send_claimed(ids, lease_id)
    except BaseException:
        # A database that went away while recording, a time limit, a bug: what the batch still
        # holds must not wait for this process to die before recovery may have it.
        leases.current().abandon(lease_id)
        raise


def _send_claimed(ids: list[int], lease_id: int) -> dict[int, Outcome | NotClaimed]:
    claimed = lifecycle.move_returning_ids(
        ids, Status.SENDING, attempts=F("attempts") + 1, lease_id=lease_id
    )
    outcomes: dict[int, Outcome | NotClaimed] = dict.fromkeys(ids, NotClaimed())
    notifications = list(
        Notification.objects.select_related(*SEND_RELATED).filter(pk__in=claimed).order_by("pk")
    )
    attach_rules(notifications)
    record = _BatchRecord(lease_id)
    now = timezone.now()
    useless = retries.no_longer_useful(notifications, today=timezone.localdate())
    gate = circuit.Gate.for_batch(notifications)
    ready = []
    for notification in notifications:
        if reason := why_not_send(notification) or useless.get(notification.pk):
            record.cancelled[notification.pk] = reason
            if _stands_in(notification, reason):
                record.replaced.append(notification)
        elif window := _quiet_hours_end(notification, now):
            record.deferred[notification.pk] = window
        elif gate.holds(notification):
            record.paused.append(notification.pk)
        else:
            ready.append(notification)
    outcomes.update(record.save())
    for results in _send_concurrently(ready, lease_id):
        record = _BatchRecord(lease_id)
        for notification, result in results:
            record.add(notification, result)
        # Recorded as the sends come back, not at the batch's end: a worker killed mid-batch
        # leaves only the sends of that moment for recovery to ask the provider about.
        outcomes.update(record.save())
        gate.record(record.answers)
    gate.finish(claimed)
    return outcomes


def send(notification_id: int) -> Outcome | NotClaimed:
    """`send_many` for one notification."""
    return send_many([notification_id])[notification_id]


def summary(outcomes: dict[int, Outcome | NotClaimed]) -> dict[str, int]:
    """How many notifications ended in each status ("not claimed" for those left alone)."""
    return dict(
        Counter(
            outcome.status if isinstance(outcome, Outcome) else "not claimed"
            for outcome in outcomes.values()
        )
    )


def attach_rules(notifications: list[Notification]) -> None:
    """Give a batch its rules and experiment variants with their templates and translations,
    loaded once and shared: a day's reminders come from a handful of rules (per row, Django's
    prefetch would cost more CPU than rendering)."""
    rules = (
        ReminderRule.objects.select_related("template", "fallback_template")
        .prefetch_related(
            "template__translations",
            "fallback_template__translations",
            "template__whatsapp_contents",
            "fallback_template__whatsapp_contents",
        )
        .in_bulk({notification.rule_id for notification in notifications})
    )
    variants = (
        TemplateVariant.objects.select_related("template")
        .prefetch_related("template__translations", "template__whatsapp_contents")
        .in_bulk({notification.variant_id for notification in notifications} - {None})
    )
    for notification in notifications:
        notification.rule = rules[notification.rule_id]
        if notification.variant_id is not None:
            notification.variant = variants[notification.variant_id]


# Channels that buzz a phone, and so wait for the customer's daytime.
PHONE_CHANNELS = (Channel.SMS, Channel.WHATSAPP)


def _quiet_hours_end(notification: Notification, now: datetime) -> datetime | None:
    if notification.channel not in PHONE_CHANNELS:
        return None
    return next_sms_window(now, notification.customer.timezone)


class ClaimLapsed(NotTried):
    """Not sent: this process's lease on the notification lapsed or will before a send could
    be sure to finish (the database was out of reach to renew it)."""


def _send_concurrently(notifications: list[Notification], lease_id: int) -> Iterator[list]:
    """Render each message here (CPU work, and any database read stays on this thread's
    connection), then send them on this process's send threads: the provider's latency, not
    our CPU, is what a send waits for. A customer's reminders on a digest channel go as one
    message (notifications.digests), each of them paired with its one future; on a channel
    whose provider has a batch API, its messages go in few requests, each still with a future
    of its own. Yields (notification, future) pairs as the sends complete: every
    RECORD_EVERY_SECONDS, all that completed since the last time; a notification whose
    template does not render comes with a future holding that error."""
    if not notifications:
        return
    pool = send_threads()
    with ExitStack() as stack:
        channels = {
            name: stack.enter_context(sending_through(name))
            for name in {notification.channel for notification in notifications}
        }
        # A provider with a batch API (Postmark's) takes a channel's messages in few requests.
        batch_limits = {
            name: getattr(sender, "batch_limit", 0) for name, sender in channels.items()
        }
        futures, to_batch, rendering_failed = {}, defaultdict(list), []
        lines = ProductLines(notification.policy.product_line for notification in notifications)
        for members, message in digests.messages_for(notifications, lines, lease_id):
            if isinstance(message, Exception):  # a template that does not render: these only
                rendering_failed += [(notification, _failed(message)) for notification in members]
            elif batch_limits[members[0].channel]:
                to_batch[members[0].channel].append((members, message))
            else:
                sender = channels[members[0].channel]
                futures[pool.submit(_send_held, sender, message, lease_id)] = members
        batches = {}  # each batch's future, and the members of each of its messages in turn
        for channel, sends in to_batch.items():
            for start in range(0, len(sends), batch_limits[channel]):
                chunk = sends[start : start + batch_limits[channel]]
                messages = [message for _, message in chunk]
                future = pool.submit(_send_batch_held, channels[channel], messages, lease_id)
                batches[future] = [members for members, _ in chunk]
        if rendering_failed:
            yield rendering_failed
        pending = set(futures) | set(batches)
        # Where a send cannot be looked up at its provider, recovery sends it again unasked:
        # each is recorded as soon as it is answered, leaving no wider window for a double.
        together = all(getattr(sender, "can_look_up", False) for sender in channels.values())
        while pending:
            if together:
                done, pending = wait(pending, timeout=RECORD_EVERY_SECONDS)
            else:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
            if done:
                yield [pair for future in done for pair in _paired(future, futures, batches)]


def _paired(future: Future, futures: dict, batches: dict) -> list[tuple[Notification, Future]]:
    """Each notification a completed send carried, with its message's answer. A batch that
    failed as a whole gives every message its one error: one provider error for the breaker."""
    if future in futures:
        return [(notification, future) for notification in futures[future]]
    answers = future.result() if future.exception() is None else [future] * len(batches[future])
    return [
        (notification, answer)
        for members, answer in zip(batches[future], answers, strict=True)
        for notification in members
    ]


def _send_held(sender, message: OutgoingMessage, lease_id: int) -> str:
    """Send, once the channel's rate limit allows, if the lease still holds by then."""
    sender.wait_turn()
    _check_lease(lease_id)
    return sender.send_now(message)


def _send_batch_held(sender, messages: list[OutgoingMessage], lease_id: int) -> list[Future]:
    """`_send_held` for messages that go in one request: each message's answer, settled."""
    for _ in messages:
        sender.wait_turn()
    _check_lease(lease_id)
    return [
        _failed(answer) if isinstance(answer, Exception) else _succeeded(answer)
        for answer in sender.send_batch(messages)
    ]


def _check_lease(lease_id: int) -> None:
    if not leases.current().holds(lease_id):
        raise ClaimLapsed("not sent: this worker's lease lapsed (the database out of reach)")


def _failed(error: Exception) -> Future:
    future = Future()
    future.set_exception(error)
    return future


def _succeeded(provider_message_id: str) -> Future:
    future = Future()
    future.set_result(provider_message_id)
    return future


# The threads that send for every batch a process runs, however many run at once. A worker
# process starts its own (notifications.apps connects start_send_threads to Celery's
# worker_process_init and worker_init); any other process (a test, a shell) on first use.
_send_threads: ThreadPoolExecutor | None = None
_send_threads_lock = threading.Lock()


def start_send_threads(**_signal_arguments) -> None:
    """Give this process its own send threads, replacing any it inherited from a parent."""
    global _send_threads
    with _send_threads_lock:
        _send_threads = ThreadPoolExecutor(
            max_workers=settings.REMINDER_SEND_THREADS, thread_name_prefix="send"
        )


def send_threads() -> ThreadPoolExecutor:
    if _send_threads is None:
        start_send_threads()
    return _send_threads


class _BatchRecord:
    """A batch's outcomes by kind, each kind recorded with one UPDATE through the lifecycle."""

    def __init__(self, lease_id: int):
        self.lease_id = lease_id
        self.cancelled: dict[int, str] = {}
        self.replaced: list[Notification] = []  # cancelled, its rule's fallback going instead
        self.deferred: dict[int, datetime] = {}
        self.paused: list[int] = []  # waiting for its provider to answer again
        self.sent: dict[int, str] = {}
        self.failed: dict[Notification, PermanentSendError] = {}
        self.transient: dict[Notification, TransientSendError] = {}
        self.unconfirmed: dict[int, str] = {}
        self.unsent: dict[int, str] = {}  # never handed to the provider, and why
        self.broken: dict[int, str] = {}
        self.answers: defaultdict[str, circuit.Answers] = defaultdict(circuit.Answers)
        self.digests_sent: dict[int, str] = {}
        self._counted: set[int] = set()  # the sends counted for the breaker: a digest's once

    def add(self, notification: Notification, result: Future) -> None:
        """File a send's result by what the provider (or our own code) said. A digest's one
        result is filed for each of its reminders."""
        first = id(result) not in self._counted
        self._counted.add(id(result))
        answers = self.answers[notification.channel] if first else circuit.Answers()
        try:
            self.sent[notification.pk] = result.result()
            answers.answered += 1
            if notification.digest_id:
                self.digests_sent[notification.digest_id] = self.sent[notification.pk]
        except PermanentSendError as error:
            self.failed[notification] = error
            answers.answered += 1
        except TransientSendError as error:
            if error.maybe_sent:
                self.unconfirmed[notification.pk] = f"attempt {notification.attempts}: {error}"
            else:
                self.transient[notification] = error
            answers.unanswered += 1  # no answer in time counts as none, for the breaker
            answers.last_error = str(error)
        except NotTried as error:
            self.unsent[notification.pk] = str(error)
        except Exception as error:  # a bug or a misconfiguration: failed, for a person to retry
            logger.error("notification %s not sent", notification.pk, exc_info=error)
            self.broken[notification.pk] = f"unexpected error: {error!r}"

    def _move(self, ids, to: str, **fields) -> int:
        """A move of this batch's own notifications: none that recovery took over from it."""
        return lifecycle.move(ids, to, held_by=self.lease_id, **fields)

    def save(self) -> dict[int, Outcome]:
        outcomes = {}
        if self.unsent:  # never handed to the provider: sent again by a release soon
            self._move(
                self.unsent,
                Status.DEFERRED,
                send_after=timezone.now() + NOT_TRIED_WAIT,
                attempts=F("attempts") - 1,
                last_error=_each(self.unsent, "last_error"),
            )
            outcomes |= {pk: Outcome(Status.DEFERRED, why) for pk, why in self.unsent.items()}
        if self.unconfirmed:
            leave_for_recovery(self.unconfirmed, held_by=self.lease_id)
            outcomes |= {
                pk: Outcome(Status.SENDING, f"{why}; the provider is asked before any retry")
                for pk, why in self.unconfirmed.items()
            }
        if self.broken:
            self._move(self.broken, Status.FAILED, last_error=_each(self.broken, "last_error"))
            outcomes |= {pk: Outcome(Status.FAILED, why) for pk, why in self.broken.items()}
        if self.cancelled:
            self._move(
                self.cancelled, Status.CANCELLED, last_error=_each(self.cancelled, "last_error")
            )
            outcomes |= {pk: Outcome(Status.CANCELLED, why) for pk, why in self.cancelled.items()}
            for notification in self.replaced:  # few: customers who withdrew their WhatsApp
                why = self.cancelled[notification.pk]
                fallback_id = fallback.plan_fallback(notification)
                outcomes[notification.pk] = Outcome(Status.CANCELLED, why, fallback_id)
        if self.deferred:
            self._move(
                self.deferred,
                Status.DEFERRED,
                send_after=_each(self.deferred, "send_after"),
                attempts=F("attempts") - 1,  # nothing was attempted
            )
            outcomes |= {
                pk: Outcome(Status.DEFERRED, f"quiet hours: waits until {window.isoformat()}")
                for pk, window in self.deferred.items()
            }
        if self.paused:  # the release sends these once the provider answers a probe
            self._move(
                self.paused, Status.DEFERRED, send_after=timezone.now(), attempts=F("attempts") - 1
            )
            outcomes |= {
                pk: Outcome(Status.DEFERRED, "waits: its provider is paused after errors")
                for pk in self.paused
            }
        if self.sent:
            sent = {
                "sent_at": timezone.now(),
                "provider_message_id": _each(self.sent, "provider_message_id"),
            }
            if self._move(self.sent, Status.SENT, last_error="", **sent) < len(self.sent):
                keep_provider_ids(self.sent, sent)
            if self.digests_sent:
                Digest.objects.filter(pk__in=self.digests_sent).update(
                    provider_message_id=each_row(Digest, self.digests_sent, "provider_message_id")
                )
            outcomes |= {pk: Outcome(Status.SENT, sid) for pk, sid in self.sent.items()}
        outcomes |= self._save_failed() | self._save_transient()
        return outcomes

    def _save_failed(self) -> dict[int, Outcome]:
        if not self.failed:
            return {}
        reasons = {notification.pk: str(error) for notification, error in self.failed.items()}
        self._move(reasons, Status.FAILED, last_error=_each(reasons, "last_error"))
        outcomes = {}
        for notification, error in self.failed.items():  # rare: a rejected address or number
            tracking.apply_to_customer(
                notification.customer_id,
                DeliveryEvent.Type.REJECTED,
                error.code,
                channel=notification.channel,
            )
            outcomes[notification.pk] = Outcome(
                Status.FAILED, str(error), fallback_id=fallback.plan_fallback(notification)
            )
        return outcomes

    def _save_transient(self) -> dict[int, Outcome]:
        """A transient error waits in the database, as quiet hours do, until its backoff is
        over; the release task sends it again (checking first that it is still useful). Once
        its retry budget is spent, it fails."""
        now = timezone.now()
        retry_at, errors, give_up = {}, {}, {}
        for notification, error in self.transient.items():
            attempts = notification.attempts
            if retries.out_of_time(notification, now):
                give_up[notification.pk] = retries.gave_up(notification, error)
            else:
                wait = timedelta(seconds=retries.retry_backoff(attempts))
                retry_at[notification.pk] = now + wait
                errors[notification.pk] = f"attempt {attempts} failed: {error}"
        # The budget runs from the first transient error, whichever move records it.
        failing_since = Coalesce(F("failing_since"), Value(now))
        if retry_at:
            self._move(
                retry_at,
                Status.DEFERRED,
                send_after=_each(retry_at, "send_after"),
                last_error=_each(errors, "last_error"),
                failing_since=failing_since,
            )
        if give_up:
            self._move(
                give_up,
                Status.FAILED,
                last_error=_each(give_up, "last_error"),
                failing_since=failing_since,
                failed_transiently=True,
            )
        return {
            pk: Outcome(Status.DEFERRED, f"{errors[pk]}; retries at {at.isoformat()}")
            for pk, at in retry_at.items()
        } | {pk: Outcome(Status.FAILED, reason) for pk, reason in give_up.items()}


def keep_provider_ids(ids, sent: dict) -> int:
    """A provider's callback overtook our own record and moved the notification on (delivered,
    bounced, failed): keep the provider's message id and the send time all the same."""
    return Notification.objects.filter(
        pk__in=ids,
        provider_message_id="",
        status__in=[Status.DELIVERED, Status.BOUNCED, Status.FAILED],
    ).update(**sent)


def leave_for_recovery(reasons: dict[int, str], *, held_by: int) -> int:
    """Sends that may have reached the provider without an answer coming back stay sending,
    with no worker: recovery asks the provider about them once a lease's time has passed (what
    is still on its way by then has arrived), and sends again only what it does not have."""
    return Notification.objects.filter(
        pk__in=reasons, status=Status.SENDING, lease_id=held_by
    ).update(
        lease=None,
        no_answer=True,
        recover_after=timezone.now() + leases.lease_duration(),
        last_error=_each(reasons, "last_error"),
        # A send with no answer is a provider error too: the retry budget runs from it.
        failing_since=Coalesce(F("failing_since"), Value(timezone.now())),
    )


def _each(values: dict[int, object], field_name: str) -> Value | RawSQL:
    return each_row(Notification, values, field_name)


def why_not_send(notification: Notification) -> str:
    """Why a claimed notification must not go out after all, or '' when it may."""
    policy = notification.policy
    if policy.status != Policy.Status.ACTIVE:
        return f"policy is {policy.get_status_display().lower()}"
    if policy.expiry_date != notification.expiry_date:
        return f"policy expiry date changed to {policy.expiry_date}"
    if policy.renewal_declined:
        return planning.DECLINED
    return reach.why_unreachable(notification.channel, notification.customer)


def _stands_in(notification: Notification, reason: str) -> bool:
    """Whether a reminder cancelled for `reason` goes by its rule's fallback instead: one its
    channel cannot reach the customer on, whose rule's fallback stands in for that
    (ReminderRule.stands_in_when_unreachable: WhatsApp, withdrawn after planning)."""
    return (
        notification.rule.stands_in_when_unreachable
        and notification.channel == notification.rule.channel
        and reason == reach.why_unreachable(notification.channel, notification.customer)
    )
