"""Benchmark: import N policy rows from CSV into a fresh database, then re-import the same file
and a file with one row in ten changed; then the same three through `import_rows` in batches of
5,000 rows (`--batch-size`), the integration API's shape, on policies and customers of their
own. Then (`--large-rows`) a file of a million rows through the `import_policies` command in a
process of its own, as a worker runs the import, with that process's peak resident size
(`--fail-over-mb` fails the run above it). Run with `make bench-import`; it creates and drops
its own test database (DATABASE_URL names the server), so it never touches real data."""

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("DEBUG", "1")

import django

django.setup()

from django.db import connection

from benchmarks.processes import worker_memory
from benchmarks.seeding import policy_rows
from policies.importers import COLUMNS, ImportSummary, import_policies, import_rows
from policies.services import ensure_agent


def write_csv(path: Path, rows: int, *, changed_every: int = 0, prefix: str = "BENCH") -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for row in policy_rows(rows, changed_every=changed_every, prefix=prefix):
            writer.writerow([row[name] for name in COLUMNS])


def import_in_batches(rows: list[dict], batch_size: int) -> ImportSummary:
    """import_rows on consecutive batches, as API requests would send them."""
    total = ImportSummary()
    for start in range(0, len(rows), batch_size):
        summary = import_rows(list(enumerate(rows[start : start + batch_size])))
        total.total += summary.total
        total.created += summary.created
        total.updated += summary.updated
        total.unchanged += summary.unchanged
        total.rejected.extend(summary.rejected)
    return total


def timed(label: str, run: Callable[[], ImportSummary], rows: int) -> dict:
    started = time.perf_counter()
    summary = run()
    seconds = time.perf_counter() - started
    counts = summary.as_dict()
    print(
        f"{label:<41} {rows:>8} rows {seconds:7.2f} s {rows / seconds:9.0f} rows/s   "
        f"created {counts['created']}, updated {counts['updated']}, "
        f"unchanged {counts['unchanged']}, rejected {counts['rejected']}"
    )
    return counts


def check_three(
    label: str,
    import_all: Callable[[], ImportSummary],
    import_changed: Callable[[], ImportSummary],
    rows: int,
) -> None:
    """Time all new, all unchanged and one row in ten changed, checking the counts of each."""
    first_import = timed(f"{label}first import (all new)", import_all, rows)
    assert first_import["created"] == rows, first_import
    again = timed(f"{label}same rows again", import_all, rows)
    assert again["unchanged"] == rows, again
    one_in_ten = timed(f"{label}one row in ten changed", import_changed, rows)
    assert one_in_ten["updated"] == len(range(0, rows, 10)), one_in_ten


BASE_DIR = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024


def import_in_a_process(path: Path, rows: int, fail_over_mb: float | None) -> None:
    """Import `path` with the `import_policies` command in a process of its own, as a worker
    would (DEBUG off), and report its time and peak resident size: its VmHWM, read every tenth
    of a second until it exits (the kernel's ru_maxrss would count this process's own size,
    which the child's has at its fork)."""
    test_database = f"/{connection.settings_dict['NAME']}"
    environment = {
        **os.environ,
        "DATABASE_URL": urlsplit(os.environ["DATABASE_URL"])._replace(path=test_database).geturl(),
        "DEBUG": "0",
        "SECRET_KEY": "renewly-bench-only-not-a-secret",
    }
    started = time.perf_counter()
    command = subprocess.Popen(
        [sys.executable, str(BASE_DIR / "manage.py"), "import_policies", str(path)],
        env=environment,
        stdout=subprocess.PIPE,  # a line or two: the summary
        text=True,
    )
    peak = 0
    while command.poll() is None:
        with suppress(FileNotFoundError, KeyError):  # exited meanwhile: no memory left to read
            peak = max(peak, worker_memory(command.pid)["VmHWM"])
        time.sleep(0.1)
    seconds = time.perf_counter() - started
    output = command.stdout.read()
    if command.returncode != 0:
        sys.exit(f"the import_policies command failed: {output}")
    expected = f"Imported {rows} rows: {rows} created, 0 updated, 0 unchanged, 0 rejected"
    if expected not in output:
        sys.exit(f"expected {expected!r}, the command said {output!r}")
    peak_mb = peak / MIB
    print(
        f"{'import_policies command, one process':<41} {rows:>8} rows {seconds:7.2f} s "
        f"{rows / seconds:9.0f} rows/s   peak RSS {peak_mb:.0f} MiB "
        f"({path.stat().st_size / 1e6:.0f} MB file)"
    )
    if fail_over_mb is not None and peak_mb > fail_over_mb:
        sys.exit(f"the importing process peaked at {peak_mb:.0f} MiB, over {fail_over_mb} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=5000, help="rows per import_rows call")
    parser.add_argument(
        "--large-rows", type=int, default=0, help="rows of the file the command imports (0: none)"
    )
    parser.add_argument(
        "--fail-over-mb", type=float, help="fail if the command's process peaks above this RSS"
    )
    parser.add_argument("--smoke", action="store_true", help="a few thousand rows, seconds")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.large_rows = 2_000, 2_000
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
            check_three(
                "",
                lambda: import_policies(first),
                lambda: import_policies(changed),
                args.rows,
            )
        print(f"The same through import_rows, {args.batch_size:,} rows a call (the API's shape)")
        as_dicts = list(policy_rows(args.rows, prefix="API"))
        changed_dicts = list(policy_rows(args.rows, changed_every=10, prefix="API"))
        check_three(
            "import_rows: ",
            lambda: import_in_batches(as_dicts, args.batch_size),
            lambda: import_in_batches(changed_dicts, args.batch_size),
            args.rows,
        )
        if args.large_rows:
            with tempfile.TemporaryDirectory() as folder:
                large = Path(folder) / "large.csv"
                write_csv(large, args.large_rows, prefix="LARGE")
                print(f"A file of {args.large_rows:,} new rows, in a process of its own")
                import_in_a_process(large, args.large_rows, args.fail_over_mb)
    finally:
        connection.creation.destroy_test_db(connection.settings_dict["NAME"], verbosity=0)


if __name__ == "__main__":
    main()
