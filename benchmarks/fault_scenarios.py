"""The fault suite's faults, one function each, and how a case is run and counted.

A case seeds customers (each with an email address and a phone number of their own, one policy
each) so that exactly `reminders` reminders fall due today, half email, half SMS; starts two
real `celery worker` processes (the documented threads pool, benchmarks/workers.py) and a real
`celery beat` (django-celery-beat's DatabaseScheduler, as deployed) that runs the release task
(`notifications.tasks.release_reminders`: deferred, stalled and reconciled notifications sent
again) every 2 seconds instead of every minute; sends today's reminders the way the daily scan does
(or lets Beat fire the scan); does its harm "mid-dispatch", once the fake provider has accepted
a quarter of them; and waits until every reminder has settled. A supervisor thread starts again,
a second later, any worker or Beat that exited, as a container's restart policy would.

What a row reports, counted by the fake provider (tests/fake_provider.py, in a process of its
own, 50 ms per call), not by the code under test:

- planned: the reminders due (one per customer and channel);
- accepted: the messages the provider accepted;
- duplicates: messages accepted beyond the first, per recipient (each recipient has exactly one
  reminder due, so this is per recipient and notification; a second notification for the same
  policy and channel counts too);
- lost: due reminders the provider never accepted that the database does not show as rightly
  not sent (cancelled or skipped). A reminder that failed is lost: every fault here passes;
- time to recover: from the fault to the last reminder settled (its last status change).
"""

import ast
import os
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

import kombu
from django.db import InterfaceError, OperationalError, connection
from django.db.models import Max
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from benchmarks.processes import kill_group, stop_warm
from benchmarks.provider_process import FakeProviderProcess
from benchmarks.seeding import copy_policyholders, drop_database, make_agents, replace_rules
from benchmarks.workers import DOCUMENTED_CONFIG, WorkerConfig, Workers, start_beat
from notifications.models import Notification, ReminderRun
from notifications.schedule import DAILY_SCAN_NAME, RELEASE_NAME
from notifications.tasks import daily_scan
from policies.models import Customer
from tests.workers import worker_environment

Status = Notification.Status
LATENCY = 0.05  # seconds per provider call
# A "timeout" outcome answers this late: after both clients gave up (3 s each, fault_case.py),
# on a message the provider accepted all the same, as real providers do.
HANG_SECONDS = 10
FROM_NUMBER = "+15005550006"
LEAD_DAYS = 7
MID_DISPATCH = 0.25  # the share of the reminders accepted when the fault strikes
RELEASE_EVERY_SECONDS = 2
RESTART_AFTER_SECONDS = 1.0  # how soon the supervisor starts an exited process again
PROVIDER_FAULT_SECONDS = 20  # how long the provider answers 5xx, 429, or times out
RECOVERY_TIMEOUT = 240  # seconds after the fault ended for every reminder to settle
GRACE_SECONDS = 2  # after settling: a late duplicate would arrive by then
UNSETTLED = (Status.PLANNED, Status.QUEUED, Status.SENDING, Status.DEFERRED)
RIGHTLY_NOT_SENT = (Status.CANCELLED, Status.SKIPPED)
DATABASE_ERRORS = (OperationalError, InterfaceError)
RECOVERED = re.compile(r"recovered \d+ abandoned sends: (\{[^}]*\})")
RECEIVED = re.compile(r"send_batch\[[0-9a-f-]+\] received")


@dataclass
class Row:
    fault: str
    broker: str
    planned: int = 0
    accepted: int = 0
    duplicates: int = 0
    lost: int = 0
    recover_seconds: float | None = None
    notes: list[str] = field(default_factory=list)
    error: str = ""


class Supervisor:
    """Starts again, RESTART_AFTER_SECONDS after it exited, any worker or Beat of the case, as
    docker's restart policy or systemd would; notes the exits that no fault caused."""

    def __init__(self, case: "Case"):
        self.case = case
        self.lock = threading.RLock()
        self.expected: set[str] = set()  # processes a fault stopped: their exit is no news
        self.restarts: Counter[str] = Counter()
        self.exited_at: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="supervisor", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """(What it started gets SIGTERM as its thread ends: PR_SET_PDEATHSIG follows the
        thread that forked. The case is over by then.)"""
        self._stop.set()
        self._thread.join()

    def kill_worker(self, n: int) -> None:
        with self.lock:
            self.expected.add(f"worker {n}")
            self.case.workers.kill(n)

    def stop_worker_warm(self, n: int) -> None:
        """SIGTERM to the worker's main process: it finishes what it runs, then exits."""
        with self.lock:
            self.expected.add(f"worker {n}")
            self.case.workers.processes[n].send_signal(signal.SIGTERM)

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            with self.lock:
                for n, process in enumerate(self.case.workers.processes):
                    if self._due(f"worker {n}", process):
                        kill_group(process)  # whatever is left of its group
                        self.case.workers.restart(n)
                        self._restarted(f"worker {n}")
                for n, process in enumerate(self.case.beats):
                    if self._due(f"beat {n}", process):
                        kill_group(process)
                        self.case.beats[n] = self.case.start_one_beat(n)
                        self._restarted(f"beat {n}")

    def _restarted(self, name: str) -> None:
        self.restarts[name] += 1
        self.case.log(f"supervisor: {name} started again")

    def _due(self, name: str, process) -> bool:
        """Whether the process exited long enough ago to be started again now."""
        if process.poll() is None:
            return False
        now = time.monotonic()
        if name not in self.exited_at:
            self.exited_at[name] = now
            if name not in self.expected:
                self.case.note(f"{name} exited by itself (code {process.returncode})")
        if now - self.exited_at[name] < RESTART_AFTER_SECONDS:
            return False
        del self.exited_at[name]
        self.expected.discard(name)
        return True


@dataclass
class Case:
    fault: str
    broker: str
    reminders: int
    outage_seconds: float
    fake: FakeProviderProcess
    env: dict[str, str]
    var_dir: Path
    servers: dict
    stack: ExitStack
    row: Row
    workers: Workers | None = None
    beats: list = field(default_factory=list)
    supervisor: Supervisor | None = None
    fault_at: float | None = None
    fault_seconds: float = 0.0
    beats_started_at: float | None = None
    settled: bool = False
    started: float = field(default_factory=time.time)

    # --- Telling ---------------------------------------------------------------------------

    def log(self, message: str) -> None:
        print(f"[{time.time() - self.started:7.2f}s] {message}", flush=True)

    def note(self, message: str) -> None:
        self.log(message)
        self.row.notes.append(message)

    # --- Setting up ------------------------------------------------------------------------

    def seed(self, *, missed_days: int = 0) -> None:
        """reminders / 2 customers, each due a reminder today by email and by SMS. With
        `missed_days`, the scans of that many days were missed: one rule per missed day (lead
        times LEAD_DAYS .. LEAD_DAYS + missed_days - 1), so each policy and channel has a
        reminder due for each of those days, and the last scan ran `missed_days` days ago."""
        today = timezone.localdate()
        replace_rules(range(LEAD_DAYS, LEAD_DAYS + max(missed_days, 1)))
        changed_at = None
        if missed_days:
            then = timezone.now() - timedelta(days=missed_days)
            changed_at = then - timedelta(days=1)  # the policies were there before that scan
            previous = ReminderRun.objects.create(run_date=today - timedelta(days=missed_days))
            ReminderRun.objects.filter(pk=previous.pk).update(started_at=then, finished_at=then)
        copy_policyholders(
            range(1, self.reminders // 2 + 1),
            expiry_date=today + timedelta(days=LEAD_DAYS),
            agent_ids=make_agents(20),
            changed_at=changed_at,
        )

    def start(self, *, beats: int = 1, daily_scan_last_ran: timedelta | None = None) -> None:
        """Two workers, then `beats` Beats with the release task every RELEASE_EVERY_SECONDS.
        The daily scan is enabled only with `daily_scan_last_ran`: it last ran that long ago,
        and its time of day is now, so that a Beat starting now fires it (once). (Beat loads
        only the crontab tasks due within two hours of the current hour, django-celery-beat
        2.9's DatabaseScheduler: a scan missed by more than that waits for its next time.)"""
        every, _ = IntervalSchedule.objects.get_or_create(
            every=RELEASE_EVERY_SECONDS, period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.update(enabled=False, last_run_at=None)
        PeriodicTask.objects.filter(name=RELEASE_NAME).update(enabled=True, interval=every)
        if daily_scan_last_ran is not None:
            now = timezone.now()
            scan = PeriodicTask.objects.filter(name=DAILY_SCAN_NAME)
            CrontabSchedule.objects.filter(periodictask__in=scan).update(
                minute=str(now.minute), hour=str(now.hour)
            )
            scan.update(enabled=True, last_run_at=now - daily_scan_last_ran)
        queue = self.env["CELERY_TASK_DEFAULT_QUEUE"]
        config = WorkerConfig.parse(DOCUMENTED_CONFIG)
        self.workers = Workers(config, self.env, queue, self.var_dir)
        self.stack.callback(self.workers.stop)
        self.workers.start()
        self.workers.wait_ready(timeout=120)
        self.log("workers ready")
        self.beats_started_at = time.time()
        self.beats = [self.start_one_beat(n) for n in range(beats)]
        self.stack.callback(self._stop_beats)
        self.supervisor = Supervisor(self)
        self.supervisor.start()
        self.stack.callback(self.supervisor.stop)  # first thing on leaving: no more restarts

    def start_one_beat(self, n: int):
        # Each Beat its own pid file (two would refuse to share one), the same schedule.
        return start_beat(self.env, self.var_dir, name=f"beat-{n}")

    def _stop_beats(self) -> None:
        for process in self.beats:
            stop_warm(process, timeout=10)

    # --- Acting ------------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Plan today's reminders and fan them out, as the daily scan task does."""
        scan = daily_scan()
        if scan["planned"] != self.reminders:
            raise RuntimeError(f"the scan planned {scan['planned']}, expected {self.reminders}")
        self.log(f"scan: {scan['planned']} planned, {scan['enqueued']} enqueued")

    def wait_accepted(self, share: float = MID_DISPATCH, timeout: float = 120) -> None:
        target = int(self.reminders * share)
        deadline = time.monotonic() + timeout
        while (accepted := self.fake.accepted_count()) < target:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{accepted} of {target} accepted after {timeout:.0f}s")
            time.sleep(0.01)

    def fault_begins(self, what: str) -> None:
        self.fault_at = time.time()
        self.note(f"{what} with {self.fake.accepted_count()} accepted")

    def fault_ends(self) -> None:
        self.fault_seconds = time.time() - self.fault_at
        self.note(f"the fault lasted {self.fault_seconds:.0f} s")

    def wait_restarted(self, n: int, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not self.supervisor.restarts[f"worker {n}"]:
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker {n} not started again in {timeout:.0f}s")
            time.sleep(0.05)
        self.workers.wait_ready(timeout=120, only=[n])

    def wait_for_a_task(self, timeout: float = 180) -> int:
        """The first worker to receive a send_batch task from now on."""
        seen = [len(self.workers.since_start(n)) for n in range(len(self.workers.processes))]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for n, already in enumerate(seen):
                if RECEIVED.search(self.workers.since_start(n), already):
                    return n
            time.sleep(0.02)
        raise RuntimeError(f"no worker received a send_batch task in {timeout:.0f}s")

    # --- Waiting and counting -----------------------------------------------------------

    def settle(self) -> None:
        """Wait until a scan finished today and no reminder is left to send (or the time is up:
        those left count as lost)."""
        timeout = RECOVERY_TIMEOUT + self.fault_seconds
        deadline = time.monotonic() + timeout
        today = timezone.localdate()
        left = None
        while time.monotonic() < deadline:
            try:
                scanned = ReminderRun.objects.filter(
                    run_date=today, finished_at__isnull=False
                ).exists()
                left = Notification.objects.filter(status__in=UNSETTLED).count()
            except DATABASE_ERRORS:  # PostgreSQL restarting: try again
                connection.close()
                time.sleep(0.5)
                continue
            if scanned and left == 0:
                self.settled = True
                self.log("settled")
                time.sleep(GRACE_SECONDS)
                return
            time.sleep(0.25)
        self.note(f"not settled after {timeout:.0f} s: {left} reminders still to send")
        with suppress(*DATABASE_ERRORS):
            why = Counter(
                Notification.objects.filter(status__in=UNSETTLED).values_list(
                    "status", "last_error"
                )
            )
            for (status, error), count in why.most_common(3):
                self.note(f"{count} {status}: {error[:120] or 'no error recorded'}")

    def tally(self) -> None:
        report = self.fake.collect()
        accepted = Counter(report["accepted"])
        # Every customer is due one reminder by email and one by SMS.
        expected = set()
        for email, phone in Customer.objects.values_list("email", "phone"):
            expected |= {email.lower(), phone}
        rightly_not_sent = set()
        for channel, email, phone in Notification.objects.filter(
            status=Status.CANCELLED
        ).values_list("channel", "customer__email", "customer__phone"):
            rightly_not_sent.add(email.lower() if channel == "email" else phone)
        row = self.row
        row.planned = len(expected)
        row.accepted = sum(accepted.values())
        row.duplicates = sum(count - 1 for count in accepted.values() if count > 1)
        row.lost = len(expected - set(accepted) - rightly_not_sent)
        if unknown := set(accepted) - expected:
            row.notes.append(f"{len(unknown)} recipients accepted that were not due a reminder")
        last_change = Notification.objects.exclude(status=Status.SKIPPED).aggregate(
            last=Max("status_changed_at")
        )["last"]
        if last_change and self.fault_at and self.settled:
            row.recover_seconds = round(last_change.timestamp() - self.fault_at, 1)
        statuses = Counter(Notification.objects.values_list("status", flat=True))
        row.notes.append("statuses " + ", ".join(f"{s} {n}" for s, n in sorted(statuses.items())))
        scans = ReminderRun.objects.filter(run_date=timezone.localdate()).count()
        if scans != 1:
            row.notes.append(f"{scans} scans today")
        if reconciled := self.reconciled():
            row.notes.append(
                "reconciled with the provider: "
                + ", ".join(f"{outcome} {n}" for outcome, n in sorted(reconciled.items()))
            )
        if self.supervisor and self.supervisor.restarts:
            row.notes.append(
                "restarted: "
                + ", ".join(f"{name} x{n}" for name, n in sorted(self.supervisor.restarts.items()))
            )

    def reconciled(self) -> Counter:
        """What the workers' recovery of abandoned sends found, as their logs tell it."""
        outcomes = Counter()
        for log in self.workers.logs if self.workers else []:
            for found in RECOVERED.findall(log.read_text(errors="replace")):
                outcomes.update(ast.literal_eval(found))
        return outcomes


# --- The faults ------------------------------------------------------------------------------


def sigkill_one(case: Case) -> None:
    case.seed()
    case.start()
    case.dispatch()
    case.wait_accepted()
    case.fault_begins("worker 0's process group SIGKILLed")
    case.supervisor.kill_worker(0)


def sigkill_twice(case: Case) -> None:
    """Killed, started again by the supervisor, and killed again as soon as a worker takes
    on a batch after that restart (mid-dispatch, or mid-recovery when dispatch was over)."""
    sigkill_one(case)
    case.wait_restarted(0)
    n = case.wait_for_a_task()
    time.sleep(0.2)  # its sends under way
    case.note(f"worker {n}'s process group SIGKILLed again")
    case.supervisor.kill_worker(n)


def sigkill_both(case: Case) -> None:
    case.seed()
    case.start()
    case.dispatch()
    case.wait_accepted()
    case.fault_begins("both workers' process groups SIGKILLed at once")
    with case.supervisor.lock:
        case.supervisor.kill_worker(0)
        case.supervisor.kill_worker(1)


def sigterm(case: Case) -> None:
    case.seed()
    case.start()
    case.dispatch()
    case.wait_accepted()
    case.fault_begins("worker 0 sent SIGTERM (warm shutdown)")
    case.supervisor.stop_worker_warm(0)


def broker_kill(case: Case) -> None:
    case.seed()
    case.start()
    case.dispatch()
    case.wait_accepted()
    broker = case.servers["broker"]
    case.fault_begins(f"the broker ({broker.name}) SIGKILLed")
    broker.kill()
    time.sleep(2)
    broker.start()  # empty: no queue, no message survived
    case.note(f"the broker back, empty, after {time.time() - case.fault_at:.1f} s")


def postgres_restart(case: Case) -> None:
    case.seed()
    case.start()
    case.dispatch()
    case.wait_accepted()
    case.fault_begins("PostgreSQL restarted (fast shutdown: every session ended)")
    connection.close()
    case.servers["postgres"].restart()
    case.note(f"PostgreSQL back after {time.time() - case.fault_at:.1f} s")


def two_beats(case: Case) -> None:
    case.seed()
    case.start(beats=2, daily_scan_last_ran=timedelta(days=1))
    case.fault_at = case.beats_started_at
    case.note("two Beats started on the same schedule, the daily scan due")


def beat_five_days(case: Case) -> None:
    case.seed(missed_days=5)
    case.start(daily_scan_last_ran=timedelta(days=5))
    case.fault_at = case.beats_started_at
    case.note("Beat started after five days down (five days of reminders due)")


def provider_answers(outcome: str) -> Callable[[Case], None]:
    def fault(case: Case) -> None:
        case.seed()
        case.start()
        case.dispatch()
        case.wait_accepted()
        case.fault_begins(f"the provider answers {outcome} to every send")
        case.fake.always(outcome)
        time.sleep(PROVIDER_FAULT_SECONDS)
        case.fake.always("ok")
        case.fault_ends()

    return fault


def provider_down(case: Case) -> None:
    case.seed()
    case.start()
    case.dispatch()
    case.wait_accepted()
    case.fault_begins("the provider down (connections refused)")
    case.fake.go_down()
    time.sleep(case.outage_seconds)
    case.fake.come_back()
    case.fault_ends()


SCENARIOS: dict[str, Callable[[Case], None]] = {
    "sigkill-one": sigkill_one,
    "sigkill-twice": sigkill_twice,
    "sigkill-both": sigkill_both,
    "sigterm": sigterm,
    "broker-kill": broker_kill,
    "postgres-restart": postgres_restart,
    "two-beats": two_beats,
    "beat-five-days": beat_five_days,
    "provider-5xx": provider_answers("503"),
    "provider-429": provider_answers("429"),
    "provider-timeout": provider_answers("timeout"),
    "provider-down": provider_down,
}


# --- A case, start to end --------------------------------------------------------------------


def run_case(
    *,
    fault: str,
    broker: str,
    broker_url: str,
    queue: str,
    reminders: int,
    outage_seconds: float,
    database: str,
    var_dir: Path,
    servers: dict,
) -> dict:
    """Run one fault on one broker; returns its row (a dict) even when the case broke."""
    row = Row(fault=fault, broker=broker)
    scenario = SCENARIOS[fault]
    with ExitStack() as stack:
        fake = FakeProviderProcess(LATENCY, hang_seconds=HANG_SECONDS)  # before any thread
        stack.callback(fake.stop)
        connection.settings_dict["TEST"]["NAME"] = database
        connection.creation.create_test_db(verbosity=0, autoclobber=True)
        stack.callback(drop_database, database)
        if broker == "rabbitmq" and "broker" not in servers:  # the shared node: our queue only
            stack.callback(_delete_queue, broker_url, queue)
        env = worker_environment(  # after create_test_db: DATABASE_URL names the case's database
            broker_url=broker_url,
            var_dir=var_dir,
            DEBUG=os.environ["DEBUG"],
            CELERY_TASK_DEFAULT_QUEUE=queue,
            **fake.worker_environment(FROM_NUMBER),
        )
        case = Case(
            fault=fault,
            broker=broker,
            reminders=reminders,
            outage_seconds=outage_seconds,
            fake=fake,
            env=env,
            var_dir=var_dir,
            servers=servers,
            stack=stack,
            row=row,
        )
        try:
            scenario(case)
            case.settle()
            case.tally()
        except Exception as error:
            case.log(f"the case broke: {error!r}")
            row.error = f"{type(error).__name__}: {error}"
        case.log(f"row: {asdict(row)}")
    return asdict(row)


def _delete_queue(broker_url: str, queue: str) -> None:
    with suppress(Exception), kombu.Connection(broker_url, connect_timeout=5) as broker:
        channel = broker.channel()
        channel.queue_delete(queue)
        for exchange in (queue, f"{queue}.pidbox"):  # its own, and its remote control's
            channel.exchange_delete(exchange)
