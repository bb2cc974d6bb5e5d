"""argparse types for the management commands: a bad value is refused with a message that says
what was expected (a CommandError through call_command, a usage error and exit code 2 from
manage.py), never a traceback."""

import argparse
import math
from datetime import date

from policies.importers import ISO_DATE


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is not at least 1")
    return value


def positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds above 0")
    return value


def iso_date(text: str) -> date:
    try:
        if not ISO_DATE.fullmatch(text):  # fromisoformat also takes 20260101 and week dates
            raise ValueError
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date (expected YYYY-MM-DD)") from None
