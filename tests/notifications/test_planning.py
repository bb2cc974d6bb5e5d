"""plan_due against the real database: which reminders a daily scan plans, skips and cancels,
on the day they fall due, after missed scans, after renewals and cancellations, and when two
scans run at once."""

from collections import Counter
from datetime import date, timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from notifications import dispatch, lifecycle, planning
from notifications.models import Channel, Notification, ReminderRun
from policies.models import Policy
from tests.factories import make_agent, make_customer, make_policy, template_for
from tests.notifications.conftest import DEFAULT_RULES, keys, plan, run_at_once, statuses

pytestmark = pytest.mark.django_db

RUN = date(2026, 6, 15)
EMAIL, SMS = Channel.EMAIL, Channel.SMS
PLANNED = Notification.Status.PLANNED
SKIPPED = Notification.Status.SKIPPED
QUEUED = Notification.Status.QUEUED
SENT = Notification.Status.SENT
CANCELLED = Notification.Status.CANCELLED


def policy_expiring(number: str, expiry_date: date, agent, *, customer=None, **fields) -> Policy:
    """A policy of its own customer (reachable by email and SMS unless told otherwise)."""
    customer = customer or make_customer(f"{number.lower()}@mail.example", name=number)
    return make_policy(number, customer=customer, agent=agent, expiry_date=expiry_date, **fields)


def days(n: int) -> timedelta:
    return timedelta(days=n)


# --- Each rule, on the day it falls due --------------------------------------------------------


@pytest.mark.parametrize(("lead_days", "channel"), DEFAULT_RULES)
def test_each_default_rule_plans_its_reminder_on_the_day_it_falls_due(
    default_rules, agent, lead_days, channel
):
    policy = policy_expiring("P-1", RUN + days(lead_days), agent)
    plan(RUN, days=-1)  # the scan before: nothing of this policy was due yet

    run = plan(RUN)

    planned = run.notifications.all()
    # Every default rule with this lead time falls due today, on each channel it names.
    assert {(n.channel, n.lead_days, n.status) for n in planned} == {
        (c, lead, PLANNED) for lead, c in DEFAULT_RULES if lead == lead_days
    }
    reminder = planned.get(channel=channel)
    assert reminder.policy == policy
    assert reminder.customer == policy.customer
    assert reminder.expiry_date == policy.expiry_date
    assert reminder.due_on == RUN
    assert (reminder.rule.lead_days, reminder.rule.channel) == (lead_days, channel)
    assert reminder.attempts == 0
    assert reminder.last_error == ""


def test_email_and_sms_rules_plan_one_reminder_per_channel_for_one_policy(rules, agent):
    rules(7, EMAIL)
    rules(7, SMS)
    policy_expiring("P-1", RUN + days(7), agent)

    run = plan(RUN)

    assert keys(run.notifications) == {("P-1", EMAIL, 7, PLANNED), ("P-1", SMS, 7, PLANNED)}
    assert {n.rule.template.channel for n in run.notifications.all()} == {EMAIL, SMS}


# --- Lead-time boundaries ----------------------------------------------------------------------


def test_reminder_due_exactly_on_the_run_date_is_planned(rules, agent):
    rules(7)
    policy_expiring("P-1", RUN + days(7), agent)

    run = plan(RUN)

    assert keys(run.notifications) == {("P-1", EMAIL, 7, PLANNED)}
    assert run.notifications.get().due_on == RUN


def test_reminder_due_tomorrow_is_not_planned_today_but_tomorrow(rules, agent):
    rules(7)
    policy_expiring("P-1", RUN + days(8), agent)

    today = plan(RUN)
    tomorrow = plan(RUN, days=1)

    assert today.planned == 0
    assert not today.notifications.exists()
    assert keys(tomorrow.notifications) == {("P-1", EMAIL, 7, PLANNED)}
    assert tomorrow.notifications.get().due_on == RUN + days(1)


def test_first_scan_ever_plans_a_reminder_that_fell_due_yesterday(rules, agent):
    rules(7)
    policy_expiring("P-1", RUN + days(6), agent)
    assert not ReminderRun.objects.exists()

    run = plan(RUN)

    assert keys(run.notifications) == {("P-1", EMAIL, 7, PLANNED)}
    assert run.notifications.get().due_on == RUN - days(1)


def test_reminder_due_yesterday_was_planned_by_yesterdays_scan_and_is_not_planned_again(
    rules, agent
):
    rules(7)
    policy_expiring("P-1", RUN + days(6), agent)

    yesterday = plan(RUN, days=-1)
    today = plan(RUN)

    assert keys(yesterday.notifications) == {("P-1", EMAIL, 7, PLANNED)}
    assert today.planned == 0
    assert not today.notifications.exists()
    assert Notification.objects.count() == 1


# --- Catch-up after missed scans ---------------------------------------------------------------


@pytest.fixture
def five_day_gap(rules, agent):
    """Rules at 30, 10 and 7 days on email, 10 and 7 on SMS. A finished scan five days before
    RUN, then none until RUN. GAP-2 had 10 and 7 days fall due in the gap, GAP-1 only 10; the
    30-day reminders of both fell due before the gap and the scan then planned them."""
    for lead in (30, 10, 7):
        rules(lead, EMAIL)
    for lead in (10, 7):
        rules(lead, SMS)
    policy_expiring("GAP-2", RUN + days(6), agent)  # 10 days: RUN-4, 7 days: RUN-1
    policy_expiring("GAP-1", RUN + days(9), agent)  # 10 days: RUN-1, 7 days: RUN+2
    before_gap = plan(RUN, days=-5)
    assert keys(before_gap.notifications) == {
        ("GAP-2", EMAIL, 30, PLANNED),
        ("GAP-1", EMAIL, 30, PLANNED),
    }
    return before_gap


def test_catch_up_plans_only_the_most_urgent_reminder_per_policy_and_channel(five_day_gap):
    run = plan(RUN)

    assert keys(run.notifications) == {
        ("GAP-2", EMAIL, 7, PLANNED),
        ("GAP-2", EMAIL, 10, SKIPPED),
        ("GAP-2", SMS, 7, PLANNED),
        ("GAP-2", SMS, 10, SKIPPED),
        ("GAP-1", EMAIL, 10, PLANNED),
        ("GAP-1", SMS, 10, PLANNED),
    }
    skipped = run.notifications.filter(status=SKIPPED)
    assert all(n.last_error for n in skipped)
    assert (run.planned, run.skipped) == (4, 2)


def test_catch_up_does_not_replan_a_reminder_planned_before_the_gap(five_day_gap):
    run = plan(RUN)

    before_gap = Notification.objects.filter(lead_days=30)
    assert before_gap.count() == 2
    assert set(before_gap.values_list("run", flat=True)) == {five_day_gap.pk}
    assert set(before_gap.values_list("status", flat=True)) == {PLANNED}
    assert not run.notifications.filter(lead_days=30).exists()


def test_policy_imported_since_the_last_scan_gets_only_its_most_urgent_due_reminder(
    default_rules, agent
):
    plan(RUN, days=-1)  # the last scan, before the import
    # Imported today, expiring in 10 days: the 60, 30 and 14-day reminders are past already.
    policy_expiring("NEW", RUN + days(10), agent)

    run = plan(RUN)

    assert keys(run.notifications) == {
        ("NEW", EMAIL, 14, PLANNED),
        ("NEW", EMAIL, 30, SKIPPED),
        ("NEW", EMAIL, 60, SKIPPED),
        ("NEW", SMS, 14, PLANNED),
    }


def test_policy_whose_expiry_was_moved_closer_since_the_last_scan_gets_its_most_urgent_reminder(
    default_rules, agent
):
    policy = policy_expiring("MOVED", RUN + days(200), agent)
    assert plan(RUN, days=-1).planned == 0
    # Corrected after the last scan: the 60 and 30-day reminders are past, the 14-day one too.
    policy.expiry_date = RUN + days(10)
    policy.save()
    assert policy.updated_at > ReminderRun.objects.get().started_at

    run = plan(RUN)

    assert keys(run.notifications) == {
        ("MOVED", EMAIL, 14, PLANNED),
        ("MOVED", EMAIL, 30, SKIPPED),
        ("MOVED", EMAIL, 60, SKIPPED),
        ("MOVED", SMS, 14, PLANNED),
    }


# --- Renewal and cancellation ------------------------------------------------------------------


def send_through_outbox(notification_id: int) -> None:
    assert planning.claim_for_enqueue(limit=100, stalled_after=timedelta(minutes=30)) == [
        notification_id
    ]
    assert dispatch.send(notification_id).status == SENT


def test_renewal_cancels_waiting_reminders_of_the_old_expiry_and_keeps_sent_ones(
    rules, agent, outbox
):
    rules(14, EMAIL)
    rules(7, EMAIL)
    rules(7, SMS)
    today = timezone.localdate()  # a reminder is sent only about an expiry still to come
    old_expiry = today + days(7)
    policy = policy_expiring("R-1", old_expiry, agent)
    fourteen = plan(today, days=-7).notifications.get()  # email 14 days
    send_through_outbox(fourteen.pk)
    seven = plan(today)  # email and SMS 7 days
    email_7 = seven.notifications.get(channel=EMAIL)
    assert lifecycle.move(email_7.pk, QUEUED) == 1

    new_expiry = old_expiry + days(365)
    policy.start_date, policy.expiry_date = old_expiry, new_expiry
    policy.save()
    run = plan(today, days=1)

    assert statuses(expiry_date=old_expiry) == {
        (EMAIL, 14): SENT,
        (EMAIL, 7): CANCELLED,
        (SMS, 7): CANCELLED,
    }
    assert set(
        Notification.objects.filter(status=CANCELLED).values_list("last_error", flat=True)
    ) == {"policy expiry date changed"}
    assert run.cancelled == 2
    # Nothing for the new expiry until its first reminder falls due, a year on.
    assert run.planned == 0
    assert not Notification.objects.filter(expiry_date=new_expiry).exists()
    assert plan(new_expiry, days=-15).planned == 0
    first = plan(new_expiry, days=-14)
    assert keys(first.notifications) == {("R-1", EMAIL, 14, PLANNED)}
    assert first.notifications.get().expiry_date == new_expiry


@pytest.mark.parametrize(
    "status", [Policy.Status.CANCELLED, Policy.Status.RENEWED, Policy.Status.LAPSED]
)
def test_policy_no_longer_active_has_waiting_reminders_cancelled_and_nothing_new_planned(
    rules, agent, status
):
    rules(14, EMAIL)
    rules(7, SMS)
    policy = policy_expiring("C-1", RUN + days(7), agent)
    planned = plan(RUN, days=-7).notifications.get()  # email 14 days
    assert lifecycle.move(planned.pk, QUEUED) == 1

    policy.status = status
    policy.save()
    run = plan(RUN)  # the SMS 7 days would fall due today

    planned.refresh_from_db()
    assert planned.status == CANCELLED
    assert planned.last_error == "policy no longer active"
    assert (run.planned, run.cancelled) == (0, 1)
    assert not Notification.objects.filter(channel=SMS).exists()


def test_cancelled_reminders_are_counted_once_and_not_cancelled_again(rules, agent):
    rules(7)
    policy = policy_expiring("C-1", RUN + days(7), agent)
    plan(RUN)
    policy.status = Policy.Status.CANCELLED
    policy.save()

    first = plan(RUN, days=1)
    second = plan(RUN, days=2)

    assert (first.cancelled, second.cancelled) == (1, 0)


# --- Policies and customers that get nothing ---------------------------------------------------


@pytest.mark.parametrize("expired_days_ago", [1, 30])
def test_expired_policy_gets_nothing(default_rules, agent, expired_days_ago):
    plan(RUN, days=-60)  # an earlier scan; the policy below is new since then
    policy_expiring("OLD", RUN - days(expired_days_ago), agent)

    run = plan(RUN)

    assert run.planned == run.skipped == 0
    assert not Notification.objects.exists()


def test_expired_policy_gets_nothing_on_the_first_scan_ever(default_rules, agent):
    policy_expiring("OLD", RUN - days(1), agent)

    assert plan(RUN).planned == 0
    assert not Notification.objects.exists()


@pytest.mark.parametrize(
    ("customer_fields", "channels"),
    [
        ({}, {EMAIL, SMS}),
        ({"email_consent": False}, {SMS}),
        ({"email": ""}, {SMS}),
        ({"sms_consent": False}, {EMAIL}),
        ({"phone": ""}, {EMAIL}),
        ({"email_consent": False, "phone": ""}, set()),
    ],
    ids=["reachable", "no_email_consent", "no_email", "no_sms_consent", "no_phone", "neither"],
)
def test_customer_gets_reminders_only_on_channels_they_consented_to_and_have_an_address_for(
    rules, agent, customer_fields, channels
):
    rules(7, EMAIL)
    rules(7, SMS)
    customer = make_customer(**{"email": "pat@mail.example", **customer_fields})
    policy_expiring("P-1", RUN + days(7), agent, customer=customer)

    run = plan(RUN)

    assert set(run.notifications.values_list("channel", flat=True)) == channels
    assert run.planned == len(channels)


# --- Rules: active, product line ---------------------------------------------------------------


def test_inactive_rule_plans_nothing(rules, agent):
    rules(7, EMAIL, active=False)
    rules(7, SMS)
    policy_expiring("P-1", RUN + days(7), agent)

    run = plan(RUN)

    assert keys(run.notifications) == {("P-1", SMS, 7, PLANNED)}


def test_no_active_rules_plans_nothing(rules, agent):
    rules(7, EMAIL, active=False)
    rules(7, SMS, active=False)
    policy_expiring("P-1", RUN + days(7), agent)

    run = plan(RUN)

    assert run.planned == run.skipped == 0
    assert run.finished_at is not None
    assert not Notification.objects.exists()


def test_rule_scoped_to_a_product_line_applies_to_that_product_line_only(rules, agent):
    rules(7, EMAIL, product_line="home")
    policy_expiring("HOME", RUN + days(7), agent, product_line="home")
    policy_expiring("AUTO", RUN + days(7), agent, product_line="auto")

    run = plan(RUN)

    assert keys(run.notifications) == {("HOME", EMAIL, 7, PLANNED)}


def test_scoped_rule_replaces_the_all_products_rule_of_the_same_lead_and_channel(rules, agent):
    general = rules(7, EMAIL)
    home = rules(7, EMAIL, "home", template=template_for(EMAIL, "home insurance"))
    sms = rules(7, SMS)  # no home SMS rule: the all-products one still applies
    policy_expiring("HOME", RUN + days(7), agent, product_line="home")
    policy_expiring("AUTO", RUN + days(7), agent, product_line="auto")

    run = plan(RUN)

    by_policy = {
        (n.policy.policy_number, n.channel): n.rule for n in run.notifications.select_related()
    }
    assert by_policy == {
        ("HOME", EMAIL): home,
        ("HOME", SMS): sms,
        ("AUTO", EMAIL): general,
        ("AUTO", SMS): sms,
    }


def test_all_products_rules_of_other_leads_still_apply_next_to_a_scoped_rule(rules, agent):
    rules(30, EMAIL)
    home = rules(7, EMAIL, "home")
    policy_expiring("HOME", RUN + days(7), agent, product_line="home")

    run = plan(RUN)

    assert keys(run.notifications) == {
        ("HOME", EMAIL, 7, PLANNED),
        ("HOME", EMAIL, 30, SKIPPED),
    }
    assert run.notifications.get(lead_days=7).rule == home


# --- Idempotency and counts --------------------------------------------------------------------


@pytest.fixture
def book(default_rules, agent):
    """Policies due on RUN in every way: today, in catch-up, by one channel only."""
    policy_expiring("D-60", RUN + days(60), agent)
    policy_expiring("D-14", RUN + days(14), agent)
    policy_expiring("D-7", RUN + days(7), agent)
    policy_expiring("D-1", RUN + days(1), agent, customer=make_customer("", phone="+34600000001"))
    policy_expiring("LATER", RUN + days(61), agent)
    return agent


def test_second_scan_on_same_day_plans_nothing(book):
    first = plan(RUN)
    rows_after_first = Notification.objects.count()

    second = plan(RUN)

    assert first.planned > 0
    assert first.skipped > 0
    assert (second.planned, second.skipped, second.cancelled) == (0, 0, 0)
    assert not second.notifications.exists()
    assert Notification.objects.count() == rows_after_first
    duplicates = (
        Notification.objects.values("policy", "expiry_date", "channel", "lead_days")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not duplicates.exists()


def assert_counts_match_rows(run: ReminderRun, *, cancelled_rows: int) -> None:
    by_status = Counter(run.notifications.values_list("status", flat=True))
    assert run.planned == by_status[PLANNED]
    assert run.skipped == by_status[SKIPPED]
    assert run.cancelled == cancelled_rows


def test_run_counts_match_the_rows_it_planned_skipped_and_cancelled(book):
    first = plan(RUN)

    assert keys(first.notifications) == {
        ("D-60", EMAIL, 60, PLANNED),
        ("D-14", EMAIL, 14, PLANNED),
        ("D-14", EMAIL, 30, SKIPPED),
        ("D-14", EMAIL, 60, SKIPPED),
        ("D-14", SMS, 14, PLANNED),
        ("D-7", EMAIL, 7, PLANNED),
        ("D-7", EMAIL, 14, SKIPPED),
        ("D-7", EMAIL, 30, SKIPPED),
        ("D-7", EMAIL, 60, SKIPPED),
        ("D-7", SMS, 7, PLANNED),
        ("D-7", SMS, 14, SKIPPED),
        ("D-1", SMS, 1, PLANNED),
        ("D-1", SMS, 7, SKIPPED),
        ("D-1", SMS, 14, SKIPPED),
    }
    assert (first.planned, first.skipped, first.cancelled) == (6, 8, 0)
    assert_counts_match_rows(first, cancelled_rows=0)

    Policy.objects.filter(policy_number__in=["D-7", "D-14"]).update(status=Policy.Status.CANCELLED)
    second = plan(RUN, days=1)  # LATER's 60-day reminder falls due

    assert keys(second.notifications) == {("LATER", EMAIL, 60, PLANNED)}
    assert (second.planned, second.skipped, second.cancelled) == (1, 0, 4)
    assert_counts_match_rows(
        second, cancelled_rows=Notification.objects.filter(status=CANCELLED).count()
    )
    # The SKIPPED rows of the cancelled policies were never going out: they stay skipped.
    assert set(
        Notification.objects.filter(policy__policy_number__in=["D-7", "D-14"]).values_list(
            "status", flat=True
        )
    ) == {CANCELLED, SKIPPED}


# --- Cost ---------------------------------------------------------------------------------------


def queries_of_a_scan(run_date: date) -> tuple[ReminderRun, int]:
    with CaptureQueriesContext(connection) as captured:
        run = planning.plan_due(run_date=run_date)
    return run, len(captured.captured_queries)


def test_scan_query_count_does_not_grow_with_the_number_of_due_policies(default_rules, agent):
    # Each policy is due for exactly one reminder (email, 60 days) on its day.
    for i in range(5):
        policy_expiring(f"FEW-{i}", RUN + days(60), agent)
    for i in range(50):
        policy_expiring(f"MANY-{i}", RUN + days(61), agent)

    few, few_queries = queries_of_a_scan(RUN)
    many, many_queries = queries_of_a_scan(RUN + days(1))

    assert (few.planned, many.planned) == (5, 50)
    assert many_queries == few_queries


# --- Two scans at once -------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_scans_plan_each_reminder_exactly_once(rules):
    for lead, channel in DEFAULT_RULES:
        rules(lead, channel)
    agent = make_agent("racer", "racer@agency.example")
    for i in range(40):
        policy_expiring(f"P-{i:02}", RUN + days(1 + i % 61), agent)

    def scan() -> ReminderRun:
        return planning.plan_due(run_date=RUN)

    runs = run_at_once(scan, scan)

    natural_keys = Counter(
        Notification.objects.values_list("policy", "expiry_date", "channel", "lead_days")
    )
    assert natural_keys
    assert set(natural_keys.values()) == {1}
    total = Notification.objects.count()
    assert sum(run.planned + run.skipped for run in runs) == total
    assert sum(run.planned for run in runs) == Notification.objects.filter(status=PLANNED).count()
    # Every due reminder is there: one planned per policy and reachable channel with a rule due.
    assert Notification.objects.filter(status=PLANNED).count() == sum(
        1
        for policy in Policy.objects.all()
        for channel in (EMAIL, SMS)
        if any(c == channel and policy.expiry_date - days(lead) <= RUN for lead, c in DEFAULT_RULES)
    )
