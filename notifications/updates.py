"""Bulk UPDATEs that set each row its own value, shared by the send path and events' delivery."""

from django.db import connections, router
from django.db.models import Model, Value
from django.db.models.expressions import RawSQL


def each_row(model: type[Model], values: dict[int, object], field_name: str) -> Value | RawSQL:
    """Each row's own value of a field (values by primary key), as one expression for a bulk
    UPDATE: a plain CASE on the id (Django's Case(When(pk=...)) costs a worker more CPU than the
    send). One value for all (or none: the UPDATE has no rows) is a plain value."""
    field = model._meta.get_field(field_name)
    distinct = set(values.values())
    if len(distinct) <= 1:
        return Value(distinct.pop() if distinct else None, output_field=field)
    database = connections[router.db_for_write(model)]
    params = []
    for pk, value in values.items():
        params += [pk, field.get_db_prep_value(value, database)]
    whens = " ".join(["WHEN %s THEN %s"] * len(values))
    primary_key = database.ops.quote_name(model._meta.pk.column)
    return RawSQL(f"CASE {primary_key} {whens} END", params, output_field=field)
