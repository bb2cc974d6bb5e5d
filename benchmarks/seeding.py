"""Seeding for the benchmarks: rows written with PostgreSQL's COPY in the columns the models have
now. A row names the fields a benchmark cares about; every other column takes its field's
default (now, for auto_now fields), so a column added with a default never breaks a benchmark,
and one without is an error that names it."""

from collections.abc import Iterable
from datetime import datetime

from django.db import connection, models
from django.utils import timezone

from policies.models import Customer

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
