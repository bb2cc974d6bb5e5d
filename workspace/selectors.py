"""Read-only questions the agents' workspace asks. Every one starts from `book_of(user)`: the one
place that decides which policies and notifications a user may see."""

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.db.models import Count, F, Prefetch, Q, QuerySet

from notifications import calls, experiments
from notifications import retention as retention_figures
from notifications.models import (
    PENDING_FOR_AGENTS,
    DeliveryEvent,
    Notification,
    TemplateExperiment,
)
from policies.models import Agent, Policy

Status = Notification.Status
PENDING = PENDING_FOR_AGENTS
# Outcomes the dashboard counts, and the statuses each one covers.
OUTCOMES = {
    "delivered": (Status.DELIVERED,),
    "sent": (Status.SENT,),
    "failed": (Status.FAILED, Status.BOUNCED),
}
UPCOMING_DAYS = 90
# Days of expiries the dashboard's retention figures may cover; the second is the default.
RETENTION_PERIODS = (30, 90, 365)
PAGE_SIZE = 50


# The permissions (policies.Policy.Meta.permissions and Django's own) the workspace asks of a
# user who is not working on their own book; the role groups (notifications migration 0011)
# grant them.
SEE_ALL_BOOKS = "policies.view_all_books"
RENEW_ANY = "policies.change_policy"
RETRY_ANY = "notifications.change_notification"
UPLOAD_FOR_ANY = "policies.import_all_books"
CALL_ANY = "notifications.add_calloutcome"


@dataclass(frozen=True)
class Book:
    """The policies and notifications a user may see, and what they may do with them. `agent`
    is None for a user allowed to see every agent's book."""

    agent: Agent | None
    policies: QuerySet[Policy]
    notifications: QuerySet[Notification]
    may_renew: bool = False
    may_retry: bool = False
    may_upload: bool = False
    may_call: bool = False

    @property
    def is_everyone(self) -> bool:
        return self.agent is None


def book_of(user) -> Book | None:
    """A user with the permission to see every book sees all of them, and acts on them as far
    as their other permissions go; an agent sees and works their own book; anyone else, staff
    or not, sees nothing (None)."""
    if not user.is_authenticated or not user.is_active:
        return None
    if user.has_perm(SEE_ALL_BOOKS):
        return Book(
            None,
            Policy.objects.all(),
            Notification.objects.all(),
            may_renew=user.has_perm(RENEW_ANY),
            may_retry=user.has_perm(RETRY_ANY),
            may_upload=user.has_perm(UPLOAD_FOR_ANY),
            may_call=user.has_perm(CALL_ANY),
        )
    agent = Agent.objects.filter(user_id=user.pk).select_related("user").first()
    if agent is None:
        return None
    return Book(
        agent,
        Policy.objects.filter(agent=agent),
        Notification.objects.filter(policy__agent=agent),
        may_renew=True,
        may_retry=True,
        may_upload=True,
        may_call=True,
    )


# --- Pending notices ------------------------------------------------------------------------


@dataclass(frozen=True)
class NoticeFilters:
    due_from: date | None = None
    due_to: date | None = None
    channel: str = ""
    status: str = ""
    product_line: str = ""
    search: str = ""


def pending_notices(book: Book, filters: NoticeFilters) -> QuerySet[Notification]:
    """The book's pending notices matching `filters`, soonest due first."""
    notices = book.notifications.filter(status__in=PENDING).exclude(
        # A failure is history once its expiry no longer stands (renewed, cancelled), or once
        # an email went in its place.
        Q(status=Status.FAILED)
        & (
            ~Q(expiry_date=F("policy__expiry_date"))
            | ~Q(policy__status=Policy.Status.ACTIVE)
            | Q(fallback__isnull=False)
        )
    )
    if filters.due_from:
        notices = notices.filter(due_on__gte=filters.due_from)
    if filters.due_to:
        notices = notices.filter(due_on__lte=filters.due_to)
    if filters.channel:
        notices = notices.filter(channel=filters.channel)
    if filters.status:
        notices = notices.filter(status=filters.status)
    if filters.product_line:
        notices = notices.filter(policy__product_line=filters.product_line)
    if filters.search:
        # Match the book's policies first: a search then reads only their notices by the
        # natural key's index, instead of testing every pending notice's joined rows.
        matching = book.policies.filter(
            Q(policy_number__icontains=filters.search) | Q(customer__name__icontains=filters.search)
        )
        notices = notices.filter(policy__in=matching.values("pk"))
    return notices.select_related("policy__agent__user", "customer").order_by("due_on", "id")


def product_lines(book: Book) -> list[str]:
    return list(
        book.policies.order_by("product_line").values_list("product_line", flat=True).distinct()
    )


# --- Upcoming expiries ----------------------------------------------------------------------


def upcoming_expiries(
    book: Book, *, today: date, search: str = "", product_line: str = ""
) -> QuerySet[Policy]:
    """Active policies expiring in the next UPCOMING_DAYS days, each with the reminders about
    its current expiry (what has been sent), soonest expiry first."""
    policies = book.policies.filter(
        status=Policy.Status.ACTIVE,
        expiry_date__gte=today,
        expiry_date__lte=today + timedelta(days=UPCOMING_DAYS),
    )
    if product_line:
        policies = policies.filter(product_line=product_line)
    if search:
        policies = policies.filter(
            Q(policy_number__icontains=search) | Q(customer__name__icontains=search)
        )
    about_current_expiry = (
        Notification.objects.filter(expiry_date=F("policy__expiry_date"))
        .exclude(status=Status.SKIPPED)
        .order_by("due_on", "id")
    )
    return (
        policies.select_related("customer", "agent__user")
        .prefetch_related(Prefetch("notifications", queryset=about_current_expiry))
        .order_by("expiry_date", "id")
    )


# --- One policy -----------------------------------------------------------------------------


def policy_timeline(policy: Policy) -> list[Notification]:
    """Every notification of the policy, oldest first, each with its delivery events in the
    order they happened."""
    return list(
        policy.notifications.select_related("fallback_for", "fallback")
        .prefetch_related(
            Prefetch("events", queryset=DeliveryEvent.objects.order_by("occurred_at", "id"))
        )
        .order_by("due_on", "created_at", "id")
    )


# --- The call list ---------------------------------------------------------------------------


def needs_a_call(book: Book, *, today: date) -> QuerySet[Policy]:
    """The book's policies an agent should call (notifications.calls, the one rule)."""
    return calls.needs_a_call(book.policies, today=today)


# --- Keyset pagination ----------------------------------------------------------------------


@dataclass(frozen=True)
class Page:
    rows: list = field(default_factory=list)
    next_cursor: str = ""
    previous_cursor: str = ""


def keyset_page(
    queryset: QuerySet, *, date_field: str, after: str = "", before: str = "", size: int = PAGE_SIZE
) -> Page:
    """`size` rows ordered by (date_field, id), after or before a cursor: no OFFSET and no
    COUNT(*), so a deep page of a 100,000-row book costs what the first page does."""
    cursor = _parse_cursor(before) or _parse_cursor(after)
    backwards = bool(_parse_cursor(before))
    ordered = queryset.order_by(*((f"-{date_field}", "-id") if backwards else (date_field, "id")))
    if cursor:
        day, pk = cursor
        # The plain range on date_field first lets PostgreSQL walk an index from the cursor.
        if backwards:
            ordered = ordered.filter(
                Q(**{f"{date_field}__lte": day}),
                Q(**{f"{date_field}__lt": day}) | Q(**{date_field: day, "id__lt": pk}),
            )
        else:
            ordered = ordered.filter(
                Q(**{f"{date_field}__gte": day}),
                Q(**{f"{date_field}__gt": day}) | Q(**{date_field: day, "id__gt": pk}),
            )
    rows = list(ordered[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    if backwards:
        rows.reverse()
        return Page(
            rows,
            next_cursor=_cursor_of(rows[-1], date_field) if rows else "",
            previous_cursor=_cursor_of(rows[0], date_field) if more else "",
        )
    return Page(
        rows,
        next_cursor=_cursor_of(rows[-1], date_field) if more else "",
        previous_cursor=_cursor_of(rows[0], date_field) if cursor and rows else "",
    )


def _cursor_of(row, date_field: str) -> str:
    return f"{getattr(row, date_field).isoformat()}.{row.pk}"


def _parse_cursor(text: str) -> tuple[date, int] | None:
    """A cursor from the query string; a malformed one means the first page."""
    day, _, pk = (text or "").partition(".")
    try:
        return date.fromisoformat(day), int(pk)
    except ValueError:
        return None


# --- Dashboard ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Week:
    starts_on: date
    expiries: int = 0
    delivered: int = 0
    sent: int = 0
    failed: int = 0


@dataclass(frozen=True)
class Dashboard:
    due_this_week: int
    sent: int
    delivered: int
    failed: int
    since: date
    weeks: list[Week]


def dashboard(book: Book, *, today: date, weeks_back: int = 8, weeks_ahead: int = 8) -> Dashboard:
    """The book at a glance: renewals due this week; reminders sent, delivered and failed in
    the last 30 days; and per week, expiries and the outcomes of the reminders due that week."""
    this_week = today - timedelta(days=today.weekday())
    first, last = this_week - timedelta(weeks=weeks_back), this_week + timedelta(weeks=weeks_ahead)
    since = today - timedelta(days=30)
    # One pass over each table's index, by day: the weeks' figures and the last 30 days' both
    # come from it (notification_due_status: due_on, status; policy_expiry_status).
    outcome_of = {status: name for name, statuses in OUTCOMES.items() for status in statuses}
    outcomes: Counter[tuple[date, str]] = Counter()
    recent: Counter[str] = Counter()
    for day, status, count in (
        book.notifications.filter(
            due_on__gte=min(first, since), due_on__lt=last + timedelta(weeks=1)
        )
        .filter(status__in=outcome_of)
        .values_list("due_on", "status")
        .annotate(count=Count("status"))
        .order_by()
    ):
        if day >= first:
            outcomes[(_week_of(day), outcome_of[status])] += count
        if since <= day <= today:
            recent["sent"] += count if status in (Status.SENT, Status.DELIVERED) else 0
            recent["delivered"] += count if status == Status.DELIVERED else 0
            recent["failed"] += count if status in OUTCOMES["failed"] else 0
    expiries: Counter[date] = Counter()
    due_this_week = 0
    for day, status, count in (
        book.policies.exclude(status=Policy.Status.CANCELLED)
        .filter(expiry_date__gte=first, expiry_date__lt=last + timedelta(weeks=1))
        .values_list("expiry_date", "status")
        .annotate(count=Count("status"))
        .order_by()
    ):
        expiries[_week_of(day)] += count
        if status == Policy.Status.ACTIVE and _week_of(day) == this_week:
            due_this_week += count
    weeks = []
    starts_on = first
    while starts_on <= last:
        weeks.append(
            Week(
                starts_on,
                expiries=expiries[starts_on],
                **{name: outcomes[(starts_on, name)] for name in OUTCOMES},
            )
        )
        starts_on += timedelta(weeks=1)
    recent = {name: recent[name] for name in ("sent", "delivered", "failed")}
    return Dashboard(due_this_week=due_this_week, since=since, weeks=weeks, **recent)


def _week_of(day: date) -> date:
    """The Monday of the day's week."""
    return day - timedelta(days=day.weekday())


def retention(book: Book, *, today: date, days: int) -> retention_figures.Retention:
    """The renewal rates of the book's terms that expired in the `days` days before today;
    over every book, with the by-agent table."""
    start, end = retention_figures.period_ending(today - timedelta(days=1), days=days)
    return retention_figures.figures(start=start, end=end, agent=book.agent)


# --- Template experiments -------------------------------------------------------------------


def experiment_results(book: Book) -> list[experiments.ExperimentResult]:
    """Every template experiment, running ones first then the newest, with its figures in the
    book as last counted: an agent's own, or every agent's for a user who sees every book."""
    return experiments.results(
        TemplateExperiment.objects.select_related("rule").order_by(
            F("ended_at").desc(nulls_first=True), "-started_at", "-id"
        ),
        agent=book.agent,
    )
