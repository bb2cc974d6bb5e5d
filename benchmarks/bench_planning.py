"""Benchmark: the daily scan's planning on PostgreSQL. Seeds N policies (COPY) with expiries
spread over a year and 4 lead times x 2 channels, then times plan_due for one day: a steady day
(yesterday's scan finished) and, at the largest size, a first scan that catches up the whole
window. Run with `make bench-planning`; it creates and drops its own database."""

import argparse
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.db import connection
from django.utils import timezone

from benchmarks.seeding import copy_customers, copy_rows
from notifications.models import MessageTemplate, Notification, ReminderRule, ReminderRun
from policies.models import Agent, Customer, Policy
from policies.services import ensure_agent

RUN_DATE = date(2026, 6, 1)
LEAD_DAYS = (60, 30, 14, 7)
POLICIES_PER_CUSTOMER = 2


def reset() -> None:
    with connection.cursor() as cursor:
        for model in (Notification, ReminderRun, Policy, Customer):
            cursor.execute(f"TRUNCATE {model._meta.db_table} RESTART IDENTITY CASCADE")


def seed(policies: int, agent_ids: list[int]) -> None:
    customers = policies // POLICIES_PER_CUSTOMER
    copy_customers(customers)
    first_expiry = RUN_DATE - timedelta(days=30)
    copy_rows(
        Policy,
        (
            {
                "id": n,
                "policy_number": f"B-{n:08d}",
                "product_line": ("auto", "home", "life", "travel")[n % 4],
                "customer_id": (n - 1) % customers + 1,
                "agent_id": agent_ids[n % len(agent_ids)],
                "start_date": expiry - timedelta(days=365),
                "expiry_date": expiry,
            }
            for n in range(1, policies + 1)
            for expiry in [first_expiry + timedelta(days=n % 365)]
        ),
    )


def scan(label: str, policies: int, *, steady: bool) -> None:
    Notification.objects.all().delete()
    ReminderRun.objects.all().delete()
    if steady:  # yesterday's scan finished after the policies were loaded
        ReminderRun.objects.create(
            run_date=RUN_DATE - timedelta(days=1), finished_at=timezone.now()
        )
    started = time.perf_counter()
    if os.environ.get("PROFILE"):
        import cProfile

        cProfile.runctx("_plan()", globals(), {}, "var/bench_planning.prof")
        run = ReminderRun.objects.order_by("-pk").first()
    else:
        run = ReminderRun.objects.get(pk=_plan())
    seconds = time.perf_counter() - started
    reminders = run.planned + run.skipped
    assert run.planned, "the scan planned nothing: the seeding no longer matches the rules"
    print(
        f"{label:<34} {policies:>9,} policies {run.planned:>8,} planned {run.skipped:>8,} skipped "
        f"{seconds:7.2f} s {reminders / seconds:9,.0f} reminders/s"
    )


def _plan() -> int:
    from notifications.planning import plan_due

    return plan_due(run_date=RUN_DATE).pk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,200000", help="comma-separated policy counts")
    parser.add_argument("--smoke", action="store_true", help="a few thousand policies, seconds")
    args = parser.parse_args()
    if args.smoke:
        args.sizes = "4000,2000"
    if connection.vendor != "postgresql":
        sys.exit("bench_planning needs PostgreSQL: set DATABASE_URL (make bench-planning does).")
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        agent_ids = [
            ensure_agent(username=f"agent{n}", email=f"agent{n}@agency.example").pk
            for n in range(50)
        ]
        ReminderRule.objects.all().delete()
        for channel in ("email", "sms"):
            template = MessageTemplate.objects.filter(channel=channel, kind="reminder").first()
            for lead in LEAD_DAYS:
                ReminderRule.objects.create(lead_days=lead, channel=channel, template=template)
        sizes = [int(size) for size in args.sizes.split(",")]
        print(
            f"Planning one day ({RUN_DATE}), {len(LEAD_DAYS)} lead times x 2 channels, PostgreSQL"
        )
        for size in sizes:
            reset()
            started = time.perf_counter()
            seed(size, agent_ids)
            print(f"seeded {size:,} policies in {time.perf_counter() - started:.1f} s")
            scan("steady day (yesterday ran)", size, steady=True)
            again = ReminderRun.objects.get(pk=_plan())
            # A benchmark that planned anything twice measured a bug.
            assert again.planned == 0, f"the same day's second scan planned {again.planned}"
            if size == max(sizes) and not os.environ.get("PROFILE"):
                scan("first scan ever (whole window)", size, steady=False)
        assert Agent.objects.count() == 50
    finally:
        connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
