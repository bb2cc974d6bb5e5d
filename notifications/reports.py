"""The weekly report: for each agent, what their reminders did last week (Monday to Sunday in
TIME_ZONE) and which of their policies expire in the 30 days after it with no delivered
reminder; and the same over all agents, for admins. Each is stored once per agent and week (a
WeeklyReport row, a CSV and an SVG chart under REPORTS_DIR) and emailed once.

What each figure counts, for the notifications of the agent's policies:
- planned: notifications created in the week (skipped ones excepted: never meant to go);
- sent, delivered: sent_at, delivered_at in the week;
- failed: failed or bounced, having become so in the week;
- opted out: customers of the agent's book who refused a channel in the week, whatever the
  way (ConsentChange: the preferences page, one-click unsubscribe, STOP, a complaint...);
- retention: the terms that expired in the RETENTION_WEEKS weeks ending with the report's
  week (one week's expiries are too few to read a rate from), renewed on or before their
  expiry, as notifications.retention counts them: the rate in the email and the stored row,
  every breakdown in the CSV.
"""

import csv
import io
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from pathlib import Path

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone

from notifications import charts, claimed_emails, retention
from notifications.channels.outbox import REPORT_HEADER, REPORT_METADATA
from notifications.files import write_atomically
from notifications.models import ConsentChange, Notification, WeeklyReport
from policies.models import RENEWAL_DECLINED, Agent, Policy
from policies.spreadsheets import spreadsheet_safe

Status = Notification.Status
EXPIRING_WITHIN_DAYS = 30
RETENTION_WEEKS = 13
UNSENT_REPORTS_RETRIED_FOR_WEEKS = 4
FIGURES = ("planned", "sent", "delivered", "failed", "opted_out", "expiring_undelivered")
LABELS = {
    "planned": "Reminders planned",
    "sent": "Sent",
    "delivered": "Delivered",
    "failed": "Failed",
    "opted_out": "Customers opted out",
    "expiring_undelivered": f"Expiring in {EXPIRING_WITHIN_DAYS} days, none delivered",
}
# Figures the chart draws in red.
ALARMING = ("failed", "expiring_undelivered")
RETENTION_COLUMNS = (
    "terms",
    "renewed_before_expiry",
    "rate",
    "renewed_after_expiry",
    "lapsed",
    "few",
)
EXPIRING_COLUMNS = (
    "policy_number",
    "product_line",
    "expiry_date",
    "customer",
    "customer_email",
    "agent_email",
)


@dataclass
class Figures:
    planned: int = 0
    sent: int = 0
    delivered: int = 0
    failed: int = 0
    opted_out: int = 0
    expiring: list[Policy] = field(default_factory=list)
    rates: retention.Retention | None = None

    @property
    def expiring_undelivered(self) -> int:
        return len(self.expiring)

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in FIGURES}


def last_week(today: date) -> date:
    """The Monday of the week before the one `today` is in."""
    return today - timedelta(days=today.weekday() + 7)


def week_bounds(week_start: date) -> tuple[datetime, datetime]:
    """Monday 00:00 to the next Monday 00:00 in TIME_ZONE (each made aware on its own day, so
    a week with a DST change is 167 or 169 hours long)."""
    start = timezone.make_aware(datetime.combine(week_start, time.min))
    end = timezone.make_aware(datetime.combine(week_start + timedelta(days=7), time.min))
    return start, end


def figures_by_agent(week_start: date) -> dict[int, Figures]:
    """Each agent's figures for the week: one grouped query per figure, whatever the number of
    agents."""
    start, end = week_bounds(week_start)
    figures: dict[int, Figures] = defaultdict(Figures)
    in_week = {
        "planned": Notification.objects.filter(created_at__gte=start, created_at__lt=end).exclude(
            status=Status.SKIPPED
        ),
        "sent": Notification.objects.filter(sent_at__gte=start, sent_at__lt=end),
        "delivered": Notification.objects.filter(delivered_at__gte=start, delivered_at__lt=end),
        "failed": Notification.objects.filter(
            status__in=[Status.FAILED, Status.BOUNCED],
            status_changed_at__gte=start,
            status_changed_at__lt=end,
        ),
    }
    for name, notifications in in_week.items():
        for agent_id, count in (
            notifications.values("policy__agent_id")
            .annotate(count=Count("id"))
            .values_list("policy__agent_id", "count")
        ):
            setattr(figures[agent_id], name, count)
    opted_out = (
        _opt_outs(start, end)
        .values("customer__policies__agent_id")
        .annotate(count=Count("customer_id", distinct=True))
        .values_list("customer__policies__agent_id", "count")
    )
    for agent_id, count in opted_out:
        if agent_id is not None:  # a customer with no policy left
            figures[agent_id].opted_out = count
    for policy in expiring_without_delivery(week_start + timedelta(days=7)):
        figures[policy.agent_id].expiring.append(policy)
    per_agent = retention.figures_per_agent(**retention_period(week_start))
    for agent_id, rates in per_agent.items():
        figures[agent_id].rates = rates
    return figures


def retention_period(week_start: date) -> dict[str, date]:
    """The expiries the report's retention figures cover: RETENTION_WEEKS weeks to its end."""
    end = week_start + timedelta(days=6)
    return {"start": end - timedelta(weeks=RETENTION_WEEKS) + timedelta(days=1), "end": end}


def _opt_outs(start: datetime, end: datetime):
    return ConsentChange.objects.filter(accepted=False, changed_at__gte=start, changed_at__lt=end)


def expiring_without_delivery(since: date) -> list[Policy]:
    """Active policies expiring from `since` to EXPIRING_WITHIN_DAYS later whose reminders
    about that expiry have none delivered; not those whose customer declined to renew (their
    reminders stopped on purpose)."""
    delivered = Notification.objects.filter(
        policy=OuterRef("pk"), expiry_date=OuterRef("expiry_date"), status=Status.DELIVERED
    )
    return list(
        Policy.objects.filter(
            status=Policy.Status.ACTIVE,
            expiry_date__range=(since, since + timedelta(days=EXPIRING_WITHIN_DAYS)),
        )
        .exclude(Exists(delivered))
        .exclude(RENEWAL_DECLINED)
        .select_related("customer", "agent")
        .order_by("expiry_date", "policy_number")
    )


def build_weekly_reports(*, week_start: date) -> list[WeeklyReport]:
    """Store the week's report for each agent and for all agents, unless stored already (a
    second run changes nothing). Returns the week's reports."""
    if week_start.weekday() != 0:
        raise ValueError(f"{week_start} is not a Monday")
    stored = set(
        WeeklyReport.objects.filter(week_start=week_start).values_list("agent_id", flat=True)
    )
    agents = [agent for agent in Agent.objects.select_related("user") if agent.pk not in stored]
    if agents or None not in stored:
        retention.refresh()  # the outcomes since the last daily scan count too
        figures = figures_by_agent(week_start)
        new = [_store(week_start, agent, figures[agent.pk], {}) for agent in agents]
        if None not in stored:
            every_agent = list(Agent.objects.select_related("user"))
            total = _total(figures, week_start)
            new.append(_store(week_start, None, total, figures, every_agent))
        # Two runs at once both write the same files; the unique constraints keep one row.
        WeeklyReport.objects.bulk_create(new, ignore_conflicts=True)
    return list(WeeklyReport.objects.filter(week_start=week_start).select_related("agent__user"))


def _total(figures: dict[int, Figures], week_start: date) -> Figures:
    total = Figures()
    for one in figures.values():
        for name in ("planned", "sent", "delivered", "failed"):
            setattr(total, name, getattr(total, name) + getattr(one, name))
        total.expiring.extend(one.expiring)
    # A customer of two agents counts once over all agents.
    total.opted_out = (
        _opt_outs(*week_bounds(week_start))
        .filter(customer__policies__isnull=False)
        .values("customer_id")
        .distinct()
        .count()
    )
    total.expiring.sort(key=lambda policy: (policy.expiry_date, policy.policy_number))
    total.rates = retention.figures(**retention_period(week_start))
    return total


def _store(
    week_start: date,
    agent: Agent | None,
    figures: Figures,
    per_agent: dict[int, Figures],
    agents: list[Agent] = (),
) -> WeeklyReport:
    stem = f"{week_start.isoformat()}/{f'agent-{agent.pk}' if agent else 'all-agents'}"
    title = f"{agent or 'All agents'}, week of {week_start:%d %b %Y}"
    _write(f"{stem}.csv", _csv(week_start, agent, figures, per_agent, agents))
    _write(f"{stem}.svg", charts.figures_chart(title, _chart_figures(figures)))
    return WeeklyReport(
        agent=agent,
        week_start=week_start,
        csv_name=f"{stem}.csv",
        chart_name=f"{stem}.svg",
        retention_terms=figures.rates.total.terms if figures.rates else 0,
        retention_renewed=figures.rates.total.renewed_before if figures.rates else 0,
        **figures.counts(),
    )


def _chart_figures(figures: Figures) -> list[charts.Figure]:
    return [
        charts.Figure(LABELS[name], value, alarming=name in ALARMING)
        for name, value in figures.counts().items()
    ]


def report_path(name: str) -> Path:
    return Path(settings.REPORTS_DIR) / name


def _write(name: str, text: str) -> None:
    write_atomically(report_path(name), text.encode("utf-8"))


def _csv(
    week_start: date,
    agent: Agent | None,
    figures: Figures,
    per_agent: dict[int, Figures],
    agents: list[Agent],
) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["Renewly weekly report", agent.email if agent else "all agents"])
    week_end = week_start + timedelta(days=6)
    writer.writerow(["week", f"{week_start.isoformat()} to {week_end.isoformat()}"])
    writer.writerow([])
    writer.writerow(["figure", "count"])
    writer.writerows(figures.counts().items())
    if per_agent:
        writer.writerow([])
        writer.writerow(["agent_email", *FIGURES])
        for one in agents:
            counts = per_agent.get(one.pk, Figures()).counts()
            writer.writerow([spreadsheet_safe(one.email), *counts.values()])
    if figures.rates:
        _retention_csv(writer, figures.rates)
    writer.writerow([])
    writer.writerow(EXPIRING_COLUMNS)
    for policy in figures.expiring:
        values = [
            policy.policy_number,
            policy.product_line,
            policy.expiry_date.isoformat(),
            policy.customer.name,
            policy.customer.email,
            policy.agent.email,
        ]
        writer.writerow([spreadsheet_safe(value) for value in values])
    return out.getvalue()


def _retention_csv(writer, rates: retention.Retention) -> None:
    writer.writerow([])
    writer.writerow(
        [
            "renewals before expiry",
            f"terms that expired {rates.start.isoformat()} to {rates.end.isoformat()}",
            f"undecided (left out): {rates.undecided}",
        ]
    )
    writer.writerow(["group", "value", *RETENTION_COLUMNS])
    for _id, title, rows in [("total", "All", [rates.total]), *rates.breakdowns]:
        for rate in rows:
            writer.writerow(
                [
                    title,
                    spreadsheet_safe(rate.label),
                    rate.terms,
                    rate.renewed_before,
                    "" if rate.rate is None else f"{rate.rate:.3f}",
                    rate.renewed_after,
                    rate.lapsed,
                    "few" if rate.few else "",
                ]
            )


def email_weekly_reports(*, week_start: date) -> int:
    """Email each report of the week, and of the few weeks before it, not emailed yet: an
    agent's to the agent, the all-agents one to REPORTS_ADMIN_EMAILS (if any). Returns how many
    were sent. Each is sent once, whatever the runs (notifications.claimed_emails)."""
    sent = 0
    reports = WeeklyReport.objects.filter(
        week_start__lte=week_start,
        # A send that failed is tried again by the next weeks' runs; the task runs weekly.
        week_start__gt=week_start - timedelta(weeks=UNSENT_REPORTS_RETRIED_FOR_WEEKS),
        emailed_at__isnull=True,
    ).order_by("week_start", "pk")
    for report in reports.select_related("agent__user"):
        recipients = [report.agent.email] if report.agent else settings.REPORTS_ADMIN_EMAILS
        if recipients and claimed_emails.claim_and_email(
            report, recipients, send=_email, metadata_key=REPORT_METADATA
        ):
            sent += 1
    return sent


def _retention_line(report: WeeklyReport) -> str:
    period = retention_period(report.week_start)
    rate = retention.Rate("", report.retention_terms, report.retention_renewed)
    few = " (few: too small to compare)" if rate.few else ""
    return (
        f"Renewed on or before expiry, terms that expired {period['start']:%d %b} to "
        f"{period['end']:%d %b}: {rate.percent} ({rate.renewed_before} of {rate.terms}){few}"
    )


def _email(report: WeeklyReport, recipients: list[str]) -> None:
    who = report.agent.name if report.agent else "All agents"
    week_end = report.week_start + timedelta(days=6)
    lines = [
        f"Renewly weekly report for {who}: {report.week_start:%d %b} to {week_end:%d %b %Y}.",
        "",
        *(f"{LABELS[name]}: {getattr(report, name)}" for name in FIGURES),
        _retention_line(report),
        "",
        "The attached CSV lists the policies expiring soon with no delivered reminder, and the",
        "renewal rates by product line, channels reached, lead time and template.",
    ]
    email = EmailMultiAlternatives(
        subject=f"Renewly weekly report, week of {report.week_start:%d %b %Y}: {who}",
        body="\n".join(lines),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )
    stem = f"renewly-report-{report.week_start.isoformat()}"
    email.attach(f"{stem}.csv", report_path(report.csv_name).read_text(), "text/csv")
    email.attach(f"{stem}.svg", report_path(report.chart_name).read_text(), "image/svg+xml")
    email.tags = ["weekly-report"]  # anymail passes it to the ESP
    # What tells this email apart at the provider, should the run die before recording it.
    email.metadata = {REPORT_METADATA: str(report.pk)}
    email.extra_headers[REPORT_HEADER] = str(report.pk)
    email.send()
