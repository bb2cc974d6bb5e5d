"""Which reminders keep customers: the renewal rate before expiry of the terms that expired in a
period, by product line, agent, channels reached, and the lead time and template of the last
delivered reminder. The dashboard and the weekly report both read `figures` here.

What counts:
- a term is one policy's expiry (PolicyOutcome rows by expiry_date); a term lapsed and then
  renewed late has two outcomes and counts once, by its first (the lapse, and its touches);
- renewed before expiry: renewed on or before the expiry date (days_before_expiry >= 0); the
  rate is these over the decided terms (renewed before, renewed after, lapsed);
- undecided: active policies whose expiry passed with no outcome yet (the grace period, or a
  scan still to run). Shown beside the rate, never in it: they may yet renew in time.
- `FEW`: a rate over fewer terms is marked as such; small numbers stay visible as small.

How it stays fast: `refresh` (the daily scan) recounts RetentionDay, per expiry day, agent and
dimension value, for the days whose outcomes changed since it last ran; `figures` sums those
rows, a few hundred a day, instead of reading a year of outcomes (a live GROUP BY over a year
of a 1,000,000-policy book does not fit a page's 300 ms: see benchmarks/bench_reports.py).
Figures are therefore as of the last refresh; the undecided count is read live."""

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta

from django.db import transaction
from django.db.models import Count, Max, Sum
from django.utils import timezone

from notifications.models import MessageTemplate, PolicyOutcome, Reach, RetentionDay
from policies.models import Agent, Policy

Dimension = RetentionDay.Dimension
Kind = PolicyOutcome.Kind
FEW = 20
# Outcomes are written in transactions that may commit a while after their recorded_at: each
# refresh also recounts the days touched in this much time before the last one.
REFRESH_OVERLAP = timedelta(days=1)
# Expiry days recounted per round: a first refresh of a large book holds one batch in memory.
DAYS_PER_BATCH = 31
# Which outcome column each dimension copies, as RetentionDay.value.
COLUMNS = {
    Dimension.PRODUCT_LINE: "product_line",
    Dimension.CHANNELS: "channels_reached",
    Dimension.LEAD_DAYS: "last_touch_lead_days",
    Dimension.TEMPLATE: "last_touch_template_id",
}
STATUSES = ("renewed_before", "renewed_after", "lapsed")


# --- Counting (the daily scan) --------------------------------------------------------------


def refresh(*, days: Iterable[date] | None = None, now: datetime | None = None) -> int:
    """Recount RetentionDay for `days`, or else for the expiry days of the outcomes recorded
    since the last refresh (every day, the first time). Idempotent: a day's rows are replaced
    by a recount of its outcomes. Returns how many expiry days were counted."""
    now = now or timezone.now()
    if days is None:
        last = RetentionDay.objects.aggregate(last=Max("computed_at"))["last"]
        outcomes = PolicyOutcome.objects.all()
        if last is not None:
            outcomes = outcomes.filter(recorded_at__gte=last - REFRESH_OVERLAP)
        days = outcomes.order_by().values_list("expiry_date", flat=True).distinct()
    days = sorted(set(days))
    for start in range(0, len(days), DAYS_PER_BATCH):
        _recount(days[start : start + DAYS_PER_BATCH], now=now)
    return len(days)


def _recount(days: list[date], *, now: datetime) -> None:
    terms: dict[tuple[int, date], list[tuple]] = defaultdict(list)
    columns = ("occurred_at", "id", "kind", "days_before_expiry", "agent_id", *COLUMNS.values())
    for policy_id, expiry_date, *row in PolicyOutcome.objects.filter(
        expiry_date__in=days
    ).values_list("policy_id", "expiry_date", *columns):
        terms[policy_id, expiry_date].append(tuple(row))
    counts: dict[tuple, Counter] = defaultdict(Counter)
    for (_policy_id, expiry_date), outcomes in terms.items():
        first = dict(zip(columns, min(outcomes), strict=True))
        status = _status(outcomes)
        for dimension, column in COLUMNS.items():
            value = first[column]
            counts[expiry_date, first["agent_id"], dimension, "" if value is None else value][
                status
            ] += 1
    rows = [
        RetentionDay(
            expiry_date=expiry_date,
            agent_id=agent_id,
            dimension=dimension,
            value=str(value),
            terms=sum(counted.values()),
            computed_at=now,
            **{status: counted[status] for status in STATUSES},
        )
        for (expiry_date, agent_id, dimension, value), counted in counts.items()
    ]
    with transaction.atomic():
        RetentionDay.objects.filter(expiry_date__in=days).delete()
        # A refresh running at once wrote the same counts: the unique constraints keep one.
        RetentionDay.objects.bulk_create(rows, ignore_conflicts=True, batch_size=2000)


def _status(outcomes: list[tuple]) -> str:
    """A term's status from its outcomes' (occurred_at, id, kind, days_before_expiry, ...)."""
    renewals = [days for _, _, kind, days, *_ in outcomes if kind == Kind.RENEWED]
    if any(days >= 0 for days in renewals):
        return "renewed_before"
    return "renewed_after" if renewals else "lapsed"


# --- Reading (dashboard, weekly report) -----------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """The terms of one group and how they ended."""

    label: str
    terms: int = 0
    renewed_before: int = 0
    renewed_after: int = 0
    lapsed: int = 0

    @property
    def rate(self) -> float | None:
        """Renewed before expiry over the decided terms; None with none."""
        return self.renewed_before / self.terms if self.terms else None

    @property
    def percent(self) -> str:
        return "n/a" if self.rate is None else f"{self.rate:.0%}"

    @property
    def few(self) -> bool:
        return self.terms < FEW


@dataclass(frozen=True)
class Retention:
    """The retention figures of the terms that expired from `start` to `end` (inclusive)."""

    start: date
    end: date
    total: Rate
    undecided: int
    by_product_line: list[Rate] = field(default_factory=list)
    by_channels: list[Rate] = field(default_factory=list)
    by_lead_days: list[Rate] = field(default_factory=list)
    by_template: list[Rate] = field(default_factory=list)
    by_agent: list[Rate] = field(default_factory=list)  # only over every agent
    counted_at: datetime | None = None

    @property
    def breakdowns(self) -> list[tuple[str, str, list[Rate]]]:
        """(id, title, rows) of each table to show."""
        tables = [
            ("product-line", "By product line", self.by_product_line),
            ("channels", "By channels reached", self.by_channels),
            ("lead-days", "By lead time of the last delivered reminder", self.by_lead_days),
            ("template", "By template of the last delivered reminder", self.by_template),
        ]
        if self.by_agent:
            tables.insert(0, ("agent", "By agent", self.by_agent))
        return tables


def period_ending(end: date, *, days: int) -> tuple[date, date]:
    """The `days` days of expiries up to and including `end`."""
    return end - timedelta(days=days - 1), end


def figures(*, start: date, end: date, agent: Agent | None = None) -> Retention:
    """The figures of one agent's book, or of every agent's (with the by-agent table)."""
    if agent is not None:
        return figures_per_agent(start=start, end=end, agents=[agent])[agent.pk]
    return _retention(
        start,
        end,
        _sums(start, end, None),
        undecided=_undecided(start, end).count(),
        by_agent=_by_agent(start, end),
    )


def figures_per_agent(
    *, start: date, end: date, agents: list[Agent] | None = None
) -> dict[int, Retention]:
    """Each agent's figures (every agent's, by default), from two queries whatever their
    number."""
    agents = list(Agent.objects.select_related("user")) if agents is None else agents
    ids = [agent.pk for agent in agents]
    per_agent: dict[int, list] = defaultdict(list)
    for agent_id, *row in _sums(start, end, ids, by_agent=True):
        per_agent[agent_id].append(row)
    undecided = dict(
        _undecided(start, end)
        .filter(agent_id__in=ids)
        .values_list("agent_id")
        .annotate(count=Count("id"))
        .order_by()
    )
    return {
        agent.pk: _retention(start, end, per_agent[agent.pk], undecided=undecided.get(agent.pk, 0))
        for agent in agents
    }


def _sums(start: date, end: date, agent_ids: list[int] | None, *, by_agent: bool = False):
    rows = RetentionDay.objects.filter(expiry_date__range=(start, end))
    if agent_ids is not None:
        rows = rows.filter(agent_id__in=agent_ids)
    group = ("agent_id", "dimension", "value") if by_agent else ("dimension", "value")
    return (
        rows.values_list(*group)
        .annotate(*(Sum(name) for name in ("terms", *STATUSES)), Max("computed_at"))
        .order_by()
    )


def _undecided(start: date, end: date):
    """Active policies whose expiry in the period passed with no outcome yet."""
    return Policy.objects.filter(
        status=Policy.Status.ACTIVE,
        expiry_date__range=(start, min(end, timezone.localdate() - timedelta(days=1))),
    )


def _by_agent(start: date, end: date) -> list[Rate]:
    agents = {agent.pk: agent for agent in Agent.objects.select_related("user")}
    rates = [
        Rate(str(agents[agent_id]) if agent_id in agents else "(no agent)", *counts)
        for agent_id, *counts in RetentionDay.objects.filter(
            expiry_date__range=(start, end), dimension=Dimension.PRODUCT_LINE
        )
        .values_list("agent_id")
        .annotate(*(Sum(name) for name in ("terms", *STATUSES)))
        .order_by()
    ]
    return sorted(rates, key=lambda rate: rate.label.lower())


def _retention(start: date, end: date, rows, *, undecided: int, by_agent=()) -> Retention:
    """Rates from (dimension, value, terms, renewed_before, renewed_after, lapsed, counted_at)
    rows."""
    by_dimension: dict[str, dict[str, tuple]] = defaultdict(dict)
    counted_at = None
    for dimension, value, *counts, computed_at in rows:
        by_dimension[dimension][value] = tuple(counts)
        counted_at = max(filter(None, (counted_at, computed_at)), default=None)
    total = Rate(
        "All terms",
        *(
            sum(counts[n] for counts in by_dimension[Dimension.PRODUCT_LINE].values())
            for n in range(4)
        ),
    )
    return Retention(
        start=start,
        end=end,
        total=total,
        undecided=undecided,
        by_product_line=_rates(by_dimension[Dimension.PRODUCT_LINE], _product_line_label),
        by_channels=_rates(by_dimension[Dimension.CHANNELS], _channels_label, order=_reach_order),
        by_lead_days=_rates(by_dimension[Dimension.LEAD_DAYS], _lead_label, order=_lead_order),
        by_template=_rates(by_dimension[Dimension.TEMPLATE], _template_labels(by_dimension)),
        by_agent=list(by_agent),
        counted_at=counted_at,
    )


def _rates(counts: dict[str, tuple], label, *, order=None) -> list[Rate]:
    rates = [(value, Rate(label(value), *counted)) for value, counted in counts.items()]
    rates.sort(key=lambda pair: order(pair[0]) if order else pair[1].label.lower())
    return [rate for _, rate in rates]


def _product_line_label(value: str) -> str:
    return value.title() or "(none)"


def _channels_label(value: str) -> str:
    return Reach(value).label if value in Reach.values else value


def _reach_order(value: str) -> int:
    return Reach.values.index(value) if value in Reach.values else len(Reach.values)


def _lead_label(value: str) -> str:
    return f"{value} days before" if value else "No delivered reminder"


def _lead_order(value: str) -> int:
    return -int(value) if value else 1  # the longest lead first; none last


def _template_labels(by_dimension):
    ids = [int(value) for value in by_dimension[Dimension.TEMPLATE] if value]
    names = dict(MessageTemplate.objects.filter(pk__in=ids).values_list("pk", "name"))

    def label(value: str) -> str:
        if not value:
            return "No delivered reminder"
        return names.get(int(value), f"(deleted template {value})")

    return label
