"""The weekly report: run twice for one week, it stores one report per agent (and one on all
agents) and sends one email each, and its figures are those of the notifications in the
database."""

import csv
import importlib
import io
import smtplib
from datetime import date, datetime, timedelta
from xml.etree import ElementTree

import pytest
from django.apps import apps as django_apps
from django.core import mail
from django.core.mail.backends.base import BaseEmailBackend
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from notifications import reports, tasks
from notifications.models import (
    ConsentChange,
    Notification,
    ReminderRun,
    WeeklyReport,
    WorkerLease,
)
from notifications.schedule import WEEKLY_REPORT_NAME
from policies.models import Policy
from tests.factories import make_agent, make_customer, make_policy, make_rule

WEEK = date(2026, 3, 2)  # a Monday
WEEK_END = WEEK + timedelta(days=7)
Status = Notification.Status


def at(day: date, hour: int = 12) -> datetime:
    return timezone.make_aware(datetime(day.year, day.month, day.day, hour))


IN_WEEK = at(WEEK + timedelta(days=2))
BEFORE = at(WEEK - timedelta(days=3))
AFTER = at(WEEK_END + timedelta(days=1))


@pytest.fixture(autouse=True)
def report_settings(settings, tmp_path):
    settings.REPORTS_DIR = tmp_path / "reports"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.REPORTS_ADMIN_EMAILS = ["boss@insurer.example"]


class Book:
    """Two agents' policies and reminders around WEEK, each placed to test one boundary."""

    def __init__(self):
        self.alice = make_agent("alice", "alice@agency.example")
        self.bruno = make_agent("bruno", "bruno@agency.example")
        self.email_rule = make_rule(45, "email")
        self.sms_rule = make_rule(3, "sms")
        self.run = ReminderRun.objects.create(run_date=WEEK)
        self.count = 0

    def policy(self, number: str, agent, expires_in: int, **fields) -> Policy:
        customer = make_customer(f"{number.lower()}@mail.example", name=f"Customer {number}")
        return make_policy(
            number,
            customer=customer,
            agent=agent,
            expiry_date=WEEK_END + timedelta(days=expires_in),
            **fields,
        )

    def reminder(self, policy, status, *, planned=IN_WEEK, changed=None, **times) -> Notification:
        rule = self.email_rule if self.count % 2 == 0 else self.sms_rule
        self.count += 1
        notification = Notification.objects.create(
            policy=policy,
            customer=policy.customer,
            rule=rule,
            channel=rule.channel,
            expiry_date=policy.expiry_date,
            lead_days=rule.lead_days + self.count * 100,  # unique per policy and channel
            due_on=policy.expiry_date - timedelta(days=rule.lead_days),
            run=self.run,
            status=status,
            **times,
        )
        Notification.objects.filter(pk=notification.pk).update(
            created_at=planned, status_changed_at=changed or planned
        )
        return notification

    def consent(self, policy, channel: str, *, accepted: bool, at: datetime) -> None:
        change = ConsentChange.objects.create(
            customer=policy.customer, channel=channel, accepted=accepted, source="one_click"
        )
        ConsentChange.objects.filter(pk=change.pk).update(changed_at=at)  # auto_now_add


@pytest.fixture
def book(db) -> Book:
    book = Book()
    alice, bruno = book.alice, book.bruno
    # Alice: delivered in the week (so not "expiring, none delivered")...
    a1 = book.policy("A-1", alice, 10)
    book.reminder(a1, Status.DELIVERED, sent_at=IN_WEEK, delivered_at=IN_WEEK)
    # ...one that failed in the week, whose customer then refused email, and SMS (one customer)...
    a2 = book.policy("A-2", alice, 20)
    book.reminder(a2, Status.FAILED, sent_at=IN_WEEK, changed=IN_WEEK)
    book.consent(a2, "email", accepted=False, at=IN_WEEK)
    book.consent(a2, "sms", accepted=False, at=IN_WEEK)
    # ...one planned before the week and sent in it, never delivered...
    a3 = book.policy("A-3", alice, 5)
    book.reminder(a3, Status.SENT, planned=BEFORE, sent_at=IN_WEEK)
    # ...one skipped (never meant to go), and one planned after the week.
    book.reminder(a3, Status.SKIPPED)
    book.reminder(a3, Status.PLANNED, planned=AFTER)
    book.consent(a3, "email", accepted=False, at=BEFORE)  # opted out the week before...
    book.consent(a3, "email", accepted=True, at=IN_WEEK)  # ...and back in: not an opt-out
    # Outside the 30 days, or not active: not on the expiring list.
    book.policy("A-4", alice, 31)
    book.policy("A-5", alice, 3, status=Policy.Status.RENEWED)
    # A customer who told the agent they will not renew: their reminders stopped on purpose.
    a6 = book.policy("A-6", alice, 12)
    Policy.objects.filter(pk=a6.pk).update(renewal_declined_for=a6.expiry_date)
    # Bruno: delivered last week (counted then, not now), its policy covered all the same...
    b1 = book.policy("B-1", bruno, 3)
    book.reminder(b1, Status.DELIVERED, planned=BEFORE, sent_at=BEFORE, delivered_at=BEFORE)
    # ...a bounce in the week, a STOP by SMS in the week, an opt-out after the week...
    b2 = book.policy("B-2", bruno, 0)
    book.reminder(b2, Status.BOUNCED, sent_at=IN_WEEK, changed=IN_WEEK)
    book.reminder(b2, Status.FAILED, planned=BEFORE, sent_at=BEFORE, changed=BEFORE)
    book.consent(b2, "sms", accepted=False, at=IN_WEEK)
    book.consent(b1, "email", accepted=False, at=AFTER)
    # ...and a policy with no reminder at all, expiring on the last day of the window.
    book.policy("B-3", bruno, 30)
    return book


EXPECTED = {
    "alice@agency.example": {
        "planned": 2,  # A-1, A-2 (A-3's was planned before, its skipped one does not count)
        "sent": 3,
        "delivered": 1,
        "failed": 1,
        "opted_out": 1,
        "expiring_undelivered": 2,  # A-2 (failed), A-3 (sent, not delivered)
    },
    "bruno@agency.example": {
        "planned": 1,
        "sent": 1,
        "delivered": 0,
        "failed": 1,
        "opted_out": 1,
        "expiring_undelivered": 2,  # B-2, B-3
    },
}


def figures_of(report: WeeklyReport) -> dict[str, int]:
    return {name: getattr(report, name) for name in reports.FIGURES}


def figures_from_database(agent) -> dict[str, int]:
    """The report's definitions, evaluated row by row in Python: a second opinion."""
    start, end = reports.week_bounds(WEEK)
    notifications = list(Notification.objects.filter(policy__agent=agent))

    def within(moment) -> bool:
        return moment is not None and start <= moment < end

    customers = set(Policy.objects.filter(agent=agent).values_list("customer_id", flat=True))
    opted_out = {
        change.customer_id
        for change in ConsentChange.objects.all()
        if not change.accepted and within(change.changed_at) and change.customer_id in customers
    }
    delivered = {(n.policy_id, n.expiry_date) for n in notifications if n.status == "delivered"}
    expiring = [
        policy
        for policy in Policy.objects.filter(agent=agent, status="active")
        if WEEK_END <= policy.expiry_date <= WEEK_END + timedelta(days=30)
        and (policy.pk, policy.expiry_date) not in delivered
        and policy.renewal_declined_for != policy.expiry_date
    ]
    return {
        "planned": sum(within(n.created_at) and n.status != "skipped" for n in notifications),
        "sent": sum(within(n.sent_at) for n in notifications),
        "delivered": sum(within(n.delivered_at) for n in notifications),
        "failed": sum(
            within(n.status_changed_at) and n.status in ("failed", "bounced") for n in notifications
        ),
        "opted_out": len(opted_out),
        "expiring_undelivered": len(expiring),
    }


def test_running_the_weekly_report_twice_stores_one_report_and_sends_one_email_per_agent(book):
    first = tasks.weekly_reports(WEEK.isoformat())
    second = tasks.weekly_reports(WEEK.isoformat())

    assert first == {"week_start": "2026-03-02", "reports": 3, "emailed": 3}
    assert second == {"week_start": "2026-03-02", "reports": 3, "emailed": 0}
    stored = WeeklyReport.objects.filter(week_start=WEEK)
    assert stored.count() == 3
    assert sorted(message.to[0] for message in mail.outbox) == [
        "alice@agency.example",
        "boss@insurer.example",
        "bruno@agency.example",
    ]
    for agent in (book.alice, book.bruno):
        report = stored.get(agent=agent)
        assert figures_of(report) == EXPECTED[agent.email] == figures_from_database(agent)
        assert report.emailed_to == agent.email
        (email,) = [message for message in mail.outbox if message.to == [agent.email]]
        assert f"Sent: {report.sent}" in email.body
        assert [name for name, _, _ in email.attachments] == [
            "renewly-report-2026-03-02.csv",
            "renewly-report-2026-03-02.svg",
        ]
    everyone = stored.get(agent=None)
    assert figures_of(everyone) == {
        name: EXPECTED["alice@agency.example"][name] + EXPECTED["bruno@agency.example"][name]
        for name in reports.FIGURES
    }


def test_the_stored_csv_and_chart_say_what_the_figures_say(book):
    tasks.weekly_reports(WEEK.isoformat())
    report = WeeklyReport.objects.get(week_start=WEEK, agent=book.alice)

    rows = list(csv.reader(io.StringIO(reports.report_path(report.csv_name).read_text())))
    assert rows[0] == ["Renewly weekly report", "alice@agency.example"]
    assert rows[1] == ["week", "2026-03-02 to 2026-03-08"]
    figures = dict(rows[rows.index(["figure", "count"]) + 1 :][:6])
    assert figures == {name: str(count) for name, count in EXPECTED[book.alice.email].items()}
    expiring = rows[rows.index(list(reports.EXPIRING_COLUMNS)) + 1 :]
    assert [row[0] for row in expiring] == ["A-3", "A-2"]  # by expiry date
    chart = ElementTree.fromstring(reports.report_path(report.chart_name).read_text())
    assert chart.tag == "{http://www.w3.org/2000/svg}svg"
    texts = [element.text for element in chart.iter("{http://www.w3.org/2000/svg}text")]
    assert "Reminders planned" in texts

    everyone = WeeklyReport.objects.get(week_start=WEEK, agent=None)
    rows = list(csv.reader(io.StringIO(reports.report_path(everyone.csv_name).read_text())))
    per_agent = rows[rows.index(["agent_email", *reports.FIGURES]) + 1 :][:2]
    assert per_agent == [[email, *map(str, EXPECTED[email].values())] for email in sorted(EXPECTED)]


class FlakyBackend(BaseEmailBackend):
    """A mail server that is down: it refuses the session, so nothing was sent."""

    def send_messages(self, messages):
        raise smtplib.SMTPConnectError(421, "service not available, closing channel")


def test_a_report_whose_email_failed_is_sent_by_the_next_run(book, settings):
    settings.EMAIL_BACKEND = f"{__name__}.FlakyBackend"
    assert tasks.weekly_reports(WEEK.isoformat())["emailed"] == 0
    report = WeeklyReport.objects.get(week_start=WEEK, agent=book.alice)
    assert report.emailed_at is None
    assert "mail server unreachable" not in report.email_error  # the backend's own words
    assert "service not available" in report.email_error

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert tasks.weekly_reports(WEEK.isoformat())["emailed"] == 3
    assert len(mail.outbox) == 3


def test_a_report_whose_email_failed_is_sent_by_next_weeks_run(book, settings):
    settings.EMAIL_BACKEND = f"{__name__}.FlakyBackend"
    tasks.weekly_reports(WEEK.isoformat())
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"

    next_week = WEEK + timedelta(days=7)
    assert tasks.weekly_reports(next_week.isoformat())["emailed"] == 6  # both weeks' reports
    sent_for = sorted({message.subject for message in mail.outbox})
    assert len(sent_for) == 6
    assert WeeklyReport.objects.filter(emailed_at__isnull=True).count() == 0


def claimed_by(report_filter: dict, *, alive: bool) -> None:
    """The reports as a run left them that claimed them, and is still sending or died."""
    expires_at = timezone.now() + timedelta(minutes=1 if alive else -1)
    lease = WorkerLease.objects.create(name="another-run", expires_at=expires_at)
    WeeklyReport.objects.filter(**report_filter).update(
        email_claimed_at=timezone.now(), email_lease=lease
    )


def test_a_report_claimed_by_another_run_is_not_sent_again(book):
    reports.build_weekly_reports(week_start=WEEK)
    claimed_by({"agent": book.alice}, alive=True)

    assert reports.email_weekly_reports(week_start=WEEK) == 2
    assert "alice@agency.example" not in [message.to[0] for message in mail.outbox]


def test_a_claim_whose_run_died_expires_and_the_report_is_sent(book, settings):
    reports.build_weekly_reports(week_start=WEEK)
    claimed_long_ago = timezone.now() - timedelta(minutes=settings.REPORT_EMAIL_CLAIM_MINUTES + 1)
    WeeklyReport.objects.filter(agent=book.alice).update(email_claimed_at=claimed_long_ago)

    assert reports.email_weekly_reports(week_start=WEEK) == 3
    assert "alice@agency.example" in [message.to[0] for message in mail.outbox]
    assert reports.email_weekly_reports(week_start=WEEK) == 0


def test_without_admin_addresses_the_all_agents_report_is_stored_not_emailed(book, settings):
    settings.REPORTS_ADMIN_EMAILS = []
    assert tasks.weekly_reports(WEEK.isoformat()) == {
        "week_start": "2026-03-02",
        "reports": 3,
        "emailed": 2,
    }


def test_the_task_reports_on_last_week_by_default(book, monkeypatch):
    monkeypatch.setattr(timezone, "localdate", lambda: WEEK_END + timedelta(days=2))
    assert tasks.weekly_reports()["week_start"] == WEEK.isoformat()
    assert reports.last_week(WEEK_END) == WEEK  # on the Monday itself: the week just ended


def test_a_week_must_start_on_a_monday(db):
    with pytest.raises(ValueError, match="not a Monday"):
        reports.build_weekly_reports(week_start=WEEK + timedelta(days=1))


def test_the_weekly_report_is_a_periodic_task_on_mondays_at_nine(db, settings):
    migration = importlib.import_module(
        "notifications.migrations.0004_weekly_reports_and_housekeeping"
    )
    migration.create_schedules(django_apps, schema_editor=None)  # a flush may have removed it
    task = PeriodicTask.objects.select_related("crontab").get(name=WEEKLY_REPORT_NAME)
    assert task.task == "notifications.tasks.weekly_reports"
    crontab = task.crontab
    assert (crontab.minute, crontab.hour, crontab.day_of_week) == ("0", "9", "1")
    assert str(crontab.timezone) == settings.TIME_ZONE
    assert task.enabled


@pytest.mark.parametrize("reached_provider", [True, False])
def test_a_report_whose_run_died_is_asked_for_at_postmark_before_it_is_sent(
    book, providers, reached_provider
):
    reports.build_weekly_reports(week_start=WEEK)
    report = WeeklyReport.objects.get(week_start=WEEK, agent=book.alice)
    claimed_by({"pk": report.pk}, alive=False)
    if reached_provider:  # what the dead run sent before it could record it
        reports._email(report, [book.alice.email])

    reports.email_weekly_reports(week_start=WEEK)

    assert providers.accepted[book.alice.email] == 1
    report.refresh_from_db()
    assert report.emailed_at is not None
    assert report.email_lease_id is None
    (message,) = [m for m in providers.messages if m.recipient == book.alice.email]
    assert message.metadata == {"weekly_report": str(report.pk)}


def test_a_report_whose_run_died_after_the_outbox_wrote_it_is_not_written_again(book, outbox):
    reports.build_weekly_reports(week_start=WEEK)
    report = WeeklyReport.objects.get(week_start=WEEK, agent=book.alice)
    claimed_by({"pk": report.pk}, alive=False)
    reports._email(report, [book.alice.email])
    written = (outbox / "email" / f"report-{report.pk}.eml").stat().st_mtime_ns

    assert reports.email_weekly_reports(week_start=WEEK) == 2  # the other two reports
    assert (outbox / "email" / f"report-{report.pk}.eml").stat().st_mtime_ns == written
    report.refresh_from_db()
    assert report.emailed_at is not None


def test_a_report_postmark_cannot_be_asked_about_waits_for_the_next_run(book, providers):
    reports.build_weekly_reports(week_start=WEEK)
    claimed_by({"agent": book.alice}, alive=False)
    providers.always_lookups("503")

    assert reports.email_weekly_reports(week_start=WEEK) == 2
    report = WeeklyReport.objects.get(week_start=WEEK, agent=book.alice)
    assert report.emailed_at is None
    assert "503" in report.email_error
    assert providers.accepted[book.alice.email] == 0

    providers.always_lookups("ok")
    assert reports.email_weekly_reports(week_start=WEEK) == 1
    assert providers.accepted[book.alice.email] == 1
