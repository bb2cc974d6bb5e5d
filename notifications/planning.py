"""Planning: which reminders are due on a run date, written as Notification rows in one bulk,
idempotent insert. Sending them is dispatch's job; the rows are the outbox it works from."""

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Case, Count, DateField, F, Q, QuerySet, Value, When
from django.utils import timezone

from notifications import circuit, experiments, lifecycle, reach
from notifications.models import Channel, Notification, ReminderRule, ReminderRun
from policies.models import RENEWAL_DECLINED, Policy

Status = Notification.Status
DECLINED = "customer declined to renew"
OUTRUN = "a more urgent reminder fell due in the same scan"


@dataclass(frozen=True)
class Candidate:
    """An active policy inside the reminder window, with what planning needs of its customer."""

    policy_id: int
    customer_id: int
    expiry_date: date
    product_line: str
    email: str
    phone: str
    email_consent: bool
    email_undeliverable: bool
    sms_consent: bool
    whatsapp_consent: bool
    wrong_phone: str
    since: date  # due on or before this day: the previous scan's to plan (see _candidates)

    def reachable_by(self, channel: str) -> bool:
        return reach.reachable_by(channel, self)


@transaction.atomic
def plan_due(*, run_date: date, set_based: bool | None = None) -> ReminderRun:
    """Plan every reminder due on `run_date` and record the run.

    A reminder is due when its rule's lead time before the policy's expiry has been reached.
    If scans were missed, only the most urgent due reminder per policy and channel is planned;
    the older ones are recorded as skipped. Re-running a day, or running two scans at once,
    plans nothing twice: the natural key is unique in the database.

    PostgreSQL plans set-based, in one INSERT ... SELECT (`_insert_due_set_based`); SQLite
    policy by policy in Python (`_due_reminders`). `set_based` overrides that choice: the
    benchmark and tests/notifications/test_planning_paths.py hold the two to the same rows."""
    previous = (
        ReminderRun.objects.filter(finished_at__isnull=False, run_date__lte=run_date)
        .order_by("-run_date", "-started_at")
        .first()
    )
    run = ReminderRun.objects.create(run_date=run_date)
    cancelled = cancel_outdated()
    rules = list(ReminderRule.objects.filter(active=True).select_related("fallback_template"))
    if set_based is None:
        set_based = connection.vendor == "postgresql"
    if rules and set_based:
        _insert_due_set_based(run, rules, previous)
    elif rules:
        _insert_ignoring_existing(_due_reminders(run, rules, previous))
    counts = dict(run.notifications.values_list("status").annotate(Count("id")))
    run.planned = counts.get(Status.PLANNED, 0)
    run.skipped = counts.get(Status.SKIPPED, 0)
    run.cancelled = cancelled
    run.finished_at = timezone.now()
    run.save(update_fields=["planned", "skipped", "cancelled", "finished_at"])
    return run


def cancel_outdated(*, policy_id: int | None = None) -> int:
    """Cancel reminders not yet sent whose policy was renewed, cancelled or lapsed, or whose
    expiry date changed: the reminder is about an expiry that no longer stands; and those about
    a term the customer told an agent they will not renew. With
    `policy_id`, only that policy's reminders are examined (an agent's renewal)."""
    return len(cancelled_outdated(policy_id=policy_id))


def cancelled_outdated(
    *, policy_id: int | None = None, policy_ids: list[int] | None = None
) -> list[int]:
    """`cancel_outdated`, returning the ids of the reminders it cancelled; with `policy_ids`,
    only those policies' (a batch of lapses)."""
    waiting = Notification.objects.filter(status__in=lifecycle.WAITING)
    if policy_id is not None:
        waiting = waiting.filter(policy_id=policy_id)
    if policy_ids is not None:
        waiting = waiting.filter(policy_id__in=policy_ids)
    inactive = waiting.exclude(policy__status=Policy.Status.ACTIVE)
    moved = waiting.exclude(expiry_date=F("policy__expiry_date"))
    declined = waiting.filter(policy__renewal_declined_for=F("expiry_date"))
    return (
        lifecycle.move_returning_ids(
            inactive.values_list("id", flat=True),
            Status.CANCELLED,
            last_error="policy no longer active",
        )
        + lifecycle.move_returning_ids(
            moved.values_list("id", flat=True),
            Status.CANCELLED,
            last_error="policy expiry date changed",
        )
        + lifecycle.move_returning_ids(
            declined.values_list("id", flat=True),
            Status.CANCELLED,
            last_error=DECLINED,
        )
    )


def claim_for_enqueue(*, limit: int, stalled_after: timedelta) -> list[int]:
    """Mark up to `limit` notifications queued and return their ids, for the fan-out to send
    as tasks: the newly planned, the deferred whose time has come, and the queued whose task
    stalled (lost with a broker) for longer than `stalled_after`. Never one that is sending:
    its send may have reached the provider, and only recovery, having asked the provider,
    sends it again. Concurrent callers never get the same ids. A paused provider's reminders
    stay in the database, but for the one that probes it when a probe is due
    (notifications.circuit)."""
    return [pk for pk, _ in _claim(limit=limit, stalled_after=stalled_after)]


def _claim(*, limit: int, stalled_after: timedelta) -> list[tuple[int, tuple]]:
    """`claim_for_enqueue`, each id with the key of the digest it may go in (customer and
    channel, on a digest channel; its own id otherwise). A customer's other reminders on a
    digest channel that are released now come along, past `limit`: a digest's reminders must
    be claimed together to go in one message (notifications.digests)."""
    now = timezone.now()
    released = Q(status=Status.PLANNED) | Q(status=Status.DEFERRED, send_after__lte=now)
    paused = circuit.paused_channels()
    with transaction.atomic():
        sendable = released & ~Q(channel__in=paused) if paused else released
        rows = list(
            Notification.objects.filter(
                sendable | Q(status=Status.QUEUED, status_changed_at__lt=now - stalled_after)
            )
            .order_by("id")
            .select_for_update(skip_locked=True)
            .values_list("id", "customer_id", "channel")[:limit]
        )
        rows += _digest_siblings(rows, sendable)
        if paused:
            probes = circuit.claim_probes(Notification.objects.filter(released), paused)
            rows += [(pk, None, None) for pk in probes]
        ids = [pk for pk, _, _ in rows]
        lifecycle.move(ids, Status.QUEUED, queued_at=now)
    digest_channels = set(settings.DIGEST_CHANNELS)
    return [
        (pk, (customer, channel) if channel in digest_channels else ("alone", pk))
        for pk, customer, channel in rows
    ]


def _digest_siblings(rows: list[tuple], sendable: Q) -> list[tuple]:
    """The customers' other reminders released now on the digest channels, that `rows` left
    out (past the limit): locked with them, so that they go in the same digest."""
    digest_channels = set(settings.DIGEST_CHANNELS)
    customers = {customer for _, customer, channel in rows if channel in digest_channels}
    if not customers:
        return []
    return list(
        Notification.objects.filter(
            sendable, customer_id__in=customers, channel__in=digest_channels
        )
        .exclude(pk__in=[pk for pk, _, _ in rows])
        .order_by("id")
        .select_for_update(skip_locked=True)
        .values_list("id", "customer_id", "channel")
    )


def fan_out(*, publish: Callable[[list[list[int]]], None]) -> int:
    """Hand every notification due to go (newly planned, released from waiting, or stalled) to
    `publish`, as batches of REMINDER_SEND_BATCH_SIZE ids, claimed REMINDER_FANOUT_CHUNK at a
    time so that a day of millions never sits in memory. A customer's reminders that may go as
    one digest share a batch. Returns how many were handed on."""
    stalled_after = timedelta(minutes=settings.REMINDER_REQUEUE_AFTER_MINUTES)
    total = 0
    while claimed := _claim(limit=settings.REMINDER_FANOUT_CHUNK, stalled_after=stalled_after):
        publish(batches(claimed, size=settings.REMINDER_SEND_BATCH_SIZE))
        total += len(claimed)
    return total


def batches(claimed: list[tuple[int, tuple]], *, size: int) -> list[list[int]]:
    """Ids in batches of about `size`, each digest's ids whole in one (a batch grows past
    `size` rather than split a digest)."""
    together: dict[tuple, list[int]] = {}
    for pk, key in claimed:
        together.setdefault(key, []).append(pk)
    batched: list[list[int]] = [[]]
    for ids in together.values():
        if batched[-1] and len(batched[-1]) + len(ids) > size:
            batched.append([])
        batched[-1] += ids
    return [batch for batch in batched if batch]


class Reminder(NamedTuple):
    """A due reminder, as the row planning inserts (see NOTIFICATION_COLUMNS)."""

    policy_id: int
    customer_id: int
    rule_id: int
    run_id: int
    channel: str
    expiry_date: date
    lead_days: int
    due_on: date
    status: str
    last_error: str
    variant_id: int | None  # its rule's running experiment's variant for the policy


NOTIFICATION_COLUMNS = (
    *Reminder._fields,
    "attempts",
    "provider_message_id",
    "created_at",
    "status_changed_at",
)


def _due_reminders(
    run: ReminderRun, rules: list[ReminderRule], previous: ReminderRun | None
) -> Iterator[Reminder]:
    rules_for = _RuleBook(rules)
    assignments = experiments.running_assignments(rules)
    rows = (
        _candidates(run.run_date, rules_for.lead_days, previous)
        .values_list(
            "id",
            "customer_id",
            "expiry_date",
            "product_line",
            "customer__email",
            "customer__phone",
            "customer__email_consent",
            "customer__email_undeliverable",
            "customer__sms_consent",
            "customer__whatsapp_consent",
            "customer__wrong_phone",
            "since",
        )
        .iterator(chunk_size=5000)
    )
    for candidate in itertools.starmap(Candidate, rows):
        unreachable = tuple(c for c in Channel.values if not candidate.reachable_by(c))
        for channel in Channel.values:
            if channel in unreachable:
                continue
            due = [
                (rule, due_on)
                for rule in rules_for(channel, candidate.product_line, unreachable)
                if candidate.since
                < (due_on := candidate.expiry_date - timedelta(days=rule.lead_days))
                <= run.run_date
            ]
            for rank, (rule, due_on) in enumerate(due):  # most urgent (shortest lead) first
                # A stand-in on the fallback's channel goes in the fallback's words: no variant.
                assignment = assignments.get(rule.pk) if channel == rule.channel else None
                yield Reminder(
                    policy_id=candidate.policy_id,
                    customer_id=candidate.customer_id,
                    rule_id=rule.pk,
                    run_id=run.pk,
                    channel=channel,
                    expiry_date=candidate.expiry_date,
                    lead_days=rule.lead_days,
                    due_on=due_on,
                    status=Status.PLANNED if rank == 0 else Status.SKIPPED,
                    last_error="" if rank == 0 else OUTRUN,
                    variant_id=assignment.variant_for(candidate.policy_id) if assignment else None,
                )


def _insert_ignoring_existing(reminders: Iterator[Reminder], batch_size: int = 5000) -> None:
    """What bulk_create(ignore_conflicts=True) does, minus the ORM's per-value work. A reminder
    whose natural key exists already is left as it is."""
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = ((*reminder, 0, "", now, now) for reminder in reminders)
    columns = ", ".join(map(connection.ops.quote_name, NOTIFICATION_COLUMNS))
    table = connection.ops.quote_name(Notification._meta.db_table)
    # PostgreSQL: COPY into a scratch table, then one INSERT ... ON CONFLICT. On a day of 22,000
    # reminders among 1M policies that takes 0.7 s where row-by-row inserts take 3.2 s.
    copying = connection.vendor == "postgresql"
    placeholders = ", ".join(["%s"] * len(NOTIFICATION_COLUMNS))
    with transaction.atomic(), connection.cursor() as cursor:
        if copying:
            cursor.execute(
                f"CREATE TEMPORARY TABLE due_reminder AS SELECT {columns} FROM {table} WITH NO DATA"
            )
        # Each batch is read whole before it is written: the reminders come from a server-side
        # cursor on this same connection, which cannot fetch while a COPY is under way.
        while batch := list(itertools.islice(rows, batch_size)):
            if copying:
                with cursor.cursor.copy(f"COPY due_reminder ({columns}) FROM STDIN") as copy:
                    for row in batch:
                        copy.write_row(row)
            else:
                cursor.executemany(
                    f"INSERT INTO {table} ({columns}) VALUES ({placeholders}) "
                    f"ON CONFLICT DO NOTHING",
                    batch,
                )
        if copying:
            cursor.execute(
                f"INSERT INTO {table} ({columns}) SELECT {columns} FROM due_reminder "
                f"ON CONFLICT DO NOTHING"
            )
            cursor.execute("DROP TABLE due_reminder")


def _insert_due_set_based(
    run: ReminderRun, rules: list[ReminderRule], previous: ReminderRun | None
) -> None:
    """`_due_reminders`, inserted by one INSERT ... SELECT ... ON CONFLICT DO NOTHING
    (PostgreSQL): the candidates joined to the rules chosen for their product line and reach
    (the few rows _RuleBook decides, passed as arrays), each policy and channel's due reminders
    ranked by urgency. No policy passes through Python; what remains is mostly PostgreSQL
    writing the rows: the notification table's indexes and foreign-key checks (make
    bench-planning prints both planners' times)."""
    rules_for = _RuleBook(rules)
    reaches = {f"reaches_{channel}": channel for channel in Channel.values}
    candidates = (
        _candidates(run.run_date, rules_for.lead_days, previous)
        .annotate(
            **{
                column: reach.reachable_filter(channel, customer="customer__")
                for column, channel in reaches.items()
            }
        )
        .values_list("id", "customer_id", "expiry_date", "product_line", "since", *reaches)
        .order_by()
    )
    candidate_sql, candidate_params = candidates.query.sql_with_params()
    chosen = list(zip(*_chosen_rules(rules_for), strict=True))
    # A stand-in on the fallback's channel goes in the fallback's words: no variant.
    variants = " ".join(
        f"WHEN {int(rule_id)} THEN {assignment.variant_sql(policy_id='candidate.id')}"
        for rule_id, assignment in experiments.running_assignments(rules).items()
    )
    variant = f"CASE WHEN chosen.own_words THEN CASE chosen.rule_id {variants} END END"
    variant_type = Notification._meta.get_field("variant").db_type(connection)
    quote = connection.ops.quote_name
    now = timezone.now()
    with connection.cursor() as cursor:
        cursor.execute(
            # Materialized: each candidate's customer is read once, not once per rule.
            f"""
            WITH candidate AS MATERIALIZED ({candidate_sql})
            INSERT INTO {quote(Notification._meta.db_table)}
                ({", ".join(map(quote, NOTIFICATION_COLUMNS))})
            SELECT policy_id, customer_id, rule_id, %s, channel, expiry_date, lead_days, due_on,
                CASE WHEN urgency = 1 THEN %s ELSE %s END,
                CASE WHEN urgency = 1 THEN '' ELSE %s END,
                variant_id, 0, '', %s, %s
            FROM (
                SELECT candidate.id AS policy_id, candidate.customer_id, chosen.rule_id,
                    chosen.channel, candidate.expiry_date, chosen.lead_days,
                    candidate.expiry_date - chosen.lead_days AS due_on,
                    row_number() OVER (
                        PARTITION BY candidate.id, chosen.channel ORDER BY chosen.lead_days
                    ) AS urgency,
                    CAST({variant if variants else "NULL"} AS {variant_type}) AS variant_id
                FROM candidate
                JOIN unnest(
                    %s::text[], %s::text[], {"%s::boolean[], " * len(reaches)}
                    %s::bigint[], %s::integer[], %s::boolean[]
                ) AS chosen (channel, product_line, {", ".join(reaches)},
                    rule_id, lead_days, own_words)
                ON chosen.product_line = CASE WHEN candidate.product_line = ANY(%s::text[])
                    THEN candidate.product_line ELSE '' END
                AND {" AND ".join(f"chosen.{c} = candidate.{c}" for c in reaches)}
                WHERE candidate.expiry_date - chosen.lead_days > candidate.since
                AND candidate.expiry_date - chosen.lead_days <= %s
            ) AS due
            ON CONFLICT DO NOTHING
            """,
            [
                *candidate_params,
                run.pk,
                Status.PLANNED,
                Status.SKIPPED,
                OUTRUN,
                now,
                now,
                *(list(column) for column in chosen),
                rules_for.product_lines,
                run.run_date,
            ],
        )


def _chosen_rules(rules_for: "_RuleBook") -> Iterator[tuple]:
    """What _RuleBook chooses for every case a candidate can be in, a row per rule: (channel,
    product line, whether each channel reaches the customer, rule id, lead days, whether the
    rule sends on its own channel rather than stands in). Product line "" stands for every
    product line no rule names."""
    for product_line in ["", *rules_for.product_lines]:
        for reachable in itertools.product((True, False), repeat=len(Channel.values)):
            unreachable = tuple(
                channel for channel, ok in zip(Channel.values, reachable, strict=True) if not ok
            )
            for channel in Channel.values:
                if channel in unreachable:
                    continue
                for rule in rules_for(channel, product_line, unreachable):
                    yield (
                        channel,
                        product_line,
                        *reachable,
                        rule.pk,
                        rule.lead_days,
                        rule.channel == channel,
                    )


def _candidates(run_date: date, lead_days: list[int], previous: ReminderRun | None) -> QuerySet:
    """Active policies whose reminders fell due since the previous finished scan, plus those
    changed since it began, each with the day its reminders due on or before are not this
    scan's (`since`), in one indexed query: its cost follows the due reminders, not the number
    of policies."""
    window = Q(
        status=Policy.Status.ACTIVE,
        expiry_date__gte=run_date,
        expiry_date__lte=run_date + timedelta(days=max(lead_days)),
    )
    newly_due = Q()
    # What fell due by the previous scan was that scan's to plan or skip, unless the policy
    # changed since (imported, renewed): then every due lead time is examined again.
    since = Value(date.min, output_field=DateField())
    if previous is not None:
        newly_due = Q(updated_at__gte=previous.started_at)
        for lead in lead_days:
            newly_due |= Q(
                expiry_date__gt=previous.run_date + timedelta(days=lead),
                expiry_date__lte=run_date + timedelta(days=lead),
            )
        since = Case(
            When(updated_at__gte=previous.started_at, then=since),
            default=Value(previous.run_date, output_field=DateField()),
        )
    return Policy.objects.filter(window & newly_due).exclude(RENEWAL_DECLINED).annotate(since=since)


class _RuleBook:
    """The active rules that send on a channel for a product line, shortest lead first. A rule
    scoped to the product line takes the place of an all-products rule with the same lead.
    For a customer some channels cannot reach (`unreachable`), a rule of such a channel whose
    fallback stands in for it (ReminderRule.stands_in_when_unreachable: WhatsApp's) sends on
    its fallback's channel instead, at a lead time that channel's own rules leave free."""

    def __init__(self, rules: list[ReminderRule]):
        self.rules = rules
        self.lead_days = sorted({rule.lead_days for rule in rules})
        self.product_lines = sorted({rule.product_line for rule in rules} - {""})
        self._chosen: dict[tuple, list[ReminderRule]] = {}

    def __call__(
        self, channel: str, product_line: str, unreachable: tuple[str, ...] = ()
    ) -> list[ReminderRule]:
        key = (channel, product_line, unreachable)
        if key not in self._chosen:
            own = {rule.lead_days: rule for rule in self._choose(channel, product_line)}
            for other in unreachable:
                for rule in self._choose(other, product_line):
                    if rule.stands_in_when_unreachable and rule.fallback_channel == channel:
                        own.setdefault(rule.lead_days, rule)
            self._chosen[key] = [own[lead] for lead in sorted(own)]
        return self._chosen[key]

    def _choose(self, channel: str, product_line: str) -> list[ReminderRule]:
        chosen: dict[int, ReminderRule] = {}
        for rule in self.rules:
            if rule.channel != channel or rule.product_line not in ("", product_line):
                continue
            current = chosen.get(rule.lead_days)
            if current is None or (rule.product_line and not current.product_line):
                chosen[rule.lead_days] = rule
        return [chosen[lead] for lead in sorted(chosen)]
