"""The two planners plan the same rows: PostgreSQL's set-based INSERT ... SELECT and the Python
planner SQLite runs, on a random book that meets every rule planning honours (catch-up, changed
policies, declined terms, reach, product-line rules, WhatsApp's stand-ins, experiments)."""

import random
from datetime import date, timedelta

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from notifications import planning
from notifications.models import Channel, Notification, ReminderRule
from policies.models import Customer, Policy
from tests.factories import make_agent, make_experiment, template_for

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(
        connection.vendor != "postgresql", reason="the set-based planner is PostgreSQL's"
    ),
]

RUN = date(2026, 6, 15)
EMAIL, SMS, WHATSAPP = Channel.EMAIL, Channel.SMS, Channel.WHATSAPP
PRODUCT_LINES = ("auto", "home", "life", "travel", "")


@pytest.fixture
def every_kind_of_rule(rules) -> None:
    """All-products rules on each channel, product-line rules that replace some of them or add
    a lead time, WhatsApp rules whose fallbacks stand in on SMS and on email, an inactive rule,
    and two running experiments (one on a WhatsApp rule that stands in)."""
    for lead in (60, 30, 14, 7):
        rules(lead, EMAIL)
    for lead in (14, 7, 1):
        rules(lead, SMS)
    rules(7, EMAIL, "home", template=template_for(EMAIL, "home insurance"))
    rules(30, SMS, "life")
    rules(3, EMAIL, active=False)
    rules(18, EMAIL, active=False)  # switched on after the previous scan
    stands_in_on_sms = rules(10, WHATSAPP)
    stands_in_on_email = rules(14, WHATSAPP, "travel")
    for rule, fallback in ((stands_in_on_sms, SMS), (stands_in_on_email, EMAIL)):
        rule.fallback_template = template_for(fallback)
        rule.save()
    make_experiment(
        ReminderRule.objects.get(lead_days=14, channel=EMAIL),
        template_for(EMAIL, "plain"),
        template_for(EMAIL, "warm"),
        weights=(1, 3),
    )
    make_experiment(
        stands_in_on_sms, template_for(WHATSAPP, "short"), template_for(WHATSAPP, "long")
    )


def random_book(seed: int, size: int = 400) -> list[int]:
    """`size` policies of random customers (any reach), product lines, statuses and expiries
    from a week before RUN to ten weeks after, some declined; returns the ids of a random third
    of them, to change after the previous scan."""
    chance = random.Random(seed)
    agent = make_agent()
    phone = "+14155550123"
    customers = Customer.objects.bulk_create(
        Customer(
            name=f"Customer {n}",
            email=chance.choice([f"c{n}@mail.example", ""]),
            email_consent=chance.random() < 0.8,
            email_undeliverable=chance.random() < 0.2,
            sms_consent=chance.random() < 0.7,
            whatsapp_consent=chance.random() < 0.5,
            phone=chance.choice([phone, phone, ""]),
            wrong_phone=chance.choice(["", "", phone]),
            timezone="UTC",
        )
        for n in range(size // 2)
    )
    policies = []
    for n in range(size):
        expiry = RUN + timedelta(days=chance.randint(-7, 70))
        policies.append(
            Policy(
                policy_number=f"P-{n}",
                product_line=chance.choice(PRODUCT_LINES),
                customer=chance.choice(customers),
                agent=agent,
                start_date=expiry - timedelta(days=365),
                expiry_date=expiry,
                status=chance.choice([Policy.Status.ACTIVE] * 8 + [Policy.Status.CANCELLED]),
                renewal_declined_for=chance.choice([None] * 8 + [expiry, RUN]),
            )
        )
    Policy.objects.bulk_create(policies)
    return [policy.pk for policy in chance.sample(policies, size // 3)]


def what_each_planner_plans(*, previous_scan: bool, changed: list[int]) -> dict:
    """Per planner, the rows of both scans (the previous one, if any, then RUN's) and RUN's
    counts, each planner on the same book: the other's rows are rolled back first."""
    planned = {}
    for set_based in (False, True):
        rolled_back = transaction.savepoint()
        if previous_scan:
            planning.plan_due(run_date=RUN - timedelta(days=4), set_based=set_based)
            # Changed since: an expiry corrected two days earlier, or a renewal's new term.
            Policy.objects.filter(pk__in=changed).update(
                expiry_date=F("expiry_date") - timedelta(days=2), updated_at=timezone.now()
            )
            # A rule added since plans only what falls due after the previous scan.
            ReminderRule.objects.filter(lead_days=18).update(active=True)
        run = planning.plan_due(run_date=RUN, set_based=set_based)
        rows = Notification.objects.values_list(
            "policy_id",
            "customer_id",
            "rule_id",
            "channel",
            "expiry_date",
            "lead_days",
            "due_on",
            "status",
            "last_error",
            "variant_id",
            "attempts",
        )
        planned[set_based] = {
            "today": set(rows.filter(run=run)),
            "before": set(rows.exclude(run=run)),
            "counts": (run.planned, run.skipped, run.cancelled),
        }
        transaction.savepoint_rollback(rolled_back)
    return planned


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("previous_scan", [False, True], ids=["first_scan", "after_a_gap"])
def test_the_set_based_planner_plans_exactly_what_the_python_planner_plans(
    every_kind_of_rule, seed, previous_scan
):
    changed = random_book(seed)

    python, set_based = what_each_planner_plans(
        previous_scan=previous_scan, changed=changed
    ).values()

    assert set_based == python
    statuses = {row[7] for row in python["today"]}
    assert statuses == {Notification.Status.PLANNED, Notification.Status.SKIPPED}
    channels = {row[3] for row in python["today"]}
    assert channels == {EMAIL, SMS, WHATSAPP}
    assert any(row[9] for row in python["today"]), "some reminder should be in a variant"
