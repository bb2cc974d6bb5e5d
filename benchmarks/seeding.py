"""Seeding for the benchmarks: rows written with PostgreSQL's COPY in the columns the models have
now. A row names the fields a benchmark cares about; every other column takes its field's
default (now, for auto_now fields), so a column added with a default never breaks a benchmark,
and one without is an error that names it."""

import time
from collections.abc import Iterable, Iterator
from datetime import date, datetime, timedelta

from django.db import OperationalError, connection, models
from django.utils import timezone

from notifications.models import MessageTemplate, ReminderRule
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
