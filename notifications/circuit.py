"""A circuit breaker per provider. After PROVIDER_BREAKER_FAILURES transient errors in a row from
a channel's provider the channel pauses: its reminders wait in the database (deferred, their try
not counted) instead of spending their retries on a provider that is down, and the release task
leaves them there rather than in the broker. One send at a time probes the provider,
PROVIDER_PROBE_SECONDS after the pause and twice as long after each failed probe (at most
PROVIDER_PROBE_MAX_SECONDS); its first answer closes the breaker, and the next release sends
what waited.

    closed --(a run of transient errors)--> open --(a probe is due; one send claims it)--> probing
    probing --(the provider answers)--> closed;  probing --(another transient error)--> open

The state is one row per channel and provider (CircuitBreaker), changed only by conditional
UPDATEs, so concurrent workers agree on it: one opens it, one wins each probe. A batch reads its
channels' rows once (nothing per message) and writes them only after transient errors, or after
a success that ends a run of them."""

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from notifications import leases
from notifications.channels import provider_of
from notifications.models import Channel, CircuitBreaker, Notification

logger = logging.getLogger(__name__)
State = CircuitBreaker.State


@dataclass
class Answers:
    """What a channel's provider said to a group of sends."""

    answered: int = 0  # accepted, or refused for good (a bad number): the provider is up
    unanswered: int = 0  # transient errors
    last_error: str = ""


def breakers(channels: Iterable[str] = Channel.values) -> dict[str, CircuitBreaker]:
    """The breaker of each channel's current provider, by channel, in one query; a provider
    that never failed has no row yet, and comes as a closed breaker not saved."""
    wanted = {channel: provider_of(channel) for channel in channels}
    if not wanted:
        return {}
    which = Q()
    for channel, provider in wanted.items():
        which |= Q(channel=channel, provider=provider)
    found = {breaker.channel: breaker for breaker in CircuitBreaker.objects.filter(which)}
    return {
        channel: found.get(channel) or CircuitBreaker(channel=channel, provider=provider)
        for channel, provider in wanted.items()
    }


def paused_channels() -> list[str]:
    """The channels whose provider is paused (open or probing)."""
    return [channel for channel, breaker in breakers().items() if breaker.state != State.CLOSED]


def claim_probes(waiting: QuerySet[Notification], channels: Iterable[str]) -> list[int]:
    """For the release, in its transaction: of each paused channel whose probe is due, one of
    its `waiting` notifications (locked, so no other release takes it), claimed as the probe.
    The release enqueues these with the others."""
    now = timezone.now()
    probes = []
    for channel, breaker in breakers(channels).items():
        # The freshest first: one that waited out a long outage may no longer be worth sending
        # (its policy expired, a sooner reminder is due), and would give its turn back unsent.
        candidate = (
            waiting.filter(channel=channel, expiry_date__gte=timezone.localdate())
            .order_by("-due_on", "id")
            .select_for_update(skip_locked=True)
            .values_list("id", flat=True)
            .first()
        )
        if candidate is not None and _claim_probe(breaker, candidate, now):
            probes.append(candidate)
    return probes


def _claim_probe(breaker: CircuitBreaker, notification_id: int, now: datetime) -> bool:
    """Make this notification's send the probe of its paused provider, if a probe is due (or
    the last one never reported within two worker leases: its worker died, its task was lost,
    or its notification was cancelled before it went) and nobody claimed it first."""
    if breaker.pk is None:
        return False
    abandoned = now - 2 * leases.lease_duration()
    due = Q(state=State.OPEN, next_probe_at__lte=now) | Q(
        state=State.PROBING, probe_started_at__lt=abandoned
    )
    return bool(
        CircuitBreaker.objects.filter(due, pk=breaker.pk).update(
            state=State.PROBING,
            probe_notification_id=notification_id,
            probe_started_at=now,
            changed_at=now,
        )
    )


@dataclass
class Gate:
    """A batch's view of its channels' breakers, read once as it starts: which of its
    notifications wait for a paused provider, which one probes it, and what the provider's
    answers do to the breaker."""

    breakers: dict[str, CircuitBreaker]
    probes: dict[str, int] = field(default_factory=dict)  # channel: its probe in this batch
    asked: set[str] = field(default_factory=set)  # channels whose probe this batch asked for
    counted: set[str] = field(default_factory=set)  # channels whose errors this batch counted
    reported: set[str] = field(default_factory=set)  # channels whose probe answered

    @classmethod
    def for_batch(cls, notifications: list[Notification]) -> "Gate":
        return cls(breakers({notification.channel for notification in notifications}))

    def holds(self, notification: Notification) -> bool:
        """Whether the notification waits for its paused provider instead of going now. The
        one that probes goes: the probe the release enqueued, or the first this batch can
        claim once a probe is due."""
        channel = notification.channel
        breaker = self.breakers[channel]
        if breaker.state == State.CLOSED:
            return False
        if channel in self.probes:
            return True
        if breaker.state == State.PROBING and breaker.probe_notification_id == notification.pk:
            self.probes[channel] = notification.pk
            return False
        if channel not in self.asked:  # one try per batch: a probe not due stays not due
            self.asked.add(channel)
            if _claim_probe(breaker, notification.pk, timezone.now()):
                self.probes[channel] = notification.pk
                return False
        return True

    def record(self, answers: dict[str, Answers]) -> None:
        """Tell the breakers what their providers answered to a group of this batch's sends."""
        for channel, answer in answers.items():
            breaker = self.breakers[channel]
            probe = self.probes.get(channel) if channel not in self.reported else None
            if probe:
                self.reported.add(channel)
            if answer.answered:
                # Only a success that ends a run of errors writes: the happy path never does.
                ends_a_run = breaker.state != State.CLOSED or breaker.consecutive_failures
                if probe or ends_a_run or channel in self.counted:
                    _close(breaker)
                    breaker.state, breaker.consecutive_failures = State.CLOSED, 0
                    self.counted.discard(channel)
            elif probe:
                _reopen(breaker, probe, answer)
            else:
                self.counted.add(channel)
                self.breakers[channel] = _count_errors(breaker, answer)

    def finish(self, batch: Iterable[int]) -> None:
        """A probe of this batch that never reached the provider (its notification was
        cancelled, waits for quiet hours, or its send broke before the provider answered) gives
        its turn back: another send may probe at once."""
        batch = set(batch)
        for channel, breaker in self.breakers.items():
            probe = self.probes.get(channel)
            if probe is None and breaker.probe_notification_id in batch:
                probe = breaker.probe_notification_id  # the release's probe, never sent
            if probe is None or channel in self.reported:
                continue
            CircuitBreaker.objects.filter(
                pk=breaker.pk, state=State.PROBING, probe_notification_id=probe
            ).update(
                state=State.OPEN,
                next_probe_at=timezone.now(),
                probe_notification=None,
                probe_started_at=None,
            )


def _count_errors(breaker: CircuitBreaker, answer: Answers) -> CircuitBreaker:
    """Add a group's transient errors to the provider's run of them; the process whose count
    reaches PROVIDER_BREAKER_FAILURES opens the breaker (only one can: it must be closed).
    Returns the breaker, saved."""
    now = timezone.now()
    if breaker.pk is None:  # its first error: the row is made now
        breaker, _ = CircuitBreaker.objects.get_or_create(
            channel=breaker.channel, provider=breaker.provider
        )
    run = F("consecutive_failures") + answer.unanswered
    CircuitBreaker.objects.filter(pk=breaker.pk).update(
        consecutive_failures=run, last_error=answer.last_error
    )
    threshold = settings.PROVIDER_BREAKER_FAILURES
    first_probe = settings.PROVIDER_PROBE_SECONDS
    opened = threshold and CircuitBreaker.objects.filter(
        pk=breaker.pk, state=State.CLOSED, consecutive_failures__gte=threshold
    ).update(
        state=State.OPEN,
        opened_at=now,
        probe_interval_seconds=first_probe,
        next_probe_at=now + timedelta(seconds=first_probe),
        changed_at=now,
    )
    if opened:
        logger.warning(
            "%s provider %s paused after %s transient errors in a row (last: %s); probing in %s s",
            breaker.channel,
            breaker.provider,
            threshold,
            answer.last_error,
            first_probe,
        )
    return breaker


def _reopen(breaker: CircuitBreaker, probe: int, answer: Answers) -> None:
    """The probe failed: the provider stays paused, and waits twice as long to be probed."""
    now = timezone.now()
    interval = min(
        max(breaker.probe_interval_seconds, settings.PROVIDER_PROBE_SECONDS) * 2,
        settings.PROVIDER_PROBE_MAX_SECONDS,
    )
    CircuitBreaker.objects.filter(
        pk=breaker.pk, state=State.PROBING, probe_notification_id=probe
    ).update(
        state=State.OPEN,
        consecutive_failures=F("consecutive_failures") + answer.unanswered,
        last_error=answer.last_error,
        probe_interval_seconds=interval,
        next_probe_at=now + timedelta(seconds=interval),
        probe_notification=None,
        probe_started_at=None,
        changed_at=now,
    )


def _close(breaker: CircuitBreaker) -> int:
    """The provider answered: it is closed, its run of errors over. Returns 1 if it changed."""
    closed = CircuitBreaker.objects.filter(
        Q(consecutive_failures__gt=0) | ~Q(state=State.CLOSED), pk=breaker.pk
    ).update(
        state=State.CLOSED,
        consecutive_failures=0,
        opened_at=None,
        probe_interval_seconds=0,
        next_probe_at=None,
        probe_notification=None,
        probe_started_at=None,
        changed_at=timezone.now(),
    )
    if closed and breaker.state != State.CLOSED:
        logger.warning("%s provider %s answers again: resumed", breaker.channel, breaker.provider)
    return closed


def resume(breaker: CircuitBreaker) -> bool:
    """Close a breaker by hand (the admin's "resume now"): the next release sends what waited.
    Returns whether it was paused or counting errors."""
    return bool(_close(breaker))


def describe(breaker: CircuitBreaker) -> str:
    """The breaker's state in a sentence, for /readyz and the admin."""
    name = f"{breaker.channel} ({breaker.provider})"
    if breaker.state == State.CLOSED:
        return f"{name} sending"
    since = breaker.opened_at.isoformat(timespec="seconds") if breaker.opened_at else "?"
    if breaker.state == State.PROBING:
        return f"{name} paused since {since} after provider errors; a probe is being sent"
    at = breaker.next_probe_at.isoformat(timespec="seconds") if breaker.next_probe_at else "?"
    return f"{name} paused since {since} after provider errors; next probe at {at}"
