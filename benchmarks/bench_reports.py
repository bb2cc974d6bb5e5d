"""Benchmark: the pages that show what reminders achieved (issue 15), on a large book. Seeds
(COPY, through benchmarks/seeding.py) 1,000,000 policies of 20 agents, 5 reminders each
(5,000,000 notifications) and the outcomes of their terms over two years (renewed before or
after the expiry, lapsed, lapsed and renewed late), and a running template experiment that
every term's 14-day email took part in; vacuums; times the daily scan's counts (the retention
figures, notifications.retention: a first refresh of every day, then a daily one; the
experiment's, notifications.experiments.tally); and times each page through Django's test
Client, as an agent (one book, 1/20 of it) and as a manager (every book): median and p95 of
--runs runs. Also times a live GROUP BY over the outcomes, what the daily counts replace.
Run with `make bench-reports`; it creates and drops its own database.

Pages other work adds take one line in `pages()` (label, URL, "agent" or "manager"), and their
rows one function in SEEDERS (called with the Seeded context after the book is seeded)."""

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "renewly-bench-only-not-a-secret")

import django

django.setup()

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.db import connection
from django.db.models import Count, Q
from django.test import Client
from django.test.utils import setup_test_environment
from django.urls import reverse
from django.utils import timezone

from benchmarks.bench_workspace import p95, timed
from benchmarks.seeding import assign_variants, copy_outcome_book, make_agents
from notifications import experiments, retention
from notifications.models import (
    ExperimentTally,
    MessageTemplate,
    Notification,
    PolicyOutcome,
    ReminderRule,
    RetentionDay,
    TemplateExperiment,
    TemplateVariant,
)
from policies.models import Agent, Policy
from workspace.selectors import RETENTION_PERIODS

AGENTS = 20
REMINDERS_PER_POLICY = 5  # seeding.BOOK_TOUCHES
# The experiment's wordings, (label, weight): A is its rule's own template.
VARIANTS = (("A", 2), ("B", 1), ("C", 1))


@dataclass(frozen=True)
class Seeded:
    today: date
    agent: Agent  # the measured agent: 1/AGENTS of the book
    manager: object  # a user who sees every book


def seed_book(*, policies: int) -> Seeded:
    today = timezone.localdate()
    agent_ids = make_agents(AGENTS)
    written = copy_outcome_book(policies, agent_ids=agent_ids, today=today)
    print("seeded " + ", ".join(f"{count:,} {name}" for name, count in written.items()))
    manager = get_user_model().objects.create_user("bench-manager", "manager@agency.example")
    manager.user_permissions.add(Permission.objects.get(codename="view_all_books"))
    return Seeded(today, Agent.objects.select_related("user").get(pk=agent_ids[0]), manager)


def seeded_before() -> Seeded:
    """The Seeded context of a database an earlier run kept."""
    agent = Agent.objects.select_related("user").get(user__username="agent0")
    manager = get_user_model().objects.get(username="bench-manager")
    return Seeded(timezone.localdate(), agent, manager)


def seed_experiment(seeded: Seeded) -> None:
    """A running experiment on the book's 14-day email rule that every term's 14-day email
    took part in: two years of them, the worst case for the daily count and the page."""
    rule = ReminderRule.objects.select_related("template").get(channel="email", lead_days=14)
    # Started before the book's first reminder (seeding.book_term: two years of expiries).
    experiment = TemplateExperiment.objects.create(
        rule=rule, name="Bench", started_at=timezone.now() - timedelta(days=800)
    )
    for label, weight in VARIANTS:
        template = (
            rule.template
            if label == "A"
            else MessageTemplate.objects.create(
                name=f"bench variant {label}",
                channel=rule.channel,
                subject=rule.template.subject,
                body=rule.template.body,
            )
        )
        TemplateVariant.objects.create(
            experiment=experiment, label=label, template=template, weight=weight
        )
    assignment = experiments.running_assignments([rule])[rule.pk]
    updated = assign_variants(assignment, rule_id=rule.pk)
    print(f"experiment: {updated:,} reminders in {len(VARIANTS)} variants")
    # The SQL form must choose as planning does: a sample checked against variant_for.
    sample = Notification.objects.filter(rule=rule).order_by("pk")[:1000]
    wrong = [
        reminder.pk
        for reminder in sample.only("policy_id", "variant_id")
        if reminder.variant_id != assignment.variant_for(reminder.policy_id)
    ]
    if wrong:
        sys.exit(f"reminders {wrong[:10]} are not in their policy's variant")


# The rows of pages beyond the book's: each gets the Seeded context once the book is seeded.
SEEDERS: list[Callable[[Seeded], None]] = [seed_experiment]


def pages(seeded: Seeded) -> list[tuple[str, str, str]]:
    """(label, URL, who asks: "agent" or "manager") of each page to time."""
    dashboard = reverse("workspace:dashboard")
    return [
        *(
            (f"dashboard, {who}, {days} days", f"{dashboard}?period={days}", who)
            for days in RETENTION_PERIODS
            for who in ("agent", "manager")
        ),
        ("needs a call, agent", reverse("workspace:calls"), "agent"),
        ("needs a call, manager", reverse("workspace:calls"), "manager"),
        ("experiments, agent", reverse("workspace:experiments"), "agent"),
        ("experiments, manager", reverse("workspace:experiments"), "manager"),
    ]


def count_figures() -> None:
    """The daily scan's counts that the pages read."""
    started = time.perf_counter()
    days = retention.refresh()
    print(f"first refresh: {days:,} expiry days counted in {time.perf_counter() - started:.1f} s")
    # A day later: the outcomes of the last day, and the overlap's (retention.REFRESH_OVERLAP).
    RetentionDay.objects.update(computed_at=timezone.now() - timedelta(days=1))
    started = time.perf_counter()
    days = retention.refresh()
    print(f"daily refresh: {days:,} expiry days counted in {time.perf_counter() - started:.1f} s")
    print(f"{RetentionDay.objects.count():,} daily count rows")
    started = time.perf_counter()
    rows = experiments.tally()
    print(f"experiments tally: {rows:,} rows counted in {time.perf_counter() - started:.1f} s")
    for variant in experiments.results(TemplateExperiment.objects.all())[0].variants:
        print(
            f"variant {variant.label}: {variant.delivered:,} delivered, {variant.decided:,} "
            f"decided, {variant.renewed:,} renewed before expiry"
        )


BOOK = (Policy, Notification, PolicyOutcome)
COUNTS = (RetentionDay, ExperimentTally)


def settle(*models) -> None:
    """VACUUM ANALYZE these tables, as autovacuum would have on a book this old: an index-only
    scan reads the heap for every row of a table never vacuumed (the visibility map)."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for model in models:
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    names = ", ".join(model.__name__ for model in models)
    print(f"vacuumed {names} in {time.perf_counter() - started:.1f} s")


def live_group_by(start: date, end: date) -> None:
    """What the daily counts replace: one dimension, straight from the outcomes."""
    list(
        PolicyOutcome.objects.filter(expiry_date__range=(start, end))
        .values_list("product_line")
        .annotate(
            terms=Count("id"),
            renewed=Count("id", filter=Q(kind="renewed", days_before_expiry__gte=0)),
        )
        .order_by()
    )


def report(label: str, seconds: list[float], size: int | str = "") -> float:
    worst = p95(seconds)
    size = f"{size:,}" if isinstance(size, int) else size
    print(
        f"{label:<40} {statistics.median(seconds) * 1000:7.1f}ms "
        f"{worst * 1000:7.1f}ms {len(seconds):>5} {size:>10}"
    )
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policies", type=int, default=1_000_000, help="5 reminders each")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument(
        "--fail-over-ms", type=float, default=0, help="exit 1 if a page's p95 is over this"
    )
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument(
        "--reuse", action="store_true", help="time again a database --keep kept (migrated first)"
    )
    parser.add_argument("--smoke", action="store_true", help="a few thousand rows, seconds")
    args = parser.parse_args()
    if args.smoke:
        args.policies, args.runs = 2_000, 2
    if connection.vendor != "postgresql":
        sys.exit("bench_reports needs PostgreSQL: set DATABASE_URL (make bench-reports does).")
    setup_test_environment()  # the test Client's host, "testserver", is allowed
    # A database of its own: other benchmarks may be running on the same server.
    connection.settings_dict["TEST"]["NAME"] = connection.settings_dict["NAME"] + "_reports"
    if args.reuse:
        args.keep = True
        connection.settings_dict["NAME"] = connection.settings_dict["TEST"]["NAME"]
        call_command("migrate", verbosity=0)
        seeded = seeded_before()
    else:
        connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        if not args.reuse:
            started = time.perf_counter()
            seeded = seed_book(policies=args.policies)
            for seeder in SEEDERS:
                seeder(seeded)
            print(f"seeding took {time.perf_counter() - started:.1f} s")
            settle(*BOOK)  # the counts too read the book as autovacuum leaves it
            count_figures()
            settle(*COUNTS)
        else:
            settle(*BOOK, *COUNTS)
        clients = {"agent": Client(), "manager": Client()}
        clients["agent"].force_login(seeded.agent.user)
        clients["manager"].force_login(seeded.manager)
        for client in clients.values():
            client.get(reverse("workspace:dashboard"))  # warm the connection and templates
        print(f"{'page':<40} {'median':>9} {'p95':>9} {'runs':>5} {'bytes':>10}")
        over = []
        for label, url, who in pages(seeded):
            worst = report(label, timed(clients[who], url, args.runs), timed.last_size)
            if args.fail_over_ms and worst * 1000 > args.fail_over_ms:
                over.append(label)
        yesterday = seeded.today - timedelta(days=1)
        for days in RETENTION_PERIODS:
            start, end = retention.period_ending(yesterday, days=days)
            runs = []
            for _ in range(args.runs):
                begun = time.perf_counter()
                retention.figures(start=start, end=end)
                runs.append(time.perf_counter() - begun)
            report(f"figures alone, manager, {days} days", runs)
        start, end = retention.period_ending(yesterday, days=RETENTION_PERIODS[-1])
        runs = []
        for _ in range(max(3, args.runs // 4)):
            begun = time.perf_counter()
            live_group_by(start, end)
            runs.append(time.perf_counter() - begun)
        report(f"live GROUP BY, 1 dimension, {RETENTION_PERIODS[-1]} days", runs)
        if over:
            sys.exit(f"p95 over {args.fail_over_ms:g} ms: {', '.join(over)}")
    finally:
        if not args.keep:
            connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
