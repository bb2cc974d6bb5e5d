"""Which reminders keep customers: each outcome records the channels that reached the customer,
and the retention figures (counted daily into RetentionDay) match a recount from the outcome
rows, by product line, agent, channels reached, lead time and template, with undecided terms
shown apart and small groups marked as few."""

import csv
import io
from collections import Counter, defaultdict
from datetime import datetime, time, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from notifications import outcomes, reports, retention, services, tasks
from notifications.models import Notification, PolicyOutcome, RetentionDay
from policies.models import Policy
from tests.factories import make_agent, make_customer, make_notification, make_policy

Status = Notification.Status
TODAY = timezone.localdate()
YESTERDAY = TODAY - timedelta(days=1)
pytestmark = pytest.mark.django_db


def at(day, hour=12):
    return timezone.make_aware(datetime.combine(day, time(hour)))


def a_policy(agent, number, *, expires_in, product_line="auto"):
    return make_policy(
        number,
        customer=make_customer(f"{number.lower()}@mail.example"),
        agent=agent,
        expiry_date=TODAY + timedelta(days=expires_in),
        product_line=product_line,
    )


def touch(policy, channel, lead_days, status=Status.DELIVERED):
    """A reminder about the policy's expiry, sent on its due day (delivered a minute later)."""
    sent_at = at(policy.expiry_date - timedelta(days=lead_days), hour=9)
    return make_notification(
        policy,
        channel=channel,
        lead_days=lead_days,
        status=status,
        sent_at=sent_at if status != Status.FAILED else None,
        delivered_at=sent_at + timedelta(minutes=1) if status == Status.DELIVERED else None,
    )


def renew(policy, *, days_before_expiry):
    """The renewal, recorded as of `days_before_expiry` days before the expiry (negative: after)."""
    old = policy.expiry_date
    day = old - timedelta(days=days_before_expiry)
    outcomes.record(
        [outcomes.Term(policy.pk, old, old + timedelta(days=365))],
        kind=PolicyOutcome.Kind.RENEWED,
        source=PolicyOutcome.Source.AGENT,
        at=at(day),
    )
    Policy.objects.filter(pk=policy.pk).update(expiry_date=old + timedelta(days=365))


def lapse(policy):
    """The lapse, recorded as the scan would the day after the expiry."""
    outcomes.record(
        [outcomes.Term(policy.pk, policy.expiry_date)],
        kind=PolicyOutcome.Kind.LAPSED,
        source=PolicyOutcome.Source.SCAN,
        at=at(policy.expiry_date + timedelta(days=1), hour=6),
    )
    Policy.objects.filter(pk=policy.pk).update(status=Policy.Status.LAPSED)


# --- What each outcome records --------------------------------------------------------------


@pytest.mark.parametrize(
    ("touches", "reached"),
    [
        ([("email", 30, Status.DELIVERED), ("sms", 14, Status.FAILED)], "email"),
        ([("email", 30, Status.SENT), ("sms", 14, Status.DELIVERED)], "phone"),
        ([("email", 30, Status.DELIVERED), ("whatsapp", 7, Status.DELIVERED)], "both"),
        ([("email", 30, Status.BOUNCED), ("sms", 14, Status.FAILED)], "none"),
        ([], "none"),
    ],
)
def test_an_outcome_records_the_channels_a_delivered_reminder_reached(agent, touches, reached):
    policy = a_policy(agent, "P-1", expires_in=20, product_line="home")
    for channel, lead_days, status in touches:
        make_notification(
            policy,
            channel=channel,
            lead_days=lead_days,
            status=status,
            sent_at=timezone.now() - timedelta(days=lead_days),
            delivered_at=(
                timezone.now() - timedelta(days=lead_days) if status == Status.DELIVERED else None
            ),
        )

    services.renew_policy(policy=policy, new_expiry_date=policy.expiry_date + timedelta(days=365))

    outcome = policy.outcomes.get()
    assert outcome.channels_reached == reached
    assert (outcome.agent, outcome.product_line) == (agent, "home")


def test_a_reminder_delivered_after_the_outcome_did_not_reach_for_it(agent):
    policy = a_policy(agent, "P-1", expires_in=20)
    make_notification(
        policy,
        channel="email",
        lead_days=30,
        status=Status.DELIVERED,
        sent_at=timezone.now() - timedelta(days=1),
        delivered_at=timezone.now() + timedelta(hours=1),
    )

    services.renew_policy(policy=policy, new_expiry_date=policy.expiry_date + timedelta(days=365))

    assert policy.outcomes.get().channels_reached == "none"


# --- The figures, against a recount ---------------------------------------------------------


@pytest.fixture
def book(settings):
    """Two agents' terms: renewed before and after their expiry, lapsed by the scan, lapsed and
    renewed late, one still undecided (in the grace period), one outside a 30-day period, and
    one renewed before an expiry still to come."""
    settings.POLICY_LAPSE_GRACE_DAYS = 3
    alice, bruno = make_agent("alice", "alice@agency.example"), make_agent("bruno", "b@a.example")

    early = a_policy(alice, "A-1", expires_in=-10)
    touch(early, "email", 30)
    touch(early, "sms", 14, Status.FAILED)
    renew(early, days_before_expiry=5)

    on_the_day = a_policy(alice, "A-2", expires_in=-12, product_line="home")
    touch(on_the_day, "email", 14)
    touch(on_the_day, "sms", 7)
    renew(on_the_day, days_before_expiry=0)

    late = a_policy(alice, "A-3", expires_in=-8)
    touch(late, "sms", 7)
    renew(late, days_before_expiry=-2)

    a_policy(alice, "A-4", expires_in=-9)  # nothing sent: lapses

    lapsed_then_renewed = a_policy(bruno, "B-1", expires_in=-6, product_line="home")
    touch(lapsed_then_renewed, "whatsapp", 7)

    bruno_early = a_policy(bruno, "B-2", expires_in=-15)
    touch(bruno_early, "email", 30)
    renew(bruno_early, days_before_expiry=10)

    a_policy(bruno, "B-3", expires_in=-2, product_line="home")  # in its grace period

    long_ago = a_policy(alice, "A-5", expires_in=-100)
    touch(long_ago, "email", 30)
    renew(long_ago, days_before_expiry=1)

    to_come = a_policy(alice, "A-6", expires_in=20)
    renew(to_come, days_before_expiry=20)

    assert tasks.daily_scan(TODAY.isoformat())["lapsed"] == 2  # A-4 and B-1
    lapsed_then_renewed.refresh_from_db()
    services.renew_policy(
        policy=lapsed_then_renewed, new_expiry_date=TODAY + timedelta(days=300)
    )  # recorded after the scan: the next refresh counts it
    retention.refresh()
    return alice, bruno


def recount(*, start, end, agent=None):
    """The figures counted straight from the outcome rows: each term by its first outcome."""
    terms = defaultdict(list)
    for outcome in PolicyOutcome.objects.filter(expiry_date__range=(start, end)):
        if agent is None or outcome.agent_id == agent.pk:
            terms[outcome.policy_id, outcome.expiry_date].append(outcome)
    counted = defaultdict(Counter)
    for rows in terms.values():
        first = min(rows, key=lambda row: row.occurred_at)
        renewals = [row for row in rows if row.kind == "renewed"]
        if any(row.days_before_expiry >= 0 for row in renewals):
            status = "renewed_before"
        else:
            status = "renewed_after" if renewals else "lapsed"
        template = first.last_touch_template.name if first.last_touch_template else None
        for key in [
            ("total", None),
            ("product_line", first.product_line.title()),
            ("channels", first.get_channels_reached_display()),
            ("lead_days", first.last_touch_lead_days),
            ("template", template),
            ("agent", str(first.agent)),
        ]:
            counted[key][status] += 1
            counted[key]["terms"] += 1
    return counted


def as_counts(rate):
    return {
        name: getattr(rate, name)
        for name in ("terms", "renewed_before", "renewed_after", "lapsed")
        if getattr(rate, name)
    }


def assert_matches_recount(figures, counted, *, with_agents):
    assert as_counts(figures.total) == dict(counted["total", None])
    tables = {
        "product_line": figures.by_product_line,
        "channels": figures.by_channels,
        "template": figures.by_template,
        "agent": figures.by_agent,
    }
    if not with_agents:
        del tables["agent"]
        assert figures.by_agent == []
    for dimension, rates in tables.items():
        expected = {value: dict(c) for (name, value), c in counted.items() if name == dimension}
        labels = {
            value: next(r for r in rates if r.label == (value or "No delivered reminder"))
            for value in expected
        }
        assert {value: as_counts(rate) for value, rate in labels.items()} == expected
        assert len(rates) == len(expected), dimension
    lead = {value: dict(c) for (name, value), c in counted.items() if name == "lead_days"}
    assert {rate.label: as_counts(rate) for rate in figures.by_lead_days} == {
        f"{days} days before" if days else "No delivered reminder": c for days, c in lead.items()
    }


def test_every_agents_figures_match_a_recount_from_the_rows(book):
    start, end = retention.period_ending(YESTERDAY, days=30)

    figures = retention.figures(start=start, end=end)

    assert_matches_recount(figures, recount(start=start, end=end), with_agents=True)
    # B-2 renewed in time; A-3 after; B-1 lapsed, then renewed late: once; A-4 lapsed.
    assert (figures.total.terms, figures.total.renewed_before) == (6, 3)
    assert (figures.total.renewed_after, figures.total.lapsed) == (2, 1)
    assert figures.total.percent == "50%"
    assert figures.total.few
    assert figures.undecided == 1  # B-3, in its grace period: not in the rate


def test_an_agent_sees_the_figures_of_their_own_book(book):
    alice, bruno = book
    start, end = retention.period_ending(YESTERDAY, days=30)

    mine = retention.figures(start=start, end=end, agent=alice)
    theirs = retention.figures(start=start, end=end, agent=bruno)

    assert_matches_recount(mine, recount(start=start, end=end, agent=alice), with_agents=False)
    assert_matches_recount(theirs, recount(start=start, end=end, agent=bruno), with_agents=False)
    assert (mine.total.terms, mine.undecided, theirs.total.terms, theirs.undecided) == (4, 0, 2, 1)
    channels = {rate.label: rate.terms for rate in theirs.by_channels}
    assert channels == {"Email only": 1, "SMS or WhatsApp only": 1}


def test_a_longer_period_takes_the_older_terms_and_never_those_to_come(book):
    start, end = retention.period_ending(YESTERDAY, days=365)

    figures = retention.figures(start=start, end=end)

    assert_matches_recount(figures, recount(start=start, end=end), with_agents=True)
    assert figures.total.terms == 7  # A-5, 100 days ago, too; A-6 expires in 20 days


def test_counting_again_changes_nothing_and_a_new_outcome_is_counted_next_time(book):
    alice, _ = book
    before = sorted(RetentionDay.objects.values_list("expiry_date", "agent", "value", "terms"))

    retention.refresh()
    retention.refresh(days=[TODAY - timedelta(days=10)])

    after = sorted(RetentionDay.objects.values_list("expiry_date", "agent", "value", "terms"))
    assert after == before
    newcomer = a_policy(alice, "A-7", expires_in=-20)
    renew(newcomer, days_before_expiry=3)
    start, end = retention.period_ending(YESTERDAY, days=30)
    assert retention.figures(start=start, end=end).total.terms == 6  # not counted yet
    assert retention.refresh() >= 1
    assert retention.figures(start=start, end=end).total.terms == 7


def test_a_period_with_no_term_has_no_rate():
    figures = retention.figures(start=TODAY - timedelta(days=30), end=YESTERDAY)

    assert (figures.total.terms, figures.total.rate, figures.total.percent) == (0, None, "n/a")
    assert figures.breakdowns[0][2] == []


# --- The weekly report ----------------------------------------------------------------------


def test_the_weekly_report_stores_emails_and_lists_the_last_13_weeks_rates(settings, tmp_path):
    settings.REPORTS_DIR = tmp_path / "reports"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REPORTS_ADMIN_EMAILS = ["boss@insurer.example"]
    week_start = reports.last_week(TODAY)
    week_end = week_start + timedelta(days=6)
    alice = make_agent("alice", "alice@agency.example")
    in_time = a_policy(alice, "A-1", expires_in=(week_end - TODAY).days - 3)
    touch(in_time, "email", 14)
    renew(in_time, days_before_expiry=2)
    lapse(a_policy(alice, "A-2", expires_in=(week_end - TODAY).days - 80, product_line="home"))
    too_old = a_policy(alice, "A-3", expires_in=(week_end - TODAY).days - 91)
    renew(too_old, days_before_expiry=1)
    after_the_week = a_policy(alice, "A-4", expires_in=(week_end - TODAY).days + 1)
    renew(after_the_week, days_before_expiry=1)

    stored = reports.build_weekly_reports(week_start=week_start)  # counts the outcomes first
    reports.email_weekly_reports(week_start=week_start)

    assert {(r.agent, r.retention_terms, r.retention_renewed) for r in stored} == {
        (alice, 2, 1),
        (None, 2, 1),
    }
    mine = next(report for report in stored if report.agent == alice)
    rows = list(csv.reader(io.StringIO(reports.report_path(mine.csv_name).read_text())))
    start = week_end - timedelta(weeks=13) + timedelta(days=1)
    assert ["renewals before expiry", f"terms that expired {start} to {week_end}"] == rows[
        rows.index(next(row for row in rows if row and row[0] == "renewals before expiry"))
    ][:2]
    assert ["All", "All terms", "2", "1", "0.500", "0", "1", "few"] in rows
    assert ["By product line", "Home", "1", "0", "0.000", "0", "1", "few"] in rows
    assert ["By channels reached", "Email only", "1", "1", "1.000", "0", "0", "few"] in rows
    body = next(message.body for message in mail.outbox if message.to == [alice.email])
    assert (
        f"Renewed on or before expiry, terms that expired {start:%d %b} to {week_end:%d %b}: "
        "50% (1 of 2) (few: too small to compare)"
    ) in body
