"""Template experiments: which of a rule's wordings keeps more customers. Each policy gets one
variant of a running experiment, chosen by a fixed arithmetic rule of its id (the same in every
scan and process, and in SQL); the results count, per variant, the terms its reminders reached
and how many of them renewed before their expiry, with a Wilson interval and a plain verdict.
Those counts are made by the daily scan (`tally`) and read from its few rows: counted live, a
year-long experiment on a book of 1,000,000 policies takes over a second (`make bench-reports`
times the count and the page)."""

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import transaction
from django.db.models import Count, Exists, OuterRef, Q, Sum
from django.utils import timezone

from notifications.models import (
    ExperimentTally,
    Notification,
    PolicyOutcome,
    ReminderRule,
    TemplateExperiment,
    TemplateVariant,
)
from policies.models import Agent

# Knuth's multiplicative hash: consecutive policy ids spread over the whole 32-bit range; the
# experiment's id, times another large odd constant, shifts it by a pseudo-random offset so
# that two experiments do not split the book alike (a small multiplier would barely move it).
POLICY_MULTIPLIER = 2654435761
EXPERIMENT_MULTIPLIER = 2246822519
HASH_RANGE = 2**32

# The same rule in PostgreSQL, for a planner that inserts with INSERT ... SELECT (issue 16):
# numeric, because policy id x multiplier passes bigint's range past id 3.4e9; mod() rather
# than %, which a database driver reads as a placeholder.
BUCKET_SQL = (
    f"div(mod(({{policy_id}})::numeric * {POLICY_MULTIPLIER}"
    f" + ({{experiment_id}})::numeric * {EXPERIMENT_MULTIPLIER}, {HASH_RANGE})"
    f" * ({{total_weight}}), {HASH_RANGE})"
)

# 95 % two-sided: the normal quantile of 0.975.
Z_95 = 1.959963984540054


def bucket(*, policy_id: int, experiment_id: int, total_weight: int) -> int:
    """A number in [0, total_weight) that depends only on its arguments (never Python's
    hash(), which is salted per process). The hash's high bits choose: the low bits of a
    multiplicative hash alternate with consecutive ids."""
    mixed = (policy_id * POLICY_MULTIPLIER + experiment_id * EXPERIMENT_MULTIPLIER) % HASH_RANGE
    return mixed * total_weight // HASH_RANGE


def variant_for(*, policy_id: int, experiment_id: int, weights: Sequence[tuple[int, int]]) -> int:
    """The id of the variant a policy gets: `weights` is (variant id, weight) per variant, and
    each variant takes a share of the buckets in proportion to its weight, in variant id order."""
    ordered = sorted(weights)
    chosen = bucket(
        policy_id=policy_id,
        experiment_id=experiment_id,
        total_weight=sum(weight for _, weight in ordered),
    )
    for variant_id, weight in ordered:
        if chosen < weight:
            return variant_id
        chosen -= weight
    raise AssertionError("a bucket is always below the total weight")


@dataclass(frozen=True)
class Assignment:
    """A running experiment's variants, as planning asks for them."""

    experiment_id: int
    weights: tuple[tuple[int, int], ...]

    def variant_for(self, policy_id: int) -> int:
        return variant_for(
            policy_id=policy_id, experiment_id=self.experiment_id, weights=self.weights
        )

    def variant_sql(self, *, policy_id: str) -> str:
        """`variant_for` in PostgreSQL, for the policy id the SQL expression `policy_id` gives:
        BUCKET_SQL, each variant taking the buckets below its running total of weights, in
        variant id order."""
        bucket = BUCKET_SQL.format(
            policy_id=policy_id,
            experiment_id=int(self.experiment_id),
            total_weight=int(sum(weight for _, weight in self.weights)),
        )
        choices, below = [], 0
        for variant_id, weight in sorted(self.weights):
            below += int(weight)
            choices.append(f"WHEN {bucket} < {below} THEN {int(variant_id)}")
        return f"CASE {' '.join(choices)} END"


def running_assignments(rules: Iterable[ReminderRule]) -> dict[int, Assignment]:
    """Per rule id, its running experiment's variants (a rule runs at most one: a constraint).
    One query."""
    rows = TemplateVariant.objects.filter(
        experiment__rule__in=list(rules), experiment__ended_at__isnull=True
    ).values_list("experiment__rule_id", "experiment_id", "id", "weight")
    weights: dict[tuple[int, int], list[tuple[int, int]]] = {}
    for rule_id, experiment_id, variant_id, weight in rows:
        weights.setdefault((rule_id, experiment_id), []).append((variant_id, weight))
    return {
        rule_id: Assignment(experiment_id, tuple(sorted(pairs)))
        for (rule_id, experiment_id), pairs in weights.items()
        if len(pairs) >= 2  # an experiment of one wording is no experiment
    }


def end(experiment: TemplateExperiment) -> bool:
    """End a running experiment: from now its rule's reminders go in the rule's template again.
    Its variants and the reminders sent in them stay. Returns whether it was running."""
    return bool(
        TemplateExperiment.objects.filter(pk=experiment.pk, ended_at__isnull=True).update(
            ended_at=timezone.now()
        )
    )


# --- Results -------------------------------------------------------------------------------


def wilson(successes: int, trials: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (95 % by default): unlike p ± z·se, it stays
    inside [0, 1] and is honest about small counts. No trials: the whole range."""
    if trials == 0:
        return (0.0, 1.0)
    p = successes / trials
    z2 = z * z
    centre = (p + z2 / (2 * trials)) / (1 + z2 / trials)
    half = z / (1 + z2 / trials) * math.sqrt(p * (1 - p) / trials + z2 / (4 * trials * trials))
    return (max(0.0, centre - half), min(1.0, centre + half))


def z_score(successes_a: int, trials_a: int, successes_b: int, trials_b: int) -> float:
    """The two-proportion z statistic (pooled): how many standard errors A's rate is above
    B's. 0 when it cannot be told (no trials, or every or no term renewed in both)."""
    if not trials_a or not trials_b:
        return 0.0
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b))
    if spread == 0:
        return 0.0
    return (successes_a / trials_a - successes_b / trials_b) / spread


@dataclass(frozen=True)
class VariantResult:
    variant_id: int
    label: str
    template_name: str
    weight: int
    delivered: int  # reminders sent in it and delivered
    decided: int  # of the terms they reached: renewed or lapsed by now
    renewed: int  # of those: renewed on or before the expiry

    @property
    def rate(self) -> float | None:
        return self.renewed / self.decided if self.decided else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.renewed, self.decided)


@dataclass(frozen=True)
class ExperimentResult:
    experiment: TemplateExperiment
    variants: list[VariantResult]

    @property
    def leader(self) -> VariantResult | None:
        """The variant with the highest rate, or None when no term is decided yet."""
        measured = [variant for variant in self.variants if variant.decided]
        return max(measured, key=lambda v: (v.rate, v.decided)) if measured else None

    @property
    def significant(self) -> bool:
        """Whether the leader's rate is above every other variant's at 95 %: a two-proportion
        z-test of the leader against each other variant, each |z| at least 1.96. Until then
        the difference may be chance, and the page says so."""
        leader = self.leader
        others = [variant for variant in self.variants if variant is not leader]
        if leader is None or not others or any(not variant.decided for variant in others):
            return False
        return all(
            z_score(leader.renewed, leader.decided, other.renewed, other.decided) >= Z_95
            for other in others
        )

    @property
    def verdict(self) -> str:
        leader = self.leader
        if leader is None:
            return "No result yet: no term reached by its reminders has been renewed or lapsed."
        if self.significant:
            return (
                f"{leader.label} leads: its renewal rate is higher than every other variant's "
                f"at 95 % confidence."
            )
        return (
            f"Not yet significant: {leader.label} has the highest rate so far, but the "
            f"difference could still be chance. Keep the experiment running."
        )


def tally() -> int:
    """Count every experiment's figures per variant and agent, as of now, in place of the last
    count (the daily scan's job). A term a variant reached is a policy's expiry with a reminder
    delivered in the variant's words (not in a digest); it is decided once its outcome is
    recorded (renewed or lapsed), and counts as renewed when it was renewed on or before the
    expiry date. One grouped query on the partial index notification_variant, each outcome
    looked up by its unique key (policy, expiry, kind): a term has at most one reminder of a
    rule (the natural key), so counting reminders counts terms. Ended experiments are counted
    too: their terms keep ending after them. Returns how many rows it wrote."""
    term = {"policy_id": OuterRef("policy_id"), "expiry_date": OuterRef("expiry_date")}
    outcome = PolicyOutcome.objects.filter(**term)
    renewed_in_time = outcome.filter(kind=PolicyOutcome.Kind.RENEWED, days_before_expiry__gte=0)
    now = timezone.now()
    rows = (
        # A reminder that went in a digest went in the digest template's words, not its own.
        Notification.objects.filter(
            variant__isnull=False, delivered_at__isnull=False, digest__isnull=True
        )
        .order_by()
        .values("variant_id", "policy__agent_id")
        .annotate(
            delivered=Count("id"),
            decided=Count("id", filter=Q(Exists(outcome))),
            renewed=Count("id", filter=Q(Exists(renewed_in_time))),
        )
    )
    tallies = [
        ExperimentTally(
            variant_id=row["variant_id"],
            agent_id=row["policy__agent_id"],
            delivered=row["delivered"],
            decided=row["decided"],
            renewed=row["renewed"],
        )
        for row in rows
    ]
    with transaction.atomic():
        # First, so that it locks the experiments: a count running at once (the daily scan,
        # the admin's action) waits here, then replaces these rows instead of colliding.
        TemplateExperiment.objects.update(counted_at=now)
        ExperimentTally.objects.all().delete()
        ExperimentTally.objects.bulk_create(tallies)
    return len(tallies)


def results(
    experiments: Iterable[TemplateExperiment], *, agent: Agent | None = None
) -> list[ExperimentResult]:
    """Each experiment's figures per variant as last counted (`tally`), in `agent`'s book, or
    in every book (None). A few rows per variant, by the tally's unique index."""
    experiments = list(experiments)
    variants = list(
        TemplateVariant.objects.filter(experiment__in=experiments).select_related("template")
    )
    tallies = ExperimentTally.objects.filter(variant__in=variants)
    if agent is not None:
        tallies = tallies.filter(agent=agent)
    counts = {
        row["variant_id"]: row
        for row in tallies.order_by()
        .values("variant_id")
        .annotate(
            delivered=Sum("delivered"),
            decided=Sum("decided"),
            renewed=Sum("renewed"),
        )
    }
    by_experiment: dict[int, list[VariantResult]] = {}
    for variant in variants:
        row = counts.get(variant.pk, {})
        by_experiment.setdefault(variant.experiment_id, []).append(
            VariantResult(
                variant_id=variant.pk,
                label=variant.label,
                template_name=variant.template.name,
                weight=variant.weight,
                delivered=row.get("delivered", 0),
                decided=row.get("decided", 0),
                renewed=row.get("renewed", 0),
            )
        )
    return [
        ExperimentResult(experiment, by_experiment.get(experiment.pk, []))
        for experiment in experiments
    ]
