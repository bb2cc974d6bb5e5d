"""How a policy's term ends, recorded once per term: a renewal (the agent's button, the API, an
import with a later expiry) or a lapse (the daily scan, once the expiry and the grace period
passed, or the API). Each outcome keeps the reminders that went out about that expiry before
it, and the last one delivered: what renewal rates by channel, lead time and template read."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from notifications import planning, signals
from notifications.models import (
    CallOutcome,
    Channel,
    Notification,
    PolicyOutcome,
    Reach,
    ReminderRule,
    TemplateVariant,
)
from policies.models import Policy

Kind = PolicyOutcome.Kind
Source = PolicyOutcome.Source
# Policies lapsed per transaction: each batch's lock on its rows is short.
LAPSE_BATCH = 1000


@dataclass(frozen=True)
class Term:
    """A term that just ended: which policy, the expiry it ran to, and its new one if renewed."""

    policy_id: int
    expiry_date: date
    new_expiry_date: date | None = None


def record(terms: Iterable[Term], *, kind: str, source: str, at: datetime | None = None) -> None:
    """Write the outcome of each term, ended at `at` (now), with its reminders' counts and last
    delivered touch; a term recorded before is left as it was."""
    terms = list(terms)
    if not terms:
        return
    at = at or timezone.now()
    day = timezone.localdate(at)
    touches = _touches(terms, before=at)
    calls = _last_calls(terms, before=at)
    books = {
        pk: (agent_id, product_line)
        for pk, agent_id, product_line in Policy.objects.filter(
            pk__in={term.policy_id for term in terms}
        ).values_list("pk", "agent_id", "product_line")
    }
    outcomes = []
    for term in terms:
        touch = touches.get((term.policy_id, term.expiry_date), Touches())
        last = touch.last
        agent_id, product_line = books[term.policy_id]
        outcomes.append(
            PolicyOutcome(
                policy_id=term.policy_id,
                kind=kind,
                source=source,
                expiry_date=term.expiry_date,
                new_expiry_date=term.new_expiry_date,
                occurred_at=at,
                days_before_expiry=(term.expiry_date - day).days,
                reminders_sent=touch.sent,
                reminders_delivered=touch.delivered,
                channels_reached=touch.reach,
                agent_id=agent_id,
                product_line=product_line,
                last_touch=last,
                last_touch_channel=last.channel if last else "",
                last_touch_lead_days=last.lead_days if last else None,
                last_touch_template=last.template if last else None,
                # A digest went in the digest template's words: no variant's.
                last_touch_variant_id=last.variant_id if last and not last.digest_id else None,
                last_call_id=calls.get((term.policy_id, term.expiry_date)),
            )
        )
    PolicyOutcome.objects.bulk_create(outcomes, ignore_conflicts=True)


def _last_calls(terms: list[Term], *, before: datetime) -> dict[tuple[int, date], int]:
    """Per (policy, expiry): the agent's last call about that term before `before` (its id)."""
    calls = CallOutcome.objects.filter(
        policy_id__in={term.policy_id for term in terms}, called_at__lte=before
    ).order_by("called_at", "id")
    # Later calls overwrite earlier ones: the last one stays.
    return {
        (policy_id, expiry): pk
        for pk, policy_id, expiry in calls.values_list("pk", "policy_id", "expiry_date")
    }


@dataclass
class Touches:
    """The reminders about one expiry sent before its outcome: how many, how many of them
    delivered, on which channels, and the last delivered."""

    sent: int = 0
    delivered: int = 0
    channels: set[str] = field(default_factory=set)
    last: Notification | None = None

    @property
    def reach(self) -> str:
        email = Channel.EMAIL in self.channels
        phone = bool(self.channels & {Channel.SMS, Channel.WHATSAPP})
        if email and phone:
            return Reach.BOTH
        return Reach.EMAIL if email else Reach.PHONE if phone else Reach.NONE


def _touches(terms: list[Term], *, before: datetime) -> dict[tuple[int, date], Touches]:
    """Per (policy, expiry): the reminders about that expiry sent before `before`, those of
    them delivered before it (and on which channels), and the last delivered. One query for
    all the terms."""
    wanted = {(term.policy_id, term.expiry_date) for term in terms}
    sent = Notification.objects.filter(
        policy_id__in={term.policy_id for term in terms}, sent_at__lte=before
    ).only(
        "policy_id",
        "expiry_date",
        "channel",
        "lead_days",
        "rule_id",
        "variant_id",
        "digest_id",
        "delivered_at",
    )
    found: dict[tuple[int, date], Touches] = {}
    for reminder in sent:
        key = (reminder.policy_id, reminder.expiry_date)
        if key not in wanted:
            continue
        touch = found.setdefault(key, Touches())
        touch.sent += 1
        if reminder.delivered_at is not None and reminder.delivered_at <= before:
            touch.delivered += 1
            touch.channels.add(reminder.channel)
            last = touch.last
            if last is None or (reminder.delivered_at, reminder.pk) > (last.delivered_at, last.pk):
                touch.last = reminder
    rules = ReminderRule.objects.select_related("template", "fallback_template").in_bulk(
        {touch.last.rule_id for touch in found.values() if touch.last}
    )
    variants = TemplateVariant.objects.select_related("template").in_bulk(
        {touch.last.variant_id for touch in found.values() if touch.last and touch.last.variant_id}
    )
    for touch in found.values():
        if touch.last:
            touch.last.rule = rules[touch.last.rule_id]
            if touch.last.variant_id:
                touch.last.variant = variants[touch.last.variant_id]
    return found


def lapse_expired(*, run_date: date) -> int:
    """Mark lapsed every active policy whose expiry passed more than POLICY_LAPSE_GRACE_DAYS
    before `run_date`, a batch per transaction: its waiting reminders cancelled (planning's own
    rule), its outcome recorded and `policies_lapsed` sent (events' policy.lapsed), all with
    the change. Run again, it finds nothing. Returns how many lapsed."""
    cutoff = run_date - timedelta(days=settings.POLICY_LAPSE_GRACE_DAYS)
    # The scan's own index (policy_active_expiry): active, by expiry date.
    expired = Policy.objects.filter(status=Policy.Status.ACTIVE, expiry_date__lt=cutoff)
    count = 0
    while True:
        with transaction.atomic():
            rows = list(
                expired.order_by("pk")
                .select_for_update(skip_locked=True)
                .values_list("pk", "expiry_date")[:LAPSE_BATCH]
            )
            if not rows:
                return count
            ids = [pk for pk, _ in rows]
            Policy.objects.filter(pk__in=ids).update(
                status=Policy.Status.LAPSED, updated_at=timezone.now()
            )
            planning.cancelled_outdated(policy_ids=ids)
            lapsed([Term(pk, expiry) for pk, expiry in rows], source=Source.SCAN)
            count += len(ids)


def lapsed(terms: list[Term], *, source: str) -> None:
    """What a lapse records, in its transaction: the terms' outcomes, and `policies_lapsed`
    (Signal.send: a receiver that fails rolls the lapse back, so its event commits with it)."""
    record(terms, kind=Kind.LAPSED, source=source)
    signals.policies_lapsed.send(__name__, policy_ids=[term.policy_id for term in terms])


def imported_renewals(sender, *, renewals: list[tuple[int, date, date]], **_arguments) -> None:
    """policies.signals.policies_renewed: an import moved these policies' expiry later."""
    record(
        [Term(pk, old, new) for pk, old, new in renewals], kind=Kind.RENEWED, source=Source.IMPORT
    )
