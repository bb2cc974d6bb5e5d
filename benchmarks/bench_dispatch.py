"""Benchmark: dispatch throughput through real Celery workers on Redis, to the fake provider.

Seeds 10,000 customers (each with an email address and a phone number, one policy each) and one
email and one SMS rule, so that `plan_due` plans exactly 20,000 reminders; then starts real
`celery worker` processes on Redis, enqueues everything with `tasks.fan_out()` and waits until
the fake Twilio + Postmark provider (tests/fake_provider.py, 50 ms per call, in a process of its
own) has accepted every message. Reports messages per second from the first enqueue to the last
acceptance, p50/p95 from each notification's queued_at to its acceptance, duplicates and losses
as the fake counted them, and the workers' peak RSS. Then the naive baseline a cron job would be:
one loop in this process calling `dispatch.send(id)` on a fresh set of reminders, in turn.

Run with `make bench-dispatch`; it creates and drops its own PostgreSQL database and uses its own
queue on BENCH_REDIS_URL (default redis://127.0.0.1:6379/13). `--configs` tries several worker
pools, e.g. `--configs threads:2x20,threads:1x32,prefork:1x8` (pool:processes x concurrency)."""

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# The workers run as production does (DEBUG off: no query log, no template debug info); the
# baseline in this process runs the same way. DEBUG=1 in the environment turns it on for both.
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "renewly-bench-only-not-a-secret")
BROKER_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
QUEUE_PREFIX = "renewly-bench-dispatch-"
QUEUE = f"{QUEUE_PREFIX}{os.getpid()}"
os.environ["CELERY_BROKER_URL"] = BROKER_URL  # fan_out() publishes through these
os.environ["CELERY_TASK_DEFAULT_QUEUE"] = QUEUE
# SMS may go at any hour: what is measured must not depend on the clock (quiet hours would
# defer every SMS sent outside 08:00-21:00 at the customer's).
os.environ["SMS_WINDOW_START_HOUR"] = "0"
os.environ["SMS_WINDOW_END_HOUR"] = "24"
# ...nor on a provider's rate limit: what is measured is how fast the workers can go.
os.environ["EMAIL_RATE_LIMIT_PER_SECOND"] = "0"
os.environ["SMS_RATE_LIMIT_PER_SECOND"] = "0"

import django

django.setup()

from django.conf import settings
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from django_celery_results.models import TaskResult

from benchmarks import workers
from benchmarks.processes import CLOCK_TICKS, descendants, process_table, tree_cpu
from benchmarks.profiling import Profile, PySpyRecorder
from benchmarks.provider_process import FakeProviderProcess
from benchmarks.seeding import copy_policyholders, drop_database, make_agents, replace_rules
from benchmarks.workers import DOCUMENTED_CONFIG, WorkerConfig, Workers
from notifications import dispatch, planning
from notifications.models import Notification, ReminderRun
from notifications.tasks import fan_out
from tests.workers import worker_environment

# Today: a reminder about an expiry that has passed is not sent (notifications.retries).
RUN_DATE = timezone.localdate()
LEAD_DAYS = 7  # one email rule and one SMS rule, both 7 days ahead
FROM_NUMBER = "+15005550006"
DEFAULT_CONFIGS = DOCUMENTED_CONFIG
VAR_DIR = Path(settings.BASE_DIR) / "var" / "bench-dispatch"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
# Not sent yet, nor given up on: what the trial waits for.
UNSETTLED = ("planned", "queued", "sending", "deferred")
PROFILE_TOP = 15  # functions the --profile summary shows, by own and by inclusive time


# --- Celery workers --------------------------------------------------------------------------


def cpu_snapshot(worker_pids: list[int], provider_pid: int) -> dict[str, float]:
    """CPU seconds so far: the workers, the fake provider, this process (the fan-out and the
    polling), PostgreSQL (all of its processes, other databases' too) and the machine."""
    table = process_table()
    postmasters = [
        pid
        for pid, proc in table.items()
        if proc.comm == "postgres" and table.get(proc.ppid, proc).comm != "postgres"
    ]
    with open("/proc/stat") as stat:
        ticks = [int(value) for value in stat.readline().split()[1:]]
    return {
        "workers": sum(tree_cpu(pid, table) for pid in worker_pids),
        "provider": tree_cpu(provider_pid, table),
        "bench": table[os.getpid()].cpu,
        "postgres": sum(tree_cpu(pid, table) for pid in postmasters),
        "machine": (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS,  # all but idle, iowait
    }


class RssSampler:
    """Polls /proc for the RSS of each worker's process tree; keeps the peaks."""

    def __init__(self, pids: list[int], interval: float = 0.25):
        self.pids = pids
        self.interval = interval
        self.peak_each = [0] * len(pids)
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "RssSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self.interval):
                return

    def sample(self) -> None:
        table = process_table()
        sizes = [sum(map(self._rss, descendants(pid, table))) for pid in self.pids]
        self.peak_each = [max(a, b) for a, b in zip(self.peak_each, sizes, strict=True)]
        self.peak_total = max(self.peak_total, sum(sizes))

    @staticmethod
    def _rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/statm") as statm:
                return int(statm.read().split()[1]) * PAGE_SIZE
        except (OSError, IndexError, ValueError):
            return 0


# --- Data --------------------------------------------------------------------------------------


def seed(main_customers: int, baseline_customers: int) -> None:
    """One policy per customer, each customer with an email address and a phone number. The
    first `main_customers` expire LEAD_DAYS after RUN_DATE (due on RUN_DATE by email and SMS);
    the rest a day later (due on the next day: the baseline's fresh reminders)."""
    agent_ids = make_agents(20)
    replace_rules([LEAD_DAYS])
    main = range(1, main_customers + 1)
    copy_policyholders(main, expiry_date=RUN_DATE + timedelta(days=LEAD_DAYS), agent_ids=agent_ids)
    baseline = range(main.stop, main.stop + baseline_customers)
    copy_policyholders(
        baseline, expiry_date=RUN_DATE + timedelta(days=LEAD_DAYS + 1), agent_ids=agent_ids
    )


def plan_main(expected: int) -> ReminderRun:
    """A fresh plan for RUN_DATE: exactly `expected` reminders, half email, half SMS."""
    with connection.cursor() as cursor:
        for model in (Notification, ReminderRun, TaskResult):
            cursor.execute(f"TRUNCATE {model._meta.db_table} RESTART IDENTITY CASCADE")
    run = planning.plan_due(run_date=RUN_DATE)
    by_channel = dict(Counter(run.notifications.values_list("channel", flat=True)))
    if run.planned != expected or by_channel != {"email": expected // 2, "sms": expected // 2}:
        raise RuntimeError(f"planned {run.planned} ({by_channel}), expected {expected}")
    # Statistics as a production table has them most of the time: gathered when nothing was
    # queued (autovacuum does not analyze a large table for a day's 20,000 rows).
    with connection.cursor() as cursor:
        cursor.execute(f"ANALYZE {Notification._meta.db_table}")
    return run


# --- Measuring ------------------------------------------------------------------------------


@dataclass
class Delivery:
    """What the fake provider saw of one run's notifications."""

    planned: int
    accepted: int
    attempts: int  # messages the provider was asked to take, whatever it answered
    requests: dict[str, int]  # HTTP requests that asked, by endpoint (a batch takes several)
    duplicates: int  # messages accepted beyond the first, per recipient
    losses: int  # planned notifications the fake never accepted
    first_accept: float
    last_accept: float
    latencies: list[float]  # queued_at -> acceptance, seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def compare(run: ReminderRun, report: dict) -> Delivery:
    queued_at = {
        str(pk): at.timestamp()
        for pk, at in run.notifications.values_list("pk", "queued_at")
        if at is not None
    }
    planned = set(
        map(str, run.notifications.exclude(status="skipped").values_list("pk", flat=True))
    )
    messages = report["messages"]
    seen = {notification_id for _, _, notification_id, _ in messages}
    times = [accepted_at for *_, accepted_at in messages]
    return Delivery(
        planned=len(planned),
        accepted=len(messages),
        attempts=sum(report["attempts"].values()),
        requests=dict(report["requests"]),
        duplicates=sum(count - 1 for count in report["accepted"].values() if count > 1),
        losses=len(planned - seen),
        first_accept=min(times, default=float("nan")),
        last_accept=max(times, default=float("nan")),
        latencies=[
            accepted_at - queued_at[notification_id]
            for _, _, notification_id, accepted_at in messages
            if notification_id in queued_at
        ],
    )


def database_sessions() -> int:
    """Sessions PostgreSQL has opened on the bench database so far."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT sessions FROM pg_stat_database WHERE datname = current_database()")
        return cursor.fetchone()[0]


def wait_until_sent(run: ReminderRun, workers: Workers, timeout: float) -> None:
    in_flight = run.notifications.filter(status__in=UNSETTLED)
    deadline = time.monotonic() + timeout
    while (left := in_flight.count()) and time.monotonic() < deadline:
        for n, process in enumerate(workers.processes):
            if process.poll() is not None:
                raise RuntimeError(f"worker {n} died:\n{workers.tail(n)}")
        time.sleep(0.25)
    if left:
        raise RuntimeError(f"{left} notifications still in flight after {timeout:.0f}s")


@dataclass
class Trial:
    config: WorkerConfig
    delivery: Delivery
    started: float
    fan_out_seconds: float
    statuses: dict[str, int]
    peak_rss_each: list[int]
    peak_rss_total: int
    pool_warnings: int
    cpu_ms: dict[str, float]  # CPU milliseconds per message: workers, postgres, machine
    machine_busy: float  # cores busy on average, while sending
    connections_per_message: float  # PostgreSQL sessions opened per message
    profile: Path | None  # py-spy's raw output for the first worker (--profile)

    @property
    def seconds(self) -> float:
        return self.delivery.last_accept - self.started

    @property
    def rate(self) -> float:
        return self.delivery.accepted / self.seconds


def trial(
    config: WorkerConfig,
    reminders: int,
    env: dict,
    fake,
    timeout: float,
    *,
    before_fan_out: Callable[[], None] | None = None,
    profile: bool = False,
) -> Trial:
    """Plan `reminders`, start the workers, fan out and wait for every acceptance.
    `before_fan_out` runs once the workers are ready (bench_isolation starts an upload there).
    With `profile`, py-spy samples the first worker from the fan-out to the last send."""
    run = plan_main(reminders)
    workers = Workers(config, env, QUEUE, VAR_DIR)
    with ExitStack() as stack:
        stack.callback(workers.stop)
        workers.start()
        pids = [process.pid for process in workers.processes]
        with RssSampler(pids) as rss:
            workers.wait_ready()
            if before_fan_out:
                before_fan_out()
            raw = VAR_DIR / f"profile-{config.pool}-{config.processes}x{config.concurrency}.raw"
            if profile:  # stopped first as the stack unwinds, before the workers
                stack.enter_context(PySpyRecorder(pids[0], raw))
            cpu_before, sessions_before = cpu_snapshot(pids, fake.process.pid), database_sessions()
            started = time.time()  # the first enqueue: fan_out claims, then publishes
            run.enqueued = fan_out()
            fan_out_seconds = time.time() - started
            if run.enqueued != reminders:
                raise RuntimeError(f"fan_out enqueued {run.enqueued}, expected {reminders}")
            wait_until_sent(run, workers, timeout)
            cpu_after, sessions_after = cpu_snapshot(pids, fake.process.pid), database_sessions()
            busy_seconds = time.time() - started
        statuses = dict(Counter(run.notifications.values_list("status", flat=True)))
    delivery = compare(run, fake.collect())
    return Trial(
        config=config,
        delivery=delivery,
        started=started,
        fan_out_seconds=fan_out_seconds,
        statuses=statuses,
        peak_rss_each=rss.peak_each,
        peak_rss_total=rss.peak_total,
        pool_warnings=workers.log_counts("Connection pool is full"),
        cpu_ms={
            name: (cpu_after[name] - cpu_before[name]) * 1000 / reminders for name in cpu_after
        },
        machine_busy=(cpu_after["machine"] - cpu_before["machine"]) / busy_seconds,
        connections_per_message=(sessions_after - sessions_before) / reminders,
        profile=raw if profile else None,
    )


@dataclass
class Baseline:
    sent: int
    seconds: float
    delivery: Delivery

    @property
    def rate(self) -> float:
        return self.sent / self.seconds


def baseline(expected: int, fake) -> Baseline:
    """The cron job's way: one process, one loop, dispatch.send(id) for each reminder in turn."""
    run = planning.plan_due(run_date=RUN_DATE + timedelta(days=1))
    if run.planned != expected:
        raise RuntimeError(f"baseline planned {run.planned}, expected {expected}")
    # The app logs as it would in a worker (twilio's client logs each request at INFO), but to
    # a file rather than over this report.
    root = logging.getLogger()
    handlers = root.handlers[:]
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    with open(VAR_DIR / "baseline.log", "w") as log:
        root.handlers = [logging.StreamHandler(log)]
        root.handlers[0].setFormatter(handlers[0].formatter if handlers else None)
        try:
            started = time.perf_counter()
            ids = planning.claim_for_enqueue(limit=expected, stalled_after=timedelta(hours=1))
            outcomes = Counter(dispatch.send(notification_id).status for notification_id in ids)
            seconds = time.perf_counter() - started
        finally:
            root.handlers = handlers
    if outcomes != {"sent": expected}:
        raise RuntimeError(f"baseline outcomes: {dict(outcomes)}")
    return Baseline(sent=len(ids), seconds=seconds, delivery=compare(run, fake.collect()))


# --- Output -------------------------------------------------------------------------------------


def mib(size: int) -> str:
    return f"{size / 2**20:,.0f} MiB"


def print_trial(t: Trial) -> None:
    d = t.delivery
    print(
        f"  {t.config!s:<46} {d.accepted:>6,} accepted in {t.seconds:6.2f} s "
        f"{t.rate:7,.0f} msg/s  p50 {d.percentile(0.5):6.2f} s  p95 {d.percentile(0.95):6.2f} s"
        f"  dup {d.duplicates}  lost {d.losses}  peak RSS {mib(t.peak_rss_total)}"
        f"  workers' CPU {t.cpu_ms['workers']:.2f} ms/msg, machine {t.machine_busy:.1f} cores",
        flush=True,
    )


def print_report(best: Trial, base: Baseline | None, reminders: int, latency: float) -> None:
    d = best.delivery
    print()
    print(f"Chosen: {best.config} (the script's default: {DEFAULT_CONFIGS})")
    print(
        f"  end to end (first enqueue -> last acceptance)  {d.accepted:,} messages in "
        f"{best.seconds:.2f} s = {best.rate:,.0f} messages/s"
    )
    print(
        f"  fan_out() enqueued {reminders:,} tasks in {best.fan_out_seconds:.2f} s; "
        f"first acceptance {d.first_accept - best.started:.2f} s after the first enqueue"
    )
    print(
        f"  queued_at -> provider acceptance            p50 {d.percentile(0.5):.2f} s, "
        f"p95 {d.percentile(0.95):.2f} s, max {max(d.latencies, default=0):.2f} s"
    )
    print(
        f"  duplicates {d.duplicates}, losses {d.losses} (as the fake provider counted: "
        f"{d.accepted:,} accepted of {d.planned:,} planned, {d.attempts:,} sends in "
        f"{sum(d.requests.values()):,} requests: "
        f"{', '.join(f'{n:,} {endpoint}' for endpoint, n in sorted(d.requests.items()))})"
    )
    print(f"  notification statuses afterwards: {best.statuses}")
    cpu = best.cpu_ms
    print(
        f"  CPU per message: workers {cpu['workers']:.2f} ms, fake provider {cpu['provider']:.2f}"
        f" ms, fan-out and polling {cpu['bench']:.2f} ms, PostgreSQL {cpu['postgres']:.2f} ms,"
        f" whole machine {cpu['machine']:.2f} ms ({best.machine_busy:.1f} of {os.cpu_count()}"
        f" cores busy); {best.connections_per_message:.2f} new PostgreSQL connections per message"
    )
    each = ", ".join(mib(size) for size in best.peak_rss_each)
    print(
        f"  workers' peak RSS (each process tree): {each}; all together {mib(best.peak_rss_total)}"
    )
    if best.pool_warnings:
        print(
            f"  urllib3 'Connection pool is full' warnings in the worker logs: "
            f"{best.pool_warnings:,}"
        )
    if base is None:  # --skip-baseline
        return
    b = base.delivery
    print()
    print(
        f"Baseline: one loop calling dispatch.send(id) in one process, {base.sent:,} fresh "
        f"reminders in {base.seconds:.2f} s = {base.rate:,.1f} messages/s"
    )
    print(
        f"  extrapolated to {reminders:,}: {reminders / base.rate / 60:,.1f} min "
        f"(vs {best.seconds:.0f} s through the workers); duplicates {b.duplicates}, "
        f"losses {b.losses}"
    )
    print(f"  workers / baseline: {best.rate / base.rate:,.1f}x")
    print(
        f"  (provider latency {latency * 1000:.0f} ms per call; at most "
        f"{1 / latency:,.0f} messages/s for any one loop)"
    )


# --- Main ----------------------------------------------------------------------------------------


def clean_redis() -> None:
    workers.clean_redis(BROKER_URL, QUEUE_PREFIX)


def start_services(
    stack: ExitStack, latency: float, **extra_env: str
) -> tuple[FakeProviderProcess, dict[str, str]]:
    """The fake provider, this run's queue on Redis and its own database, each undone when
    `stack` closes; returns the provider and the workers' environment (with `extra_env`)."""
    fake = FakeProviderProcess(latency)  # forked before any DB connection or thread
    stack.callback(fake.stop)
    clean_redis()
    stack.callback(clean_redis)
    connection.creation.create_test_db(verbosity=0, autoclobber=True)
    stack.callback(drop_database, connection.settings_dict["NAME"])
    env = worker_environment(  # after create_test_db: DATABASE_URL names the bench database
        broker_url=BROKER_URL,
        var_dir=VAR_DIR,
        DEBUG=os.environ["DEBUG"],
        CELERY_TASK_DEFAULT_QUEUE=QUEUE,
        **fake.worker_environment(FROM_NUMBER),
        **extra_env,
    )
    return fake, env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reminders", type=int, default=20_000, help="even: half email, half SMS")
    parser.add_argument("--baseline", type=int, default=1_000, help="reminders the loop sends")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per provider call")
    parser.add_argument(
        "--configs",
        default=DEFAULT_CONFIGS,
        help="worker setups to try, comma-separated pool:PROCESSESxCONCURRENCY; the best is "
        "reported (default: %(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds per trial at most")
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument(
        "--profile",
        action="store_true",
        help="sample the first worker with py-spy; its raw stacks go to var/bench-dispatch/, "
        "their top functions to the report",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="1,000 reminders and a baseline of 20, seconds"
    )
    args = parser.parse_args()
    if args.smoke:
        args.reminders, args.baseline, args.timeout = 1_000, 20, 120
    if connection.vendor != "postgresql":
        sys.exit("bench_dispatch needs PostgreSQL: set DATABASE_URL (make bench-dispatch does).")
    if args.reminders % 2 or args.baseline % 2:
        sys.exit("--reminders and --baseline must be even: one email and one SMS per customer")
    configs = [WorkerConfig.parse(text) for text in args.configs.split(",")]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C

    with ExitStack() as stack:
        fake, env = start_services(stack, args.latency)
        provider = fake.django_settings
        # The same provider settings for this process (the baseline) and the workers.
        sms = {
            name: value
            for name, value in fake.worker_environment(FROM_NUMBER).items()
            if name.startswith(("SMS_", "TWILIO_"))
        }
        stack.enter_context(
            override_settings(  # for the baseline, in this process
                EMAIL_BACKEND=provider["EMAIL_BACKEND"],
                ANYMAIL={**settings.ANYMAIL, **provider["ANYMAIL"]},
                **sms,
            )
        )

        started = time.perf_counter()
        seed(args.reminders // 2, args.baseline // 2)
        print(
            f"Dispatching {args.reminders:,} reminders (half email, half SMS) through Celery "
            f"on {BROKER_URL} (queue {QUEUE}) to the fake provider, {args.latency * 1000:.0f} ms "
            f"per call; {os.cpu_count()} CPUs; seeded in {time.perf_counter() - started:.1f} s",
            flush=True,
        )
        trials = []
        for config in configs:
            trials.append(
                trial(config, args.reminders, env, fake, args.timeout, profile=args.profile)
            )
            print_trial(trials[-1])
        best = max(trials, key=lambda t: t.rate)
        for t in trials:
            d = t.delivery
            if d.duplicates or d.losses or d.accepted != args.reminders:
                raise SystemExit(
                    f"{t.config}: {d.accepted} accepted, {d.duplicates} duplicates, "
                    f"{d.losses} losses"
                )
        base = None if args.skip_baseline else baseline(args.baseline, fake)
        print_report(best, base, args.reminders, args.latency)
        if best.profile:
            print(f"\nCPU profile of {best.config}'s first worker (py-spy, {best.profile}):")
            print(Profile.read(best.profile).summary(top=PROFILE_TOP))
        if base and (base.delivery.duplicates or base.delivery.losses):
            raise SystemExit("the baseline sent duplicates or lost reminders")


if __name__ == "__main__":
    main()
