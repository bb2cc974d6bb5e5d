"""Benchmark: import N policy rows from CSV into a fresh database, then re-import the same file
and a file with one row in ten changed. Run with `make bench-import`; it creates and drops its
own test database (DATABASE_URL names the server), so it never touches real data."""

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.db import connection

from benchmarks.seeding import policy_rows
from policies.importers import COLUMNS, import_policies
from policies.services import ensure_agent


def write_csv(path: Path, rows: int, *, changed_every: int = 0) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in policy_rows(rows, changed_every=changed_every):
            writer.writerow([row[name] for name in COLUMNS])


def timed(label: str, path: Path, rows: int) -> dict:
    started = time.perf_counter()
    summary = import_policies(path)
    seconds = time.perf_counter() - started
    counts = summary.as_dict()
    print(
        f"{label:<28} {rows:>8} rows {seconds:7.2f} s {rows / seconds:9.0f} rows/s   "
        f"created {counts['created']}, updated {counts['updated']}, "
        f"unchanged {counts['unchanged']}, rejected {counts['rejected']}"
    )
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--smoke", action="store_true", help="a few thousand rows, seconds")
    args = parser.parse_args()
    if args.smoke:
        args.rows = 2_000
    vendor = connection.vendor
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        for n in range(20):
            ensure_agent(username=f"agent{n}", email=f"agent{n}@agency.example")
        with tempfile.TemporaryDirectory() as folder:
            first, changed = Path(folder) / "first.csv", Path(folder) / "changed.csv"
            write_csv(first, args.rows)
            write_csv(changed, args.rows, changed_every=10)
            print(f"Importing {args.rows:,} policy rows into {vendor}")
            # Figures of an import that lost or doubled rows would measure a bug.
            first_import = timed("first import (all new)", first, args.rows)
            assert first_import["created"] == args.rows, first_import
            again = timed("same file again", first, args.rows)
            assert again["unchanged"] == args.rows, again
            one_in_ten = timed("one row in ten changed", changed, args.rows)
            assert one_in_ten["updated"] == len(range(0, args.rows, 10)), one_in_ten
    finally:
        connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
