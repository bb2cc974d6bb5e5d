"""The importer's reads and writes, a chunk at a time: the stored rows a chunk names, by their
natural key, then one statement for its new rows and one for its changed ones. Whether a row is
new, changed or unchanged is decided in policies.importers, once for every database; a store
only moves rows, with the fastest means its database has.

On PostgreSQL a statement takes a whole chunk as one JSON parameter, unpacked by the server
(`jsonb_array_elements`): json.dumps encodes it in C, where 5,000 rows of 7 columns sent as
separate parameters or arrays would each be adapted in Python, and model instances cost more
again. Nothing is written with ON CONFLICT: the importer compares each row with the stored one
first, so an unchanged row costs one index lookup and no write (its updated_at stays), and a
new one a plain INSERT. Elsewhere (SQLite: the demo, `make test-sqlite`) the same reads and
writes go through the ORM."""

import json
from collections.abc import Sequence
from datetime import date, datetime
from typing import Protocol

from django.db import DatabaseError, connection, models

# (primary key, the values of the fields asked for, as the database stores them), by key
Stored = dict[str, tuple[int, tuple]]


class ImportStore(Protocol):
    # Whether its database works in a process of its own, so that rows checked meanwhile (the
    # importer's read-ahead) cost no time.
    works_elsewhere: bool

    def stored(
        self, model: type[models.Model], key: str, keys: list[str], fields: Sequence[str]
    ) -> Stored:
        """The stored rows whose `key` field is one of `keys`."""

    def insert(
        self,
        model: type[models.Model],
        fields: Sequence[str],
        rows: list[tuple],
        *,
        key: str | None,
        now: datetime,
    ) -> dict[str, int]:
        """Insert rows of `fields` (attnames; the other columns take their defaults, and now
        the auto_now(_add) ones); return key -> primary key of each, or nothing for key None."""

    def update(
        self, model: type[models.Model], fields: Sequence[str], rows: list[tuple], *, now: datetime
    ) -> None:
        """Set `fields` of each row given as (primary key, *values), and its auto_now fields
        (updated_at) to now."""


def store() -> ImportStore:
    return PostgresStore() if connection.vendor == "postgresql" else OrmStore()


class OrmStore:
    """Any database, through the ORM."""

    works_elsewhere = False  # SQLite's work is the importing process's own

    def stored(self, model, key, keys, fields) -> Stored:
        prepare = [model._meta.get_field(name).get_prep_value for name in fields]
        found = model.objects.filter(**{f"{key}__in": keys}).values_list(key, "pk", *fields)
        # As the database stores them: a time zone field's name, not its ZoneInfo.
        return {
            row[0]: (
                row[1],
                tuple(to_db(value) for to_db, value in zip(prepare, row[2:], strict=True)),
            )
            for row in found
        }

    def insert(self, model, fields, rows, *, key, now) -> dict[str, int]:
        # bulk_create stamps created_at and updated_at itself.
        objects = [model(**dict(zip(fields, values, strict=True))) for values in rows]
        model.objects.bulk_create(objects)
        return {getattr(instance, key): instance.pk for instance in objects} if key else {}

    def update(self, model, fields, rows, *, now) -> None:
        if not rows:
            return
        stamped = _auto_now_fields(model)
        objects = [
            model(pk=pk, **dict(zip(fields, values, strict=True)), **dict.fromkeys(stamped, now))
            for pk, *values in rows
        ]
        # bulk_update takes field names ("customer"), the rows attnames ("customer_id").
        names = [model._meta.get_field(name).name for name in [*fields, *stamped]]
        model.objects.bulk_update(objects, names)


class PostgresStore:
    """PostgreSQL, a statement per chunk with its rows as one JSON parameter (COPY for the rows
    whose ids are not asked back)."""

    works_elsewhere = True

    def stored(self, model, key, keys, fields) -> Stored:
        key_column = _column(model, key)
        columns = ", ".join(
            [key_column, _column(model, "pk"), *(_column(model, f) for f in fields)]
        )
        with connection.cursor() as cursor:
            # "<> ''": no key is empty, and the customers' unique index on email says so.
            cursor.execute(
                f"SELECT {columns} FROM {_table(model)} WHERE {key_column} <> '' AND "
                f"{key_column} = ANY(ARRAY(SELECT jsonb_array_elements_text(%s::jsonb)))",
                [json.dumps(keys)],
            )
            return {row[0]: (row[1], row[2:]) for row in cursor.fetchall()}

    def insert(self, model, fields, rows, *, key, now) -> dict[str, int]:
        if not rows:
            return {}
        defaults = _defaults(model, fields, now)
        columns = [_column(model, name) for name in fields] + list(defaults)
        with connection.cursor() as cursor:
            if key is None:
                # COPY: the cheapest way in for the server (a third less time than the JSON
                # statement at 5,000 policies), where no ids are asked back.
                # psycopg's copy is not Django's execute: its errors are made Django's here, as
                # the importer catches them (IntegrityError, DataError).
                extra = tuple(defaults.values())
                copying = f"COPY {_table(model)} ({', '.join(columns)}) FROM STDIN"
                try:
                    with connection.wrap_database_errors, cursor.copy(copying) as copy:
                        for row in rows:
                            copy.write_row(row + extra)
                except DatabaseError as error:
                    # In the database's words, as an INSERT's: without the line COPY adds
                    # ("CONTEXT:  COPY policies_policy, line 1", a line of no file of ours).
                    raise type(error)(str(error).split("\nCONTEXT:  COPY ")[0]) from error
                return {}
            values = [_cell(model, name, index) for index, name in enumerate(fields)]
            cursor.execute(
                f"INSERT INTO {_table(model)} ({', '.join(columns)}) "
                f"SELECT {', '.join(values + ['%s'] * len(defaults))} "
                "FROM jsonb_array_elements(%s::jsonb) AS r "
                f"RETURNING {_column(model, key)}, {_column(model, 'pk')}",
                [*defaults.values(), _json(rows)],
            )
            return dict(cursor.fetchall())

    def update(self, model, fields, rows, *, now) -> None:
        if not rows:
            return
        stamped = _auto_now_fields(model)
        changes = [
            f"{_column(model, name)} = {_cell(model, name, index)}"
            for index, name in enumerate(fields, start=1)
        ] + [f"{_column(model, name)} = %s" for name in stamped]
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {_table(model)} AS t SET {', '.join(changes)} "
                "FROM jsonb_array_elements(%s::jsonb) AS r "
                f"WHERE t.{_column(model, 'pk')} = {_cell(model, 'pk', 0)}",
                [*[now] * len(stamped), _json(rows)],
            )


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _field(model, name: str) -> models.Field:
    return model._meta.pk if name == "pk" else model._meta.get_field(name)


def _column(model, name: str) -> str:
    return connection.ops.quote_name(_field(model, name).column)


def _cell(model, name: str, index: int) -> str:
    """The SQL for a JSON row's cell `index` as field `name`'s column type."""
    db_type = _field(model, name).db_type(connection)
    # Text goes into a character column as it is: a cast to varchar(n) would cut a value that
    # is too long, where the column refuses it.
    if db_type.startswith(("varchar", "text")):
        return f"r->>{index}"
    return f"(r->>{index})::{db_type}"


def _defaults(model, fields: Sequence[str], now: datetime) -> dict[str, object]:
    """The quoted columns an insert of `fields` leaves out, with the values a model instance
    would have: the field's default, or now for auto_now and auto_now_add fields."""
    defaults = {}
    for field in model._meta.concrete_fields:
        if field.primary_key or field.attname in fields:
            continue
        stamped = getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False)
        value = now if stamped else field.get_default()
        defaults[connection.ops.quote_name(field.column)] = field.get_db_prep_save(
            value, connection
        )
    return defaults


def _auto_now_fields(model) -> list[str]:
    return [
        field.attname for field in model._meta.concrete_fields if getattr(field, "auto_now", False)
    ]


def _json(rows: list[tuple]) -> str:
    return json.dumps(rows, default=date.isoformat)
