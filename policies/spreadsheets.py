"""Cells of the CSV files Renewly writes from stored data (the rejected rows of an upload, the
workspace's exports, the weekly reports)."""

# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value) -> str:
    """A CSV cell a spreadsheet shows as text: one starting with = + - or @ would run as a
    formula (CSV injection). Every CSV Renewly writes from stored data goes through here."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text
