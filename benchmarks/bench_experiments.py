"""Benchmark: the experiments page with 1,000,000 policies and 5,000,000 notifications. Seeds
(COPY) 20 agents' books, five reminders a policy (email 60, 30, 14 and 7 days, SMS 7), a year
of expiries around today, and a running experiment on the 14-day email rule that every policy's
14-day email took part in (the worst case: a year-long experiment, 1,000,000 variant reminders);
terms already expired are renewed (70 %) or lapsed. Then it times the page through Django's
test Client for a manager (every book) and for one agent (a twentieth), median and p95, after
timing the daily scan's count (notifications.experiments.tally) that the page reads, and prints
the count's query plan. Run with `make bench-experiments`; it makes and drops its own
database."""

import argparse
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "renewly-bench-only-not-a-secret")

import django

django.setup()

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext, setup_test_environment
from django.urls import reverse
from django.utils import timezone

from benchmarks.bench_workspace import p95, timed
from benchmarks.seeding import copy_customers, copy_rows, make_agents
from notifications import experiments
from notifications.models import (
    MessageTemplate,
    Notification,
    PolicyOutcome,
    ReminderRule,
    ReminderRun,
    TemplateExperiment,
    TemplateVariant,
)
from policies.models import Agent, Policy

TODAY = timezone.localdate()
REMINDERS = (("email", 60), ("email", 30), ("email", 14), ("email", 7), ("sms", 7))
AGENTS = 20


def seed(policies: int) -> TemplateExperiment:
    agents = make_agents(AGENTS)
    rules = {
        (rule.channel, rule.lead_days): rule
        for rule in ReminderRule.objects.filter(product_line="")
    }
    missing = [key for key in REMINDERS if key not in rules]
    assert not missing, f"the default rules lack {missing}"
    rule = rules["email", 14]
    other = MessageTemplate.objects.create(
        name="bench variant B",
        channel="email",
        subject=rule.template.subject,
        body=rule.template.body,
    )
    experiment = TemplateExperiment.objects.create(
        rule=rule, name="Bench", started_at=timezone.now() - timedelta(days=400)
    )
    variants = [
        TemplateVariant.objects.create(
            experiment=experiment, label=label, template=template, weight=1
        )
        for label, template in (("A", rule.template), ("B", other))
    ]
    assignment = experiments.Assignment(
        experiment.pk, tuple((variant.pk, variant.weight) for variant in variants)
    )
    run = ReminderRun.objects.create(run_date=TODAY, finished_at=timezone.now())
    now = timezone.now()
    copy_customers(policies)

    def expiry_of(policy_id: int):
        return TODAY + timedelta(days=policy_id % 730 - 365)

    copy_rows(
        Policy,
        (
            {
                "id": n,
                "policy_number": f"E-{n:08d}",
                "product_line": "auto",
                "customer_id": n,
                "agent_id": agents[n % AGENTS],
                "start_date": expiry_of(n) - timedelta(days=365),
                "expiry_date": expiry_of(n),
            }
            for n in range(1, policies + 1)
        ),
    )

    def notifications():
        pk = 0
        for n in range(1, policies + 1):
            expiry = expiry_of(n)
            for channel, lead_days in REMINDERS:
                pk += 1
                due_on = expiry - timedelta(days=lead_days)
                done = due_on <= TODAY
                yield {
                    "id": pk,
                    "policy_id": n,
                    "customer_id": n,
                    "rule_id": rules[channel, lead_days].pk,
                    "run_id": run.pk,
                    "channel": channel,
                    "expiry_date": expiry,
                    "lead_days": lead_days,
                    "due_on": due_on,
                    "status": "delivered" if done else "planned",
                    "sent_at": now if done else None,
                    "delivered_at": now if done else None,
                    "variant_id": assignment.variant_for(n)
                    if (channel, lead_days)
                    == (
                        "email",
                        14,
                    )
                    else None,
                }

    copy_rows(Notification, notifications())
    copy_rows(
        PolicyOutcome,
        (
            {
                "id": n,
                "policy_id": n,
                "kind": "renewed" if n % 10 < 7 else "lapsed",
                "source": "import",
                "expiry_date": expiry_of(n),
                "new_expiry_date": expiry_of(n) + timedelta(days=365) if n % 10 < 7 else None,
                "occurred_at": now,
                "days_before_expiry": n % 23 - 3 if n % 10 < 7 else -1,
            }
            for n in range(1, policies + 1)
            if expiry_of(n) < TODAY
        ),
    )
    with connection.cursor() as cursor:  # as autovacuum leaves it: index-only scans possible
        for model in (Notification, PolicyOutcome):
            cursor.execute(f"VACUUM ANALYZE {model._meta.db_table}")
    return experiment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policies", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--smoke", action="store_true", help="a few thousand rows, seconds")
    args = parser.parse_args()
    if args.smoke:
        args.policies, args.runs = 2000, 2
    if connection.vendor != "postgresql":
        sys.exit("bench_experiments needs PostgreSQL: set DATABASE_URL.")
    setup_test_environment()
    connection.settings_dict["TEST"]["NAME"] = connection.settings_dict["NAME"] + "_experiments"
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        started = time.perf_counter()
        experiment = seed(args.policies)
        in_it = Notification.objects.filter(variant__isnull=False).count()
        print(
            f"seeded {Policy.objects.count():,} policies, {Notification.objects.count():,} "
            f"notifications ({in_it:,} in the experiment), "
            f"{PolicyOutcome.objects.count():,} outcomes in {time.perf_counter() - started:.1f} s"
        )
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            experiments.tally()
            print(f"the daily scan's count (tally): {time.perf_counter() - started:.2f} s")
        # Read now: each request of the test Client empties the connection's query log.
        grouped = next(query["sql"] for query in queries if "GROUP BY" in query["sql"])
        manager = get_user_model().objects.create_user("manager", is_staff=True)
        manager.user_permissions.add(Permission.objects.get(codename="view_all_books"))
        agent = Agent.objects.select_related("user").order_by("pk").first()
        url = reverse("workspace:experiments")
        print(f"{'page':<34} {'median':>9} {'p95':>9} {'runs':>5} {'bytes':>10}")
        users = [("experiments: manager (all)", manager), ("experiments: agent", agent.user)]
        for label, user in users:
            client = Client()
            client.force_login(user)
            client.get(url)  # warm the connection and the template cache
            seconds = timed(client, url, args.runs)
            print(
                f"{label:<34} {statistics.median(seconds) * 1000:7.1f}ms "
                f"{p95(seconds) * 1000:7.1f}ms {len(seconds):>5} {timed.last_size:>10,}"
            )
        for variant in experiments.results([experiment])[0].variants:
            print(
                f"variant {variant.label}: {variant.delivered:,} delivered, {variant.decided:,} "
                f"decided, {variant.renewed:,} renewed before expiry"
            )
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {grouped}")
            print("\n".join(line for (line,) in cursor.fetchall()))
    finally:
        if not args.keep:
            connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
