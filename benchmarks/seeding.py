"""Seeding for the benchmarks: rows written with PostgreSQL's COPY in the columns the models have
now. A row names the fields a benchmark cares about; every other column takes its field's
default (now, for auto_now fields), so a column added with a default never breaks a benchmark,
and one without is an error that names it."""

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day

from django.db import OperationalError, connection, models
from django.utils import timezone

from notifications import experiments
from notifications.models import (
    MessageTemplate,
    Notification,
    PolicyOutcome,
    Reach,
    ReminderRule,
    ReminderRun,
)
from policies.models import Customer, Policy
from policies.services import ensure_agent

# Fields whose Python values COPY writes as they are (exactly these classes, not subclasses such
# as a time zone field); the others go through the field's own conversion for the database.
PLAIN_FIELDS = (
    models.AutoField,
    models.BigAutoField,
    models.IntegerField,
    models.CharField,
    models.TextField,
    models.BooleanField,
    models.DateField,
    models.ForeignKey,
)


def copy_rows(model: type[models.Model], rows: Iterable[dict]) -> int:
    """COPY `rows` (dicts by field attname: "customer_id", not "customer") into `model`'s
    table; then move its id sequence past them and refresh the planner's statistics. Returns
    how many rows were written."""
    fields = model._meta.concrete_fields
    table = model._meta.db_table
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    defaults = {field.attname: _default(model, field, timezone.now()) for field in fields}
    converters = [_converter(field) for field in fields]
    written = 0
    with connection.connection.cursor() as cursor:
        with cursor.copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                unknown = row.keys() - defaults.keys()
                if unknown:
                    raise ValueError(f"{model.__name__} has no field {', '.join(sorted(unknown))}")
                values = {**defaults, **row}
                copy.write_row(
                    [
                        convert(values[field.attname])
                        for field, convert in zip(fields, converters, strict=True)
                    ]
                )
                written += 1
        primary_key = model._meta.pk.column
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{table}', '{primary_key}'), "
            f"GREATEST((SELECT MAX({primary_key}) FROM {table}), 1))"
        )
        cursor.execute(f"ANALYZE {table}")
    return written


def policy_rows(
    count: int, *, changed_every: int = 0, prefix: str = "BENCH"
) -> Iterator[dict[str, str]]:
    """`count` rows of the policy CSV's columns (policies.importers.COLUMNS), as the CSV
    importer and the integration API take them: two policies per customer, agents agent0..19,
    expiries over a year from 2026-01-02. With `changed_every`, every that many-th row expires a
    year later (an update of a row imported before)."""
    first_expiry = date(2026, 1, 2)
    for n in range(count):
        expiry = first_expiry + timedelta(days=n % 365)
        if changed_every and n % changed_every == 0:
            expiry += timedelta(days=365)
        yield {
            "policy_number": f"{prefix}-{n:07d}",
            "product_line": ("auto", "home", "life", "travel")[n % 4],
            "customer_name": f"Customer {n}",
            # Two policies per customer; each prefix's customers of their own.
            "customer_email": f"customer{n // 2}@{prefix.lower()}.example",
            "customer_phone": f"+1415{5550000 + n % 10000:07d}",
            "customer_timezone": ("Europe/Madrid", "America/New_York", "UTC")[n % 3],
            "customer_language": ("en", "es")[n % 2],
            "agent_email": f"agent{n % 20}@agency.example",
            "start_date": (expiry - timedelta(days=365)).isoformat(),
            "expiry_date": expiry.isoformat(),
            "status": "active",
        }


def copy_customers(count: int) -> int:
    """Customers 1..count, each with an email and a phone, consenting to both channels."""
    return copy_rows(
        Customer,
        (
            {
                "id": n,
                "name": f"Customer {n}",
                "email": f"c{n}@mail.example",
                "phone": f"+1415{5550000 + n % 10000:07d}",
                "timezone": "UTC",
            }
            for n in range(1, count + 1)
        ),
    )


def drop_database(name: str) -> None:
    """Drop a benchmark's database, waiting for its workers' connections to close as their
    processes exit."""
    for attempt in range(10):
        try:
            connection.creation.destroy_test_db(name, verbosity=0)
            return
        except OperationalError:
            if attempt == 9:
                raise
            time.sleep(1)


def make_agents(count: int) -> list[int]:
    """The ids of agents agent0..agent<count-1>, made if missing."""
    return [
        ensure_agent(username=f"agent{n}", email=f"agent{n}@agency.example").pk
        for n in range(count)
    ]


def replace_rules(lead_days: Iterable[int]) -> None:
    """Replace every reminder rule with one email and one SMS rule per lead time, on the
    default templates the migrations seed."""
    ReminderRule.objects.all().delete()
    for channel in ("email", "sms"):
        template = MessageTemplate.objects.filter(channel=channel, kind="reminder").first()
        if template is None:
            raise RuntimeError(f"no {channel} template: the migrations seed one per channel")
        for lead in lead_days:
            ReminderRule.objects.create(lead_days=lead, channel=channel, template=template)


def copy_policyholders(
    ids: range, *, expiry_date: date, agent_ids: list[int], changed_at: datetime | None = None
) -> None:
    """Customers with these ids, each with an email address and a phone number of their own (the
    fake provider counts by recipient), consenting to both channels, and one active policy each
    (the same id), expiring on `expiry_date`, last changed at `changed_at` (default: now)."""
    if not ids:
        return
    copy_rows(
        Customer,
        (
            {
                "id": n,
                "name": f"Customer {n}",
                "email": f"c{n}@mail.example",
                "phone": f"+1415{5550000 + n:07d}",
                "timezone": "UTC",
            }
            for n in ids
        ),
    )
    copy_rows(
        Policy,
        (
            {
                "id": n,
                "policy_number": f"D-{n:08d}",
                "product_line": ("auto", "home", "life", "travel")[n % 4],
                "customer_id": n,
                "agent_id": agent_ids[n % len(agent_ids)],
                "start_date": expiry_date - timedelta(days=365),
                "expiry_date": expiry_date,
                **({"updated_at": changed_at} if changed_at else {}),
            }
            for n in ids
        ),
    )


# (channel, lead days) of each term's reminders in copy_outcome_book, the longest lead first.
BOOK_TOUCHES = (("email", 30), ("email", 14), ("sms", 14), ("sms", 7), ("email", 3))
# How a past term ended, by its policy's number modulo 20: renewed on or before the expiry,
# renewed after it (in the grace period), lapsed, or lapsed and then renewed late.
TERM_ENDINGS = ("before",) * 11 + ("after",) * 2 + ("lapsed",) * 6 + ("late",)
# What became of a reminder already due, by (policy, reminder) modulo 20.
TOUCH_STATUSES = ("delivered",) * 13 + ("sent",) * 3 + ("failed",) * 2 + ("bounced", "cancelled")


@dataclass(frozen=True)
class BookTerm:
    """One policy of copy_outcome_book: its term's expiry, its reminders' (channel, lead days,
    status, sent at, delivered at), and how the term ended (None: not yet)."""

    expiry_date: date
    touches: list[tuple[str, int, str, datetime | None, datetime | None]]
    ending: str | None


def book_term(n: int, *, today: date) -> BookTerm:
    """Policy n's term: one in ten expires from 2 days ago to 117 days ahead (active: the
    expired ones undecided, the others with reminders to come); the others expired in the two
    years before today and ended as TERM_ENDINGS says."""
    if n % 10 == 0:
        expiry, ending = today + timedelta(days=(n // 10) % 120 - 2), None
    else:
        expiry, ending = today - timedelta(days=1 + (n * 7919) % 730), TERM_ENDINGS[n % 20]
    touches = []
    for number, (channel, lead_days) in enumerate(BOOK_TOUCHES):
        due_on = expiry - timedelta(days=lead_days)
        if due_on >= today:
            touches.append((channel, lead_days, "planned", None, None))
            continue
        status = TOUCH_STATUSES[(n * 7 + number * 3) % len(TOUCH_STATUSES)]
        sent_at = datetime.combine(due_on, time_of_day(10), tzinfo=UTC) + timedelta(minutes=n % 600)
        delivered_at = sent_at + timedelta(minutes=2) if status == "delivered" else None
        touches.append(
            (channel, lead_days, status, sent_at if status != "failed" else None, delivered_at)
        )
    return BookTerm(expiry, touches, ending)


def copy_outcome_book(count: int, *, agent_ids: list[int], today: date) -> dict[str, int]:
    """A book of `count` policies (one customer each, agents in turn, four product lines),
    each with len(BOOK_TOUCHES) reminders about its term's expiry and, for a term that ended,
    its outcomes as notifications.outcomes.record writes them (counts, channels reached, last
    delivered touch). Rules: replace_rules' email and SMS rules of BOOK_TOUCHES' lead times.
    Returns how many rows of each kind it wrote."""
    replace_rules(sorted({lead for _, lead in BOOK_TOUCHES}, reverse=True))
    rules = {
        (rule.channel, rule.lead_days): (rule.pk, rule.template_id)
        for rule in ReminderRule.objects.all()
    }
    run = ReminderRun.objects.create(run_date=today, finished_at=timezone.now())

    def policies():
        for n in range(1, count + 1):
            term = book_term(n, today=today)
            renewed = term.ending in ("before", "after", "late")
            yield {
                "id": n,
                "policy_number": f"R-{n:08d}",
                "product_line": ("auto", "home", "life", "travel")[n % 4],
                "customer_id": n,
                "agent_id": _book_agent(n, agent_ids),
                "start_date": term.expiry_date - timedelta(days=365),
                # A renewed policy's next term is still to come (the scan would have lapsed it).
                "expiry_date": today + timedelta(days=1 + n % 365) if renewed else term.expiry_date,
                "status": "lapsed" if term.ending == "lapsed" else "active",
            }

    def notifications():
        for n in range(1, count + 1):
            term = book_term(n, today=today)
            for number, (channel, lead_days, status, sent_at, delivered_at) in enumerate(
                term.touches
            ):
                pk = (n - 1) * len(BOOK_TOUCHES) + number + 1
                yield {
                    "id": pk,
                    "policy_id": n,
                    "customer_id": n,
                    "rule_id": rules[channel, lead_days][0],
                    "run_id": run.pk,
                    "channel": channel,
                    "expiry_date": term.expiry_date,
                    "lead_days": lead_days,
                    "due_on": term.expiry_date - timedelta(days=lead_days),
                    "status": status,
                    "attempts": 0 if status == "planned" else 1,
                    "sent_at": sent_at,
                    "delivered_at": delivered_at,
                    # Zero-padded: its index grows at one end (a random insert reads a page each).
                    "provider_message_id": f"r-{pk:09d}" if sent_at else "",
                }

    def outcomes():
        pk = 0
        for n in range(1, count + 1):
            term = book_term(n, today=today)
            if term.ending is None:
                continue
            endings = {
                "before": [("renewed", (0, 1, 2, 5, 10)[n % 5])],
                "after": [("renewed", -1 - n % 3)],
                "lapsed": [("lapsed", -1)],
                "late": [("lapsed", -1), ("renewed", -20)],
            }[term.ending]
            for kind, days_before in endings:
                pk += 1
                occurred_at = datetime.combine(
                    term.expiry_date - timedelta(days=days_before), time_of_day(12), tzinfo=UTC
                )
                agent_id = _book_agent(n, agent_ids)
                yield _outcome_row(pk, n, term, kind, days_before, occurred_at, rules, agent_id)

    written = {
        "customers": copy_customers(count),
        "policies": copy_rows(Policy, policies()),
        "notifications": copy_rows(Notification, notifications()),
        "outcomes": copy_rows(PolicyOutcome, outcomes()),
    }
    return written


def assign_variants(assignment: experiments.Assignment, *, rule_id: int) -> int:
    """Put each of the rule's reminders in its policy's variant of a running experiment, as
    planning would have (Assignment.variant_sql), one UPDATE rather than a Python loop over
    millions of rows. Returns how many reminders it updated."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {Notification._meta.db_table} "
            f"SET variant_id = {assignment.variant_sql(policy_id='policy_id')} "
            "WHERE rule_id = %s",
            [rule_id],
        )
        return cursor.rowcount


def _book_agent(n: int, agent_ids: list[int]) -> int:
    # Blocks of 20 policies: every agent's book has each ending of TERM_ENDINGS.
    return agent_ids[(n // len(TERM_ENDINGS)) % len(agent_ids)]


def _outcome_row(pk, n, term, kind, days_before, occurred_at, rules, agent_id) -> dict:
    sent = [touch for touch in term.touches if touch[3] and touch[3] <= occurred_at]
    delivered = [touch for touch in sent if touch[4] and touch[4] <= occurred_at]
    last = max(delivered, key=lambda touch: touch[4], default=None)
    channels = {"email" if touch[0] == "email" else "phone" for touch in delivered}
    reach = {
        frozenset(): Reach.NONE,
        frozenset({"email"}): Reach.EMAIL,
        frozenset({"phone"}): Reach.PHONE,
    }.get(frozenset(channels), Reach.BOTH)
    last_number = term.touches.index(last) if last else None
    return {
        "id": pk,
        "policy_id": n,
        "kind": kind,
        "source": "scan" if kind == "lapsed" else "import",
        "expiry_date": term.expiry_date,
        "new_expiry_date": term.expiry_date + timedelta(days=365) if kind == "renewed" else None,
        "occurred_at": occurred_at,
        "recorded_at": occurred_at,
        "days_before_expiry": days_before,
        "reminders_sent": len(sent),
        "reminders_delivered": len(delivered),
        "last_touch_id": (n - 1) * len(BOOK_TOUCHES) + last_number + 1 if last else None,
        "last_touch_channel": last[0] if last else "",
        "last_touch_lead_days": last[1] if last else None,
        "last_touch_template_id": rules[last[0], last[1]][1] if last else None,
        "channels_reached": reach,
        "agent_id": agent_id,
        "product_line": ("auto", "home", "life", "travel")[n % 4],
    }


class _Required:
    """A column a benchmark must fill in: its field has no default."""

    def __init__(self, model, field):
        self.name = f"{model.__name__}.{field.attname}"


def _default(model, field: models.Field, now: datetime):
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return now
    if field.has_default():
        return field.get_default()
    if field.null:
        return None
    if field.primary_key:
        return _Required(model, field)
    if isinstance(field, models.CharField | models.TextField) and field.blank:
        return ""
    return _Required(model, field)


def _converter(field: models.Field):
    def convert(value):
        if isinstance(value, _Required):
            raise ValueError(f"{value.name} has no default: the benchmark's rows must give it")
        return field.get_db_prep_save(value, connection)

    def as_is(value):
        if isinstance(value, _Required):
            convert(value)
        return value

    return as_is if type(field) in PLAIN_FIELDS else convert
