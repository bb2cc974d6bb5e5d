"""Benchmark: long jobs never slow the reminders (issue 16). bench_dispatch's trial (20,000
reminders through real Celery workers on Redis to the fake provider, 50 ms per call) run twice:
idle, then while a 100,000-row CSV uploaded through the upload view (as bench_upload does)
imports on a bulk worker. The workers are started as production runs them (config/queues.py,
docker-compose.yml): the reminder workers read only the default queue, the bulk worker only
`<default>-bulk`, and it runs through both trials. Reports both runs' messages per second and
p50/p95 from queued_at to acceptance, the ratio of the p95s (the target: at most 1.5), the
import's own time and how much of the sending it overlapped, duplicates and losses (both 0).

Run with `make bench-isolation`; it creates and drops its own PostgreSQL database and uses
bench_dispatch's queue conventions on BENCH_REDIS_URL (default redis://127.0.0.1:6379/13).
`--fail-over 1.5` exits 1 when the p95 under load is more than 1.5 times the idle one."""

import argparse
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
import warnings
from contextlib import ExitStack
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))
# The upload goes through the view with the test Client (host "testserver"), its file under a
# folder of this benchmark's; both read when bench_dispatch sets Django up.
os.environ.setdefault("ALLOWED_HOSTS", "testserver")
UPLOADS_DIR = BASE_DIR / "var" / "bench-isolation" / "uploads"
os.environ["UPLOADS_DIR"] = str(UPLOADS_DIR)
# Whitenoise looks for collected static files, which only a deployment collects.
warnings.filterwarnings("ignore", "No directory at")

# bench_dispatch names the reminders' queue and sets Django up, so it comes first; bench_upload,
# imported after, re-points its queue and folder in os.environ only: the workers get ours.
from benchmarks.bench_dispatch import (
    BROKER_URL,
    DOCUMENTED_CONFIG,
    QUEUE,
    VAR_DIR,
    Trial,
    print_trial,
    seed,
    start_services,
    trial,
)

# isort: split
from django.contrib.auth import get_user_model
from django.db import connection

from benchmarks.bench_import import write_csv
from benchmarks.bench_upload import upload_once
from benchmarks.workers import WorkerConfig, Workers
from config.queues import bulk_queue_for
from policies.models import ImportJob

# docker-compose.yml's bulk-worker: --pool=threads --concurrency=2 on the bulk queue alone.
BULK_CONFIG = "threads:1x2"


class BackgroundUpload:
    """bench_upload's upload_once in a thread: POST the file to the upload view, then follow the
    job until it finished. start() returns once the bulk worker is importing."""

    def __init__(self, path: Path, rows: int, timeout: float, worker_pid: int):
        self.arguments = (path, rows, timeout, worker_pid)
        self.job: ImportJob | None = None
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from django.test import Client

        path, rows, timeout, worker_pid = self.arguments
        client = Client()
        client.force_login(get_user_model().objects.get(username="bench-admin"))
        try:
            self.job = upload_once(
                client, "upload (all new)", path, rows, timeout, worker_pid,
                expected={"created": rows},
            )  # fmt: skip
        except BaseException as error:  # upload_once exits (SystemExit) on a failed import
            self.error = error
        finally:
            connection.close()  # this thread's own connection

    def start(self, timeout: float = 120) -> None:
        self._thread.start()
        deadline = time.monotonic() + timeout
        importing = ImportJob.objects.exclude(status=ImportJob.Status.QUEUED)
        while self._thread.is_alive() and not importing.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"the import did not start in {timeout:.0f}s")
            time.sleep(0.05)

    def join(self) -> ImportJob:
        self._thread.join()
        if self.error is not None:
            raise SystemExit(f"the upload failed: {self.error}")
        return self.job


def overlap(job: ImportJob, sending: Trial) -> float:
    """Seconds of the import that fell between the first enqueue and the last acceptance."""
    start = max(job.started_at.timestamp(), sending.started)
    end = min(job.finished_at.timestamp(), sending.delivery.last_accept)
    return max(0.0, end - start)


def p95(t: Trial) -> float:
    return t.delivery.percentile(0.95)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reminders", type=int, default=20_000, help="even: half email, half SMS")
    parser.add_argument(
        "--during-upload", type=int, default=100_000, metavar="ROWS", help="the upload's rows"
    )
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per provider call")
    parser.add_argument("--config", default=DOCUMENTED_CONFIG, help="the reminder workers")
    parser.add_argument("--bulk-config", default=BULK_CONFIG, help="the bulk worker")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per trial at most")
    parser.add_argument(
        "--fail-over", type=float, default=0, help="exit 1 if p95 loaded / idle is over this"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="1,000 reminders during a 3,000-row upload, seconds"
    )
    args = parser.parse_args()
    if args.smoke:
        args.reminders, args.during_upload, args.timeout = 1_000, 3_000, 120
    if connection.vendor != "postgresql":
        sys.exit("bench_isolation needs PostgreSQL: set DATABASE_URL (make bench-isolation does).")
    if args.reminders % 2:
        sys.exit("--reminders must be even: one email and one SMS per customer")
    config, bulk_config = WorkerConfig.parse(args.config), WorkerConfig.parse(args.bulk_config)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C

    with ExitStack() as stack:
        fake, env = start_services(stack, args.latency, UPLOADS_DIR=str(UPLOADS_DIR))
        stack.callback(shutil.rmtree, UPLOADS_DIR, ignore_errors=True)
        seed(args.reminders // 2, 0)
        get_user_model().objects.create_superuser("bench-admin", None, None)
        csv_path = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "upload.csv"
        write_csv(csv_path, args.during_upload)
        bulk = Workers(bulk_config, env, bulk_queue_for(QUEUE), VAR_DIR / "bulk")
        stack.callback(bulk.stop)
        bulk.start()
        bulk.wait_ready()
        megabytes = csv_path.stat().st_size / 1e6
        print(
            f"Dispatching {args.reminders:,} reminders through Celery on {BROKER_URL} (queue "
            f"{QUEUE}: {config}) to the fake provider, {args.latency * 1000:.0f} ms per call, "
            f"idle and then during a {args.during_upload:,}-row upload ({megabytes:.1f} MB) "
            f"imported on {bulk_queue_for(QUEUE)} ({bulk_config}); {os.cpu_count()} CPUs",
            flush=True,
        )
        idle = trial(config, args.reminders, env, fake, args.timeout)
        print("idle:")
        print_trial(idle)
        upload = BackgroundUpload(csv_path, args.during_upload, args.timeout, bulk.processes[0].pid)
        loaded = trial(config, args.reminders, env, fake, args.timeout, before_fan_out=upload.start)
        job = upload.join()
        print("during the upload:")
        print_trial(loaded)

        for label, t in (("idle", idle), ("during the upload", loaded)):
            d = t.delivery
            if d.duplicates or d.losses or d.accepted != args.reminders:
                raise SystemExit(
                    f"{label}: {d.accepted} accepted, {d.duplicates} duplicates, {d.losses} losses"
                )
        ratio = p95(loaded) / p95(idle)
        importing = (job.finished_at - job.started_at).total_seconds()
        print()
        for label, t in (("idle", idle), ("during the upload", loaded)):
            d = t.delivery
            print(
                f"  {label:<18} {t.rate:6,.0f} msg/s ({d.accepted:,} in {t.seconds:.2f} s), "
                f"queued_at -> accepted p50 {d.percentile(0.5):.2f} s, p95 {p95(t):.2f} s; "
                f"fan-out {t.fan_out_seconds:.2f} s; duplicates {d.duplicates}, lost {d.losses}"
            )
        print(
            f"  import: {args.during_upload:,} rows in {importing:.2f} s "
            f"({args.during_upload / importing:,.0f} rows/s) on the bulk worker, "
            f"{overlap(job, loaded):.2f} s of it while the reminders were sending "
            f"({loaded.seconds:.2f} s)"
        )
        print(f"  p95 during the upload / idle: {ratio:.2f}x (target: at most 1.5x)")
        if args.fail_over and ratio > args.fail_over:
            sys.exit(f"p95 during the upload {ratio:.2f}x the idle one, over {args.fail_over:g}x")


if __name__ == "__main__":
    main()
