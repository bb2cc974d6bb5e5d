"""The pending notices as CSV, streamed row by row: an export of 100,000 notices never sits
in memory whole."""

import csv
from collections.abc import Iterator

from django.db.models import QuerySet

from notifications.explanations import explain_error

COLUMNS = {
    "notice_id": "id",
    "policy_number": "policy__policy_number",
    "customer": "customer__name",
    "product_line": "policy__product_line",
    "agent": "policy__agent__email",
    "channel": "channel",
    "lead_days": "lead_days",
    "due_on": "due_on",
    "expiry_date": "expiry_date",
    "status": "status",
    "error": "last_error",
}
# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


class _Echo:
    """A file-like object whose write returns the line, for csv.writer to stream through."""

    def write(self, value: str) -> str:
        return value


def notice_csv_lines(notices: QuerySet) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    rows = notices.values_list(*COLUMNS.values()).iterator(chunk_size=2000)
    for *values, last_error in rows:
        yield writer.writerow(
            [spreadsheet_safe(value) for value in [*values, explain_error(last_error)]]
        )


def spreadsheet_safe(value) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with = + - or @ would run as a
    formula (CSV injection). Every CSV Renewly writes from stored data goes through here."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
