"""Benchmark: the agents' workspace with 100,000 notifications in one agent's book. Seeds (COPY)
25,000 policies x 4 reminders for the agent, plus another agent's smaller book so that scoping
has rows to leave out, then times each page through Django's test Client: median and p95 of
several runs. Run with `make bench-workspace`; it creates and drops its own database."""

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
from django.db import connection
from django.test import Client
from django.test.utils import setup_test_environment
from django.urls import reverse
from django.utils import timezone

from benchmarks.seeding import copy_customers, copy_rows
from notifications.models import DeliveryEvent, Notification, ReminderRule, ReminderRun
from policies.models import Policy
from policies.services import ensure_agent

TODAY = timezone.localdate()
# (channel, lead days) of each policy's four reminders.
REMINDERS = (("email", 30), ("email", 14), ("sms", 14), ("sms", 7))
PRODUCT_LINES = ("auto", "home", "life", "travel")
# What became of a reminder already due, by its number modulo 20.
FAILURE = "Twilio error 30003: unreachable"
DONE_STATUSES = ("delivered",) * 14 + ("sent",) * 3 + ("failed", "bounced", "cancelled")


def seed(*, policies_per_agent: list[int]) -> tuple[int, int]:
    """Seed each agent's book; returns (the measured agent's user id, a policy of theirs)."""
    agents = [
        ensure_agent(username=f"bench{n}", email=f"bench{n}@agency.example")
        for n in range(len(policies_per_agent))
    ]
    rule_ids = {
        (rule.channel, rule.lead_days): rule.pk
        for rule in ReminderRule.objects.filter(product_line="")
    }
    missing = [key for key in REMINDERS if key not in rule_ids]
    assert not missing, f"the default rules lack {missing}"
    run = ReminderRun.objects.create(run_date=TODAY, finished_at=timezone.now())
    customers = sum(policies_per_agent)
    copy_customers(customers)
    policy_rows, notification_rows, event_rows = [], [], []
    for agent, count in zip(agents, policies_per_agent, strict=True):
        for _ in range(count):
            policy_id = len(policy_rows) + 1
            # Expiries from 60 days ago to 300 days ahead: most reminders are still to go.
            expiry = TODAY + timedelta(days=policy_id % 360 - 60)
            policy_rows.append(
                {
                    "id": policy_id,
                    "policy_number": f"W-{policy_id:08d}",
                    "product_line": PRODUCT_LINES[policy_id % 4],
                    "customer_id": policy_id,
                    "agent_id": agent.pk,
                    "start_date": expiry - timedelta(days=365),
                    "expiry_date": expiry,
                }
            )
            for channel, lead_days in REMINDERS:
                notification_id = len(notification_rows) + 1
                due_on = expiry - timedelta(days=lead_days)
                if due_on > TODAY:
                    status = "deferred" if notification_id % 50 == 0 else "planned"
                else:
                    status = DONE_STATUSES[notification_id % len(DONE_STATUSES)]
                notification_rows.append(
                    {
                        "id": notification_id,
                        "policy_id": policy_id,
                        "customer_id": policy_id,
                        "rule_id": rule_ids[channel, lead_days],
                        "run_id": run.pk,
                        "channel": channel,
                        "expiry_date": expiry,
                        "lead_days": lead_days,
                        "due_on": due_on,
                        "status": status,
                        "attempts": 1,
                        "last_error": FAILURE if status == "failed" else "",
                        "provider_message_id": f"msg-{notification_id}",
                    }
                )
                if status in ("sent", "delivered", "failed", "bounced"):
                    event_id = len(event_rows) + 1
                    event_rows.append(
                        {
                            "id": event_id,
                            "notification_id": notification_id,
                            "provider": "bench",
                            "event_type": status,
                            "provider_event_id": f"e{event_id}",
                            "provider_message_id": f"msg-{notification_id}",
                            "occurred_at": timezone.now(),
                        }
                    )
    copy_rows(Policy, policy_rows)
    copy_rows(Notification, notification_rows)
    copy_rows(DeliveryEvent, event_rows)
    return agents[0].user_id, 1


def timed(client: Client, url: str, runs: int) -> list[float]:
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        response = client.get(url)
        body = b"".join(response.streaming_content) if response.streaming else response.content
        seconds.append(time.perf_counter() - started)
        assert response.status_code == 200, (url, response.status_code)
    timed.last_size = len(body)
    return seconds


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--policies", type=int, default=25_000, help="the measured agent's")
    parser.add_argument("--other-policies", type=int, default=5_000, help="another agent's")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--export-runs", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--smoke", action="store_true", help="a few thousand rows, seconds")
    args = parser.parse_args()
    if args.smoke:
        args.policies, args.other_policies, args.runs, args.export_runs = 600, 150, 2, 1
    if connection.vendor != "postgresql":
        sys.exit("bench_workspace needs PostgreSQL: set DATABASE_URL (make bench-workspace does).")
    setup_test_environment()  # the test Client's host, "testserver", is allowed
    # A database of its own: other benchmarks may be running on the same server.
    connection.settings_dict["TEST"]["NAME"] = connection.settings_dict["NAME"] + "_workspace"
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        started = time.perf_counter()
        user_id, policy_id = seed(policies_per_agent=[args.policies, args.other_policies])
        book = Notification.objects.filter(policy__agent__user_id=user_id)
        pending = book.filter(status__in=["planned", "queued", "sending", "deferred", "failed"])
        print(
            f"seeded {book.count():,} notifications ({pending.count():,} pending) in one "
            f"agent's book, {Notification.objects.count():,} in all, "
            f"in {time.perf_counter() - started:.1f} s"
        )
        client = Client()
        client.force_login(get_user_model().objects.get(pk=user_id))
        notices = reverse("workspace:notices")
        deep = pending.order_by("due_on", "id")[pending.count() - 100]
        pages = [
            ("notices: first page", notices),
            ("notices: deep page (keyset)", f"{notices}?after={deep.due_on.isoformat()}.{deep.pk}"),
            (
                "notices: filtered",
                f"{notices}?channel=sms&status=deferred&product_line=home"
                f"&due_from={TODAY.isoformat()}&due_to={(TODAY + timedelta(days=180)).isoformat()}",
            ),
            ("notices: search policy number", f"{notices}?q=W-00012"),
            ("notices: search customer name", f"{notices}?q=Customer+2345"),
            ("upcoming expiries", reverse("workspace:expiries")),
            ("policy page (timeline)", reverse("workspace:policy", args=[policy_id])),
            ("dashboard", reverse("workspace:dashboard")),
            ("needs a call", reverse("workspace:calls")),
        ]
        client.get(notices)  # warm the connection and the template cache
        print(f"{'page':<34} {'median':>9} {'p95':>9} {'runs':>5} {'bytes':>10}")
        for label, url in pages:
            seconds = timed(client, url, args.runs)
            print(
                f"{label:<34} {statistics.median(seconds) * 1000:7.1f}ms "
                f"{p95(seconds) * 1000:7.1f}ms {len(seconds):>5} {timed.last_size:>10,}"
            )
        for label, url in [
            ("CSV export: every pending notice", reverse("workspace:notices-csv")),
            (
                "CSV export: filtered (sms, home)",
                reverse("workspace:notices-csv") + "?channel=sms&product_line=home",
            ),
        ]:
            seconds = timed(client, url, args.export_runs)
            print(
                f"{label:<34} {statistics.median(seconds) * 1000:7.1f}ms "
                f"{p95(seconds) * 1000:7.1f}ms {len(seconds):>5} {timed.last_size:>10,}"
            )
    finally:
        if not args.keep:
            connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
