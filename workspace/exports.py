"""The pending notices as CSV, streamed row by row: an export of 100,000 notices never sits
in memory whole."""

import csv
from collections.abc import Iterator

from django.db.models import QuerySet

from notifications.explanations import explain_error
from policies.spreadsheets import spreadsheet_safe

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
