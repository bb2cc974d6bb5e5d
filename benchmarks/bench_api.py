"""Benchmark: the integration API over real HTTP, served by gunicorn on PostgreSQL, and the events
it and the engine write, delivered by real Celery workers to a webhook receiver.

1. Bulk upserts: N policy rows (bench_import's rows) POSTed to /api/v1/policies/bulk in requests
   of 5,000 rows, two at a time, new, then the same rows again (unchanged), then one row in ten
   changed: rows per second, every row's answered outcome checked.
2. Single upserts: 8 client threads PUT /api/v1/policies/{number}, half new policies and half
   updates of existing ones: p50, p95 and p99 latency and requests per second.
3. Events: a subscription to the notification and customer events at a webhook receiver in a
   process of its own (tests/webhook_receiver.py, verifying every signature). K seeded reminders
   move to delivered through notifications.lifecycle.move in batches of 100, as a worker's
   send_batch moves them; their events wait in the outbox, then Celery workers start and deliver
   them (2 processes of 2 batches at a time): events per second from the first acceptance to
   the last. Then, with the workers
   running, customers opt out of email through PUT /api/v1/customers/{id}/consent (one event,
   one task per request): delivered live. Both count events never accepted (lost) and
   webhook-ids accepted more than once (duplicated): 0 and 0, as the receiver never fails.

Run with `make bench-api`; it creates and drops its own PostgreSQL database (DATABASE_URL names
the server) and uses its own queue on BENCH_REDIS_URL (default redis://127.0.0.1:6379/13).
Each phase also reports the CPU it cost (gunicorn, the workers, the receiver, PostgreSQL's
sessions, the clients): the machine is shared, and CPU per row or request is steadier than rates.
Writes its figures to var/bench-api/result.json too."""

import argparse
import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Served and worked as in production: DEBUG off (no query log), a secret key of its own.
os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "renewly-bench-only-not-a-secret")
BROKER_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
QUEUE_PREFIX = "renewly-bench-api-"
QUEUE = f"{QUEUE_PREFIX}{os.getpid()}"
os.environ["CELERY_BROKER_URL"] = BROKER_URL  # the events this process writes are published here
os.environ["CELERY_TASK_DEFAULT_QUEUE"] = QUEUE

import django

django.setup()

import requests
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from api.models import ApiKey
from benchmarks import workers
from benchmarks.processes import CLOCK_TICKS, die_with_parent, process_table, stop_warm, tree_cpu
from benchmarks.receiver_process import WebhookReceiverProcess
from benchmarks.seeding import copy_rows, drop_database, make_agents, policy_rows, replace_rules
from benchmarks.servers import free_port
from benchmarks.workers import WorkerConfig, Workers
from events.models import Delivery, Event, EventType, Subscription, new_secret
from notifications import lifecycle
from notifications.models import Notification, ReminderRule, ReminderRun
from policies.importers import RowOutcome
from policies.models import Customer, Policy
from tests.workers import worker_environment

BASE_DIR = Path(settings.BASE_DIR)
VAR_DIR = BASE_DIR / "var" / "bench-api"
# 2 cores: 4 sync workers keep both busy while some wait on PostgreSQL or the network; 2 left
# a fifth of the PUTs' throughput idle, 8 did no better and ran 9 PostgreSQL sessions.
GUNICORN_WORKERS = 4
# A 5,000-row request runs in one process, on one core: two at a time keep both cores busy
# (sequential requests left one idle, at half the rows per second).
BULK_CLIENTS = 2
# As bench_dispatch's workers: one process per core, each running two batches so that one's
# database work overlaps the other's POSTs (EVENTS_SEND_THREADS each).
EVENT_WORKERS = "threads:2x2"
MOVE_BATCH = 100  # notifications a worker's send_batch moves at once
SUBSCRIBED = [name for name in EventType.values if name.startswith(("notification.", "customer."))]


# --- The server ---------------------------------------------------------------------------


class Gunicorn:
    """gunicorn serving config.wsgi on 127.0.0.1:<free port>, dying with the benchmark."""

    def __init__(self, workers: int, env: dict[str, str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        log.parent.mkdir(parents=True, exist_ok=True)
        self.log = log
        with open(log, "wb") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gunicorn",
                    "config.wsgi:application",
                    f"--bind=127.0.0.1:{self.port}",
                    f"--workers={workers}",
                    "--timeout=300",  # a 5,000-row request on a busy machine
                    "--graceful-timeout=10",
                ],
                cwd=BASE_DIR,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{self.log.read_text()[-3000:]}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gunicorn not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def stop(self) -> None:
        stop_warm(self.process, timeout=15)


@dataclass
class Answer:
    status_code: int
    text: str

    def json(self):
        return json.loads(self.text)


class Client:
    """The API as an integration calls it, with the standard library's http.client: the
    clients share the server's 2 cores, and requests cost 1.6 ms of CPU a call where
    http.client costs a fifth of it, CPU the server's figures would otherwise pay for."""

    def __init__(self, base_url: str, key: str):
        address = urllib.parse.urlsplit(base_url)
        self.host, self.port = address.hostname, address.port
        self.headers = {"Authorization": f"Api-Key {key}", "Content-Type": "application/json"}

    def send(self, method: str, path: str, body: bytes) -> Answer:
        # A connection per request: gunicorn's sync workers close each one after answering
        # (its threaded workers keep them alive, but answered the PUTs' p95 slower).
        connection = http.client.HTTPConnection(self.host, self.port, timeout=300)
        try:
            connection.request(method, f"/api/v1{path}", body=body, headers=self.headers)
            response = connection.getresponse()
            return Answer(response.status, response.read().decode())
        finally:
            connection.close()


# --- Figures ------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


class PostgresSessions:
    """The CPU of this database's PostgreSQL sessions, sampled from /proc (a session's process
    title names its database) a few times a second, so that a session that ended meanwhile (a
    connection older than CONN_MAX_AGE, a worker's after its task) still counts."""

    def __init__(self, database: str, interval: float = 0.25):
        self.needle = f" {database} ".encode()
        self.cpu: dict[int, float] = {}  # pid -> CPU seconds at its last sample
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        while not self._stop.wait(interval):
            self.sample()

    def sample(self) -> dict[int, float]:
        table = process_table()
        for pid, proc in table.items():
            if proc.comm != "postgres":
                continue
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
                    ours = self.needle in cmdline.read()
            except OSError:
                continue
            if ours:
                with self._lock:
                    self.cpu[pid] = proc.cpu
        with self._lock:
            return dict(self.cpu)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class CpuMeter:
    """CPU seconds spent, between two readings, by named process trees (gunicorn, the Celery
    workers, the receiver), this database's PostgreSQL sessions, this process (the clients) and
    the whole machine (other engineers' work included: the machine is shared)."""

    def __init__(self, sessions: PostgresSessions, **trees: list[int]):
        self.sessions = sessions
        self.trees = trees

    def read(self) -> dict:
        table = process_table()
        with open("/proc/stat") as stat:
            ticks = [int(value) for value in stat.readline().split()[1:]]
        return {
            "trees": {
                name: sum(tree_cpu(pid, table) for pid in pids) for name, pids in self.trees.items()
            },
            "postgres": self.sessions.sample(),
            "bench": time.process_time(),
            "machine": (sum(ticks) - ticks[3] - ticks[4]) / CLOCK_TICKS,  # all but idle, iowait
            "at": time.monotonic(),
        }

    @staticmethod
    def spent(before: dict, after: dict) -> dict[str, float]:
        """Seconds of CPU each spent, and how many cores the machine kept busy."""
        spent = {name: after["trees"][name] - before["trees"][name] for name in after["trees"]}
        spent["postgres"] = sum(
            cpu - before["postgres"].get(pid, 0.0) for pid, cpu in after["postgres"].items()
        )
        spent["bench"] = after["bench"] - before["bench"]
        spent["machine"] = after["machine"] - before["machine"]
        spent["cores_busy"] = spent["machine"] / (after["at"] - before["at"])
        return spent


def per(spent: dict[str, float], count: int, scale: float = 1000) -> dict[str, float]:
    """CPU milliseconds per `count`/`scale` units (per row x 1,000 = per 1,000 rows...)."""
    return {
        name: round(seconds * 1000 * scale / count, 2)
        if name != "cores_busy"
        else round(seconds, 2)
        for name, seconds in spent.items()
    }


def cpu_line(cpu: dict[str, float], unit: str) -> str:
    parts = [f"{name} {ms:.1f}" for name, ms in cpu.items() if name != "cores_busy"]
    busy = f"{cpu['cores_busy']:.1f} of {os.cpu_count()} cores busy"
    return f"    CPU ms per {unit}: {', '.join(parts)} (machine: {busy})"


@dataclass
class BulkRun:
    label: str
    rows: int
    seconds: float
    counts: dict[str, int]
    cpu_ms_per_1000_rows: dict[str, float]

    @property
    def rate(self) -> float:
        return self.rows / self.seconds


@dataclass
class PutRun:
    label: str
    requests: int
    clients: int
    seconds: float
    latencies_ms: list[float] = field(repr=False)
    statuses: dict[str, int]
    cpu_ms_per_request: dict[str, float]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds

    def summary(self) -> dict:
        return {
            "label": self.label,
            "requests": self.requests,
            "clients": self.clients,
            "seconds": round(self.seconds, 3),
            "requests_per_second": round(self.rate, 1),
            "p50_ms": round(percentile(self.latencies_ms, 0.50), 1),
            "p95_ms": round(percentile(self.latencies_ms, 0.95), 1),
            "p99_ms": round(percentile(self.latencies_ms, 0.99), 1),
            "max_ms": round(max(self.latencies_ms), 1),
            "statuses": self.statuses,
            "cpu_ms_per_request": self.cpu_ms_per_request,
        }


@dataclass
class EventRun:
    label: str
    events: int
    accepted: int
    lost: int
    duplicated: int
    rejected: int  # requests whose signature the receiver refused
    first_to_last_seconds: float
    from_start_seconds: float  # from the workers' start (the backlog) or the first PUT (live)
    deliveries: dict[str, int]
    cpu_ms_per_event: dict[str, float]

    @property
    def rate(self) -> float:
        return self.accepted / self.first_to_last_seconds if self.first_to_last_seconds else 0.0


def warm_up(client: Client, workers: int) -> None:
    """A few upserts on every gunicorn worker (as far as the kernel spreads them): each loads
    its URLconf, the API and phonenumbers' metadata at its first request, not in a timing."""
    calls = []
    for n, row in enumerate(policy_rows(workers * 4, prefix="WARMUP")):
        number = row.pop("policy_number")
        row["customer_email"] = f"warmup{n}@mail.example"
        calls.append(("PUT", f"/policies/{number}", json.dumps(row).encode(), 201))
    with ThreadPoolExecutor(workers) as pool:
        for response in pool.map(lambda call: client.send(*call[:3]), calls):
            if response.status_code != 201:
                raise RuntimeError(f"warm-up answered {response.status_code}: {response.text}")


# --- 1. Bulk ------------------------------------------------------------------------------


def bulk(
    client: Client,
    meter: CpuMeter,
    label: str,
    rows: list[dict],
    *,
    batch: int,
    clients: int,
    expected,
) -> BulkRun:
    """POST `rows` in requests of `batch` rows on `clients` threads; check each row's outcome
    is expected(row) and none is rejected."""
    bodies = [
        json.dumps({"rows": rows[start : start + batch]}).encode()
        for start in range(0, len(rows), batch)
    ]

    def post(body: bytes) -> dict:
        response = client.send("POST", "/policies/bulk", body)
        if response.status_code != 200:
            raise RuntimeError(f"bulk answered {response.status_code}: {response.text[:2000]}")
        return response.json()

    before, started = meter.read(), time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        answers = list(pool.map(post, bodies))
    seconds, after = time.perf_counter() - started, meter.read()
    counts = Counter()
    wrong = []
    for start, answer in zip(range(0, len(rows), batch), answers, strict=True):
        sent = rows[start : start + batch]
        for row, result in zip(sent, answer["rows"], strict=True):
            counts[result["outcome"]] += 1
            if (
                result["outcome"] != expected(row)
                or result["policy_number"] != row["policy_number"]
            ):
                wrong.append((row["policy_number"], result))
    if wrong or counts[RowOutcome.REJECTED] or sum(counts.values()) != len(rows):
        raise SystemExit(f"{label}: {dict(counts)}; wrong outcomes, e.g. {wrong[:5]}")
    run = BulkRun(
        label, len(rows), seconds, dict(counts), per(meter.spent(before, after), len(rows))
    )
    print(
        f"  {label:<30} {run.rows:>8,} rows {seconds:7.2f} s {run.rate:9,.0f} rows/s   "
        f"{', '.join(f'{name} {count:,}' for name, count in sorted(counts.items()))}",
        flush=True,
    )
    print(cpu_line(run.cpu_ms_per_1000_rows, "1,000 rows"), flush=True)
    return run


# --- 2. Single upserts ----------------------------------------------------------------------


def timed_requests(
    client: Client, meter: CpuMeter, label: str, calls: list[tuple], clients: int
) -> PutRun:
    """Send each (method, path, body, expected status) on `clients` threads; each timed."""

    def call(item) -> tuple[float, int, int]:
        method, path, body, expected = item
        started = time.perf_counter()
        response = client.send(method, path, body)
        elapsed = (time.perf_counter() - started) * 1000
        return elapsed, response.status_code, expected

    before, started = meter.read(), time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(call, calls))
    seconds, after = time.perf_counter() - started, meter.read()
    statuses = Counter(str(status) for _, status, _ in results)
    unexpected = [(status, expected) for _, status, expected in results if status != expected]
    if unexpected:
        raise SystemExit(f"{label}: {len(unexpected)} unexpected answers, e.g. {unexpected[:5]}")
    run = PutRun(
        label,
        len(calls),
        clients,
        seconds,
        [ms for ms, *_ in results],
        dict(statuses),
        per(meter.spent(before, after), len(calls), scale=1),
    )
    figures = run.summary()
    print(
        f"  {label:<30} {run.requests:>8,} requests {seconds:6.2f} s {run.rate:7,.0f} req/s   "
        f"p50 {figures['p50_ms']:.1f} ms  p95 {figures['p95_ms']:.1f} ms  "
        f"p99 {figures['p99_ms']:.1f} ms   {dict(statuses)}",
        flush=True,
    )
    print(cpu_line(run.cpu_ms_per_request, "request"), flush=True)
    return run


def put_calls(count: int, existing: int) -> list[tuple]:
    """Half new policies (PUT-…, new customers), half updates of existing ones (a new expiry),
    interleaved: (method, path, body, expected status)."""
    updates = policy_rows(existing)
    step = max(existing // max(count // 2, 1), 1)
    calls = []
    for n, row in enumerate(policy_rows(count, prefix="PUT")):
        if n % 2 == 0:
            number = row.pop("policy_number")
            row["customer_email"] = f"put{n}@mail.example"
            calls.append(("PUT", f"/policies/{number}", json.dumps(row).encode(), 201))
        else:
            row = next(updates)
            for _ in range(step - 1):
                next(updates, None)
            number = row.pop("policy_number")
            row["expiry_date"] = (
                date.fromisoformat(row["expiry_date"]) + timedelta(730)
            ).isoformat()
            calls.append(("PUT", f"/policies/{number}", json.dumps(row).encode(), 200))
    return calls


# --- 3. Events ----------------------------------------------------------------------------


def seed_sent_reminders(count: int) -> list[int]:
    """`count` reminders already sent (one per policy, the first policies), ready to move to
    delivered. Returns their ids."""
    rule = ReminderRule.objects.filter(channel="email").first()
    run = ReminderRun.objects.create(run_date=timezone.localdate(), finished_at=timezone.now())
    policies = Policy.objects.order_by("pk").values_list("pk", "customer_id", "expiry_date")
    now = timezone.now()
    first = (Notification.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    copy_rows(
        Notification,
        (
            {
                "id": first + n,
                "policy_id": policy_id,
                "customer_id": customer_id,
                "rule_id": rule.pk,
                "channel": "email",
                "expiry_date": expiry_date,
                "lead_days": rule.lead_days,
                "due_on": expiry_date - timedelta(days=rule.lead_days),
                "run_id": run.pk,
                "status": "sent",
                "attempts": 1,
                "sent_at": now,
                "provider_message_id": f"bench-{first + n}",
            }
            for n, (policy_id, customer_id, expiry_date) in enumerate(policies[:count])
        ),
    )
    return list(range(first, first + count))


def move_to_delivered(ids: list[int]) -> float:
    """The engine's path: each batch moved in its transaction, its events written there and
    their delivery tasks published once it commits. Returns the seconds it took."""
    started = time.perf_counter()
    for start in range(0, len(ids), MOVE_BATCH):
        with transaction.atomic():
            moved = lifecycle.move(
                ids[start : start + MOVE_BATCH], "delivered", delivered_at=timezone.now()
            )
        if moved != len(ids[start : start + MOVE_BATCH]):
            raise SystemExit(f"moved {moved} of a batch of {MOVE_BATCH}")
    return time.perf_counter() - started


def consume(queue: str, workers: int) -> None:
    """Tell every worker to consume `queue` too (Celery's remote control), and wait for each
    to say it does."""
    from config.celery import app

    answers = app.control.add_consumer(queue, reply=True, timeout=10, limit=workers)
    if len(answers) != workers:
        raise RuntimeError(f"{len(answers)} of {workers} workers took {queue}: {answers}")


def wait_for_deliveries(
    events, receiver: WebhookReceiverProcess, workers: Workers, timeout: float
) -> None:
    """Until every delivery of `events` left pending/delivering (and the receiver counted as
    many acceptances), or the time is out."""
    unsettled = Delivery.objects.filter(event__in=events, status__in=["pending", "delivering"])
    expected = events.count()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for n, process in enumerate(workers.processes):
            if process.poll() is not None:
                raise RuntimeError(f"worker {n} died:\n{workers.tail(n)}")
        if receiver.accepted_total() >= expected and not unsettled.exists():
            return
        time.sleep(0.1)
    print(f"  (timed out after {timeout:.0f} s with deliveries unsettled)", flush=True)


def event_report(
    label: str, events, receiver: WebhookReceiverProcess, started: float, cpu: dict[str, float]
) -> EventRun:
    report = receiver.collect()
    accepted_at: dict[str, list[float]] = report["accepted_at"]
    ids = {f"evt_{uid.hex}" for uid in events.values_list("uid", flat=True)}
    times = [moment for moments in accepted_at.values() for moment in moments]
    first, last = min(times, default=0.0), max(times, default=0.0)
    run = EventRun(
        label=label,
        events=len(ids),
        accepted=len(set(accepted_at) & ids),
        lost=len(ids - set(accepted_at)),
        duplicated=sum(len(moments) - 1 for moments in accepted_at.values()),
        rejected=report["rejected"] + len(set(accepted_at) - ids),  # or not ours
        first_to_last_seconds=last - first,
        from_start_seconds=last - started if times else 0.0,
        deliveries=dict(
            Counter(Delivery.objects.filter(event__in=events).values_list("status", flat=True))
        ),
        cpu_ms_per_event=per(cpu, max(len(ids), 1), scale=1),
    )
    print(
        f"  {label:<30} {run.accepted:>8,} of {run.events:,} events "
        f"{run.first_to_last_seconds:6.2f} s "
        f"{run.rate:7,.0f} events/s (from the start {run.from_start_seconds:.2f} s)   "
        f"lost {run.lost}, duplicated {run.duplicated}, refused {run.rejected}, "
        f"deliveries {run.deliveries}",
        flush=True,
    )
    print(cpu_line(run.cpu_ms_per_event, "event"), flush=True)
    return run


# --- Main ---------------------------------------------------------------------------------


def clean_redis() -> None:
    workers.clean_redis(BROKER_URL, QUEUE_PREFIX)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="rows the bulk upserts send")
    parser.add_argument("--batch", type=int, default=5_000, help="rows per bulk request")
    parser.add_argument(
        "--bulk-clients", type=int, default=BULK_CLIENTS, help="bulk requests at once"
    )
    parser.add_argument("--puts", type=int, default=4_000, help="single PUT upserts")
    parser.add_argument("--put-clients", type=int, default=8, help="client threads for the PUTs")
    parser.add_argument("--events", type=int, default=20_000, help="reminders moved to delivered")
    parser.add_argument("--consents", type=int, default=2_000, help="consent PUTs (live events)")
    parser.add_argument("--gunicorn-workers", type=int, default=GUNICORN_WORKERS)
    parser.add_argument(
        "--event-workers",
        default=EVENT_WORKERS,
        help="Celery workers delivering events, pool:PROCESSESxCONCURRENCY (%(default)s)",
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for events")
    parser.add_argument("--json", type=Path, default=VAR_DIR / "result.json")
    parser.add_argument("--smoke", action="store_true", help="a few thousand rows, seconds")
    args = parser.parse_args()
    if args.smoke:
        args.rows, args.batch, args.puts, args.events, args.consents = 2_000, 500, 200, 500, 100
        args.timeout = 120
    if connection.vendor != "postgresql":
        sys.exit("bench_api needs PostgreSQL: set DATABASE_URL (make bench-api does).")
    if args.events > args.rows or args.consents > args.rows // 2:
        sys.exit("--events may be at most --rows, --consents at most half (the customers)")
    worker_config = WorkerConfig.parse(args.event_workers)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up as on Ctrl-C

    with ExitStack() as stack:
        secret = new_secret()
        receiver = WebhookReceiverProcess(secret)  # forked before any DB connection or thread
        stack.callback(receiver.stop)
        clean_redis()
        stack.callback(clean_redis)
        connection.creation.create_test_db(verbosity=0, autoclobber=True)
        stack.callback(drop_database, connection.settings_dict["NAME"])

        make_agents(20)
        replace_rules([30])
        _api_key, key = ApiKey.objects.create_key(name="bench")
        # Before the server starts: each process reads the subscriptions at its first change.
        Subscription.objects.create(
            name="bench receiver", url=receiver.url, secret=secret, event_types=SUBSCRIBED
        )
        env = worker_environment(  # after create_test_db: DATABASE_URL names the bench database
            broker_url=BROKER_URL,
            var_dir=VAR_DIR,
            DEBUG=os.environ["DEBUG"],
            SECRET_KEY=os.environ["SECRET_KEY"],
            ALLOWED_HOSTS="127.0.0.1",
            API_RATE_LIMIT_PER_MINUTE="0",
            CELERY_TASK_DEFAULT_QUEUE=QUEUE,
        )
        server = Gunicorn(args.gunicorn_workers, env, VAR_DIR / "gunicorn.log")
        stack.callback(server.stop)
        server.wait_ready()
        client = Client(server.url, key)
        warm_up(client, args.gunicorn_workers)
        sessions = PostgresSessions(connection.settings_dict["NAME"])
        stack.callback(sessions.stop)
        meter = CpuMeter(sessions, gunicorn=[server.process.pid])
        print(
            f"Integration API at {server.url}: gunicorn, {args.gunicorn_workers} sync workers, "
            f"DEBUG off, PostgreSQL; {os.cpu_count()} CPUs",
            flush=True,
        )

        # 1. Bulk
        print(
            f"Bulk upserts: {args.rows:,} rows in requests of {args.batch:,}, "
            f"{args.bulk_clients} at a time",
            flush=True,
        )
        first = list(policy_rows(args.rows))
        changed = list(policy_rows(args.rows, changed_every=10))
        bulk_runs = [
            bulk(client, meter, "new rows", first, batch=args.batch, clients=args.bulk_clients,
                 expected=lambda row: RowOutcome.CREATED),
            bulk(client, meter, "same rows again (unchanged)", first, batch=args.batch,
                 clients=args.bulk_clients, expected=lambda row: RowOutcome.UNCHANGED),
            bulk(client, meter, "one row in ten changed", changed, batch=args.batch,
                 clients=args.bulk_clients,
                 expected=lambda row: RowOutcome.UPDATED
                 if int(row["policy_number"].rpartition("-")[2]) % 10 == 0
                 else RowOutcome.UNCHANGED),
        ]  # fmt: skip

        # 2. Single upserts
        print(f"Single upserts: PUT /api/v1/policies/{{number}}, {args.put_clients} clients")
        put_run = timed_requests(
            client, meter, "PUT, half new, half updated", put_calls(args.puts, args.rows),
            args.put_clients,
        )  # fmt: skip

        # 3. Events
        print(
            f"Events: to a webhook receiver in its own process, delivered by {worker_config}, "
            f"EVENTS_BATCH_SIZE {settings.EVENTS_BATCH_SIZE}, "
            f"EVENTS_SEND_THREADS {settings.EVENTS_SEND_THREADS}",
            flush=True,
        )
        ids = seed_sent_reminders(args.events)
        generated = move_to_delivered(ids)
        backlog = Event.objects.filter(type=EventType.NOTIFICATION_DELIVERED)
        if backlog.count() != args.events:
            raise SystemExit(f"{backlog.count()} events written for {args.events} moves")
        print(
            f"  {args.events:,} reminders moved to delivered in batches of {MOVE_BATCH} in "
            f"{generated:.2f} s (events written, tasks queued; no worker yet)",
            flush=True,
        )
        # The workers start on a queue of their own, then take the events' queue all at once:
        # their start is neither timed nor counted in their CPU.
        workers = Workers(worker_config, env, f"{QUEUE}-start", VAR_DIR)
        stack.callback(workers.stop)
        workers.start()
        workers.wait_ready()
        meter = CpuMeter(
            sessions,
            gunicorn=[server.process.pid],
            workers=[process.pid for process in workers.processes],
            receiver=[receiver.process.pid],
        )
        before, started = meter.read(), time.time()
        consume(QUEUE, len(workers.processes))
        wait_for_deliveries(backlog, receiver, workers, args.timeout)
        cpu = meter.spent(before, meter.read())
        event_runs = [event_report("backlog of delivered", backlog, receiver, started, cpu)]

        customer_ids = list(Customer.objects.order_by("pk").values_list("pk", flat=True))
        consents = [
            ("PUT", f"/customers/{pk}/consent", b'{"email": false}', 200)
            for pk in customer_ids[: args.consents]
        ]
        started, before = time.time(), meter.read()
        consent_run = timed_requests(
            client, meter, "consent PUTs (live events)", consents, args.put_clients
        )
        live = Event.objects.filter(type=EventType.CUSTOMER_OPTED_OUT)
        wait_for_deliveries(live, receiver, workers, args.timeout)
        cpu = meter.spent(before, meter.read())
        event_runs.append(event_report("opted out, live", live, receiver, started, cpu))

    failures = [
        f"{run.label}: {run.lost} lost, {run.duplicated} duplicated, {run.rejected} refused"
        for run in event_runs
        if run.lost or run.duplicated or run.rejected
    ]
    result = {
        "configuration": {
            "gunicorn_workers": args.gunicorn_workers,
            "bulk_clients": args.bulk_clients,
            "batch_rows": args.batch,
            "put_clients": args.put_clients,
            "event_workers": str(worker_config),
            "events_batch_size": settings.EVENTS_BATCH_SIZE,
            "events_send_threads": settings.EVENTS_SEND_THREADS,
            "cpus": os.cpu_count(),
        },
        "bulk": [
            {**asdict(run), "rows_per_second": round(run.rate), "seconds": round(run.seconds, 3)}
            for run in bulk_runs
        ],
        "put": put_run.summary(),
        "consent_put": consent_run.summary(),
        "events": [{**asdict(run), "events_per_second": round(run.rate, 1)} for run in event_runs],
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print_summary(result, args.json)
    if failures:
        raise SystemExit("; ".join(failures))


def print_summary(result: dict, path: Path) -> None:
    put = result["put"]
    print()
    print(f"{'Summary':<44} {'figure':>14}   target")
    for run, target in zip(result["bulk"], ("≥ 10,000", "≥ 30,000", ""), strict=True):
        print(f"  bulk, {run['label']:<37} {run['rows_per_second']:>8,} rows/s   {target}")
    print(f"  PUT upserts, {put['clients']} clients, p50{'':<19} {put['p50_ms']:>8.1f} ms")
    print(f"  PUT upserts, {put['clients']} clients, p95{'':<19} {put['p95_ms']:>8.1f} ms   ≤ 50")
    print(f"  PUT upserts, {put['clients']} clients, p99{'':<19} {put['p99_ms']:>8.1f} ms")
    print(f"  PUT upserts, requests per second{'':<10} {put['requests_per_second']:>8,.0f} req/s")
    for run in result["events"]:
        print(
            f"  events, {run['label']:<35} {run['events_per_second']:>8,.0f} events/s   "
            f"{'≥ 500' if run is result['events'][0] else ''}"
        )
        print(
            f"    lost / duplicated webhook-ids{'':<12} {run['lost']:>5} / {run['duplicated']:<5}"
            f"   0 / 0"
        )
    print(f"(written to {path})")


if __name__ == "__main__":
    main()
