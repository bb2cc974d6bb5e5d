"""Benchmark: a 100,000-row policy CSV uploaded through the upload view, imported by a real
Celery worker on Redis. Reports the web request's own time (the view stores the file, records
the job and enqueues it), the time until the job reports succeeded, the progress the page saw
on the way, how long the page's progress poll takes meanwhile, and the worker's memory: its
resident size when idle before the upload and its peak during the import (`--megabytes 100`
sizes the file for the largest upload the page takes).

The request goes through Django's whole handler (middleware, multipart parsing, the view) with
the test Client, the body encoded beforehand, so the time is the server's alone. Run with
`make bench-upload`; it creates and drops its own PostgreSQL database (DATABASE_URL names the
server) and uses its own queue on BENCH_REDIS_URL (default redis://127.0.0.1:6379/13)."""

import argparse
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
import warnings
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The web view and the worker run as production does (DEBUG off).
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "renewly-bench-only-not-a-secret")
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
BROKER_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
QUEUE = f"renewly-bench-upload-{os.getpid()}"
VAR_DIR = Path(__file__).resolve().parent.parent / "var" / "bench-upload"
os.environ["CELERY_BROKER_URL"] = BROKER_URL  # the view publishes through these
os.environ["CELERY_TASK_DEFAULT_QUEUE"] = QUEUE
os.environ["UPLOADS_DIR"] = str(VAR_DIR / "uploads")
# Whitenoise looks for collected static files, which only a deployment collects.
warnings.filterwarnings("ignore", "No directory at")

import django

django.setup()

from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from benchmarks.bench_import import write_csv
from benchmarks.processes import reset_peak_memory, worker_memory
from benchmarks.workers import WorkerConfig, Workers
from config.queues import every_queue
from policies.models import ImportJob
from policies.services import ensure_agent
from tests.workers import worker_environment


def upload_once(
    client: Client,
    label: str,
    path: Path,
    rows: int,
    timeout: float,
    worker_pid: int,
    *,
    expected: dict[str, int],
) -> ImportJob:
    """Upload `path` through the view, follow the page's progress poll until the job finished,
    print what it took; return the finished job."""
    reset_peak_memory(worker_pid)
    idle = worker_memory(worker_pid)["VmRSS"]
    body = encode_multipart(BOUNDARY, {"file": open(path, "rb")})  # noqa: SIM115
    started = time.perf_counter()
    response = client.generic("POST", "/uploads/", body, content_type=MULTIPART_CONTENT)
    request_seconds = time.perf_counter() - started
    if response.status_code != 302:
        sys.exit(f"the upload was refused ({response.status_code}): {response.content[:500]!r}")
    job = ImportJob.objects.latest("id")
    progress_url = f"/uploads/{job.pk}/progress/"
    polls, seen = [], []
    deadline = time.monotonic() + timeout
    while True:
        poll_started = time.perf_counter()
        state = client.get(progress_url).json()
        polls.append(time.perf_counter() - poll_started)
        if state["rows_total"] and (not seen or seen[-1] != state["rows_done"]):
            seen.append(state["rows_done"])
        if state["finished"]:
            break
        if time.monotonic() > deadline:
            sys.exit(f"gave up after {timeout}s: {state}\n{(VAR_DIR / 'worker-0.log').read_text()}")
        time.sleep(0.5)  # as the page polls
    total_seconds = time.perf_counter() - started
    peak = worker_memory(worker_pid)["VmHWM"]
    job.refresh_from_db()
    if job.status != ImportJob.Status.SUCCEEDED:
        sys.exit(f"the import failed: {job.error}")
    counted = {name: getattr(job, name) for name in expected}
    if counted != expected:  # an import that lost or doubled rows measured a bug
        sys.exit(f"{label}: expected {expected}, the import counted {counted}")
    queued = (job.started_at - job.created_at).total_seconds()
    importing = (job.finished_at - job.started_at).total_seconds()
    print(
        f"{label:<24} web request {request_seconds * 1000:7.0f} ms   upload to succeeded "
        f"{total_seconds:6.2f} s ({rows / total_seconds:6.0f} rows/s; queued {queued:.2f} s, "
        f"import {importing:.2f} s)\n"
        f"{'':<24} created {job.created}, updated {job.updated}, unchanged {job.unchanged}, "
        f"rejected {job.rejected}; progress seen {shortened(seen)}\n"
        f"{'':<24} progress poll p50 {statistics.median(polls) * 1000:.1f} ms, "
        f"max {max(polls) * 1000:.1f} ms over {len(polls)} polls\n"
        f"{'':<24} worker RSS idle {idle / MIB:.0f} MiB, peak during the import "
        f"{peak / MIB:.0f} MiB ({(peak - idle) / MIB:+.0f} MiB for a "
        f"{path.stat().st_size / 1e6:.0f} MB file)"
    )
    return job


MIB = 1024 * 1024


def shortened(values: list[int]) -> str:
    if len(values) <= 12:
        return str(values)
    return f"{len(values)} steps: {values[:3]} ... {values[-3:]}"


def rows_for(megabytes: float) -> int:
    """How many of write_csv's rows make a file of about `megabytes` MB."""
    with tempfile.TemporaryDirectory() as folder:
        sample = Path(folder) / "sample.csv"
        write_csv(sample, 10_000)
        return int(megabytes * 1e6 / (sample.stat().st_size / 10_000))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--megabytes", type=float, help="size the file in MB instead of --rows (e.g. 100)"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per import at most")
    parser.add_argument("--smoke", action="store_true", help="a few thousand rows, seconds")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.megabytes = 3_000, None
    if args.megabytes:
        args.rows = rows_for(args.megabytes)
    if connection.vendor != "postgresql":
        sys.exit("bench_upload needs PostgreSQL: set DATABASE_URL (make bench-upload does).")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C
    with ExitStack() as stack:
        stack.callback(shutil.rmtree, VAR_DIR / "uploads", ignore_errors=True)
        connection.creation.create_test_db(verbosity=0, autoclobber=True)
        name = connection.settings_dict["NAME"]
        stack.callback(connection.creation.destroy_test_db, name, verbosity=0)
        env = worker_environment(  # after create_test_db: DATABASE_URL names the bench database
            broker_url=BROKER_URL,
            var_dir=VAR_DIR,
            DEBUG=os.environ["DEBUG"],
            CELERY_TASK_DEFAULT_QUEUE=QUEUE,
            UPLOADS_DIR=os.environ["UPLOADS_DIR"],
        )
        for n in range(20):
            ensure_agent(username=f"agent{n}", email=f"agent{n}@agency.example")
        admin = get_user_model().objects.create_superuser("bench-admin", None, None)
        client = Client()
        client.force_login(admin)
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        first, changed = folder / "first.csv", folder / "changed.csv"
        write_csv(first, args.rows)
        write_csv(changed, args.rows, changed_every=10)
        size = first.stat().st_size / 1e6
        # An import is one task, on the long jobs' queue (config/queues.py).
        workers = Workers(WorkerConfig("solo", 1, 1), env, ",".join(every_queue(QUEUE)), VAR_DIR)
        stack.callback(workers.stop)
        workers.start()
        workers.wait_ready()
        print(
            f"Uploading {args.rows:,} policy rows ({size:.1f} MB) through the upload view to a "
            f"worker on {BROKER_URL} (queue {QUEUE}), PostgreSQL; {os.cpu_count()} CPUs"
        )
        pid = workers.processes[0].pid  # --pool=solo: the import runs in this process
        changed_rows = len(range(0, args.rows, 10))
        for label, path, expected in [
            ("first upload (all new)", first, {"created": args.rows}),
            ("same file again", first, {"unchanged": args.rows}),
            ("one row in ten changed", changed, {"updated": changed_rows}),
        ]:
            upload_once(client, label, path, args.rows, args.timeout, pid, expected=expected)


if __name__ == "__main__":
    main()
