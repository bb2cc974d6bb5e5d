"""Benchmark: the daily scan's planning on PostgreSQL, the set-based planner (new) beside the
Python planner SQLite runs (old), on the same data in the same run. Seeds N policies (COPY) with
expiries spread over a year and 4 lead times x 2 channels, then times plan_due for one day: a
steady day (yesterday's scan finished) and, at the largest size unless --steady-only, a first
scan that catches up the whole window. Each scan runs the old planner, then, on the same state
(its rows truncated), the new one; both must plan the same (policy, rule, channel, status) rows.
Run with `make bench-planning`; it creates and drops its own database."""

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

from benchmarks.seeding import copy_customers, copy_rows, make_agents, replace_rules
from notifications.models import Notification, ReminderRun
from notifications.planning import plan_due
from policies.models import Customer, Policy

RUN_DATE = date(2026, 6, 1)
LEAD_DAYS = (60, 30, 14, 7)
POLICIES_PER_CUSTOMER = 2
PLANNERS = {"old (Python)": False, "new (set-based)": True}


def truncate(*models) -> None:
    with connection.cursor() as cursor:
        for model in models:
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


def scan(*, steady: bool, set_based: bool) -> tuple[float, ReminderRun, set[tuple]]:
    """One planner's scan of RUN_DATE from no reminders at all: its seconds, its run, and the
    (policy, rule, channel, status) of each row it wrote."""
    truncate(Notification, ReminderRun)
    if steady:  # yesterday's scan finished after the policies were loaded
        ReminderRun.objects.create(
            run_date=RUN_DATE - timedelta(days=1), finished_at=timezone.now()
        )
    started = time.perf_counter()
    if os.environ.get("PROFILE"):
        import cProfile

        profile = f"var/bench_planning_{'sql' if set_based else 'python'}.prof"
        cProfile.runctx(
            "plan_due(run_date=RUN_DATE, set_based=set_based)", globals(), locals(), profile
        )
        run = ReminderRun.objects.order_by("-pk").first()
    else:
        run = plan_due(run_date=RUN_DATE, set_based=set_based)
    seconds = time.perf_counter() - started
    assert run.planned, "the scan planned nothing: the seeding no longer matches the rules"
    rows = set(run.notifications.values_list("policy_id", "rule_id", "channel", "status"))
    return seconds, run, rows


def compare(label: str, policies: int, *, steady: bool) -> None:
    """Both planners' scan, side by side; the new one's rows stay for the next check."""
    timed = {name: scan(steady=steady, set_based=set_based) for name, set_based in PLANNERS.items()}
    (old_seconds, old_run, old_rows), (new_seconds, new_run, new_rows) = timed.values()
    # A benchmark whose planners disagree measured a bug.
    assert new_rows == old_rows, (
        f"the planners differ: {len(old_rows - new_rows)} rows only old, "
        f"{len(new_rows - old_rows)} only new"
    )
    assert (new_run.planned, new_run.skipped) == (old_run.planned, old_run.skipped)
    reminders = new_run.planned + new_run.skipped
    print(
        f"{label:<31} {policies:>9,} policies {new_run.planned:>8,} planned "
        f"{new_run.skipped:>8,} skipped | old {old_seconds:6.2f} s | new {new_seconds:6.2f} s "
        f"{reminders / new_seconds:9,.0f} reminders/s | {old_seconds / new_seconds:5.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", default="1000000,200000", help="comma-separated policy counts")
    parser.add_argument("--steady-only", action="store_true", help="no first scan ever")
    parser.add_argument("--smoke", action="store_true", help="a few thousand policies, seconds")
    args = parser.parse_args()
    if args.smoke:
        args.sizes = "4000,2000"
    if connection.vendor != "postgresql":
        sys.exit("bench_planning needs PostgreSQL: set DATABASE_URL (make bench-planning does).")
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        agent_ids = make_agents(50)
        replace_rules(LEAD_DAYS)
        sizes = [int(size) for size in args.sizes.split(",")]
        print(
            f"Planning one day ({RUN_DATE}), {len(LEAD_DAYS)} lead times x 2 channels, "
            f"PostgreSQL: old (the Python planner) vs new (set-based), same data, same run"
        )
        for size in sizes:
            truncate(Notification, ReminderRun, Policy, Customer)
            started = time.perf_counter()
            seed(size, agent_ids)
            print(f"seeded {size:,} policies in {time.perf_counter() - started:.1f} s")
            compare("steady day (yesterday ran)", size, steady=True)
            again = plan_due(run_date=RUN_DATE)
            # A benchmark that planned anything twice measured a bug.
            assert again.planned == 0, f"the same day's second scan planned {again.planned}"
            if size == max(sizes) and not args.steady_only:
                compare("first scan ever (whole window)", size, steady=False)
    finally:
        connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
