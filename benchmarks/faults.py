"""The fault suite: real workers, real Beat, real brokers and a fake provider that counts what it
accepts, per recipient and message; a fault strikes mid-dispatch, and every reminder must still
go out exactly once. Each row reports planned / accepted / duplicates / lost / time to recover
(benchmarks/fault_scenarios.py says how each is counted), and the suite fails (exit status 1)
when any row has a duplicate or a loss, or could not run.

    make faults                                   # every fault: 6,000 reminders, both brokers
    .venv/bin/python benchmarks/faults.py --smoke # what make test runs: 1,000 reminders, Redis
    .venv/bin/python benchmarks/faults.py --only sigkill-one,two-beats --broker rabbitmq

Each case (one fault on one broker) runs in a process of its own (benchmarks/fault_case.py),
with a database of its own on DATABASE_URL's server named after DATABASE_URL's database (default
renewly_faults): renewly_faults_<fault>_<broker>, made and dropped by the case, private servers
(benchmarks/servers.py: never the machine's shared Redis or PostgreSQL), and its log under
var/faults/<fault>-<broker>/. Up to --jobs cases run at once: most of a case's time is spent
waiting, for the minute after which a stalled reminder is sent again.

RabbitMQ: the worker and Beat faults use a queue of their own on the machine's RabbitMQ
(FAULTS_AMQP_URL, default amqp://guest:guest@127.0.0.1:5672//), deleted afterwards; the
broker-kill case starts a RabbitMQ node of its own (about 5 s here), kills it and starts it
again empty."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.processes import die_with_parent

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var" / "faults"
BOTH = ("redis", "rabbitmq")


@dataclass(frozen=True)
class Fault:
    name: str
    what: str
    brokers: tuple[str, ...] = BOTH
    smoke: bool = False  # in `--smoke` (make test), on Redis


FAULTS = [
    Fault("sigkill-one", "one worker SIGKILLed (its process group) mid-dispatch", smoke=True),
    Fault("sigkill-twice", "a worker SIGKILLed, and again once a batch reaches it after that"),
    Fault("sigkill-both", "both workers SIGKILLed at once"),
    Fault("sigterm", "one worker sent SIGTERM (warm shutdown)"),
    Fault("broker-kill", "the broker SIGKILLed, back empty 2 s later", smoke=True),
    Fault("postgres-restart", "PostgreSQL restarted (fast shutdown)", brokers=("redis",)),
    Fault("two-beats", "two celery beat processes on the same schedule", smoke=True),
    Fault("beat-five-days", "Beat down for five days, then one scan"),
    Fault("provider-5xx", "the provider answers 503 for 20 s", brokers=("redis",)),
    Fault("provider-429", "the provider answers 429 for 20 s", brokers=("redis",)),
    Fault("provider-timeout", "the provider times out for 20 s", brokers=("redis",)),
    Fault("provider-down", "the provider down (refusing connections)", brokers=("redis",)),
]


@dataclass(frozen=True)
class Case:
    fault: Fault
    broker: str

    @property
    def name(self) -> str:
        return f"{self.fault.name}-{self.broker}"


def database_base() -> tuple[str, str]:
    """DATABASE_URL without its database, and its database's name (default renewly_faults)."""
    url = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/"))
    if url.scheme not in ("postgres", "postgresql", "pgsql"):
        sys.exit("the fault suite needs PostgreSQL: set DATABASE_URL (make faults does)")
    name = url.path.strip("/") or "renewly_faults"
    return url._replace(path="/postgres").geturl(), name


RUNNING: set[subprocess.Popen] = set()


def stop_running_cases(signal_number, frame) -> None:
    """On SIGTERM or Ctrl-C: each running case cleans up (servers, workers, database)."""
    for process in list(RUNNING):
        with suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
    sys.exit(128 + signal_number)


def run(case: Case, args, server_url: str, base_name: str) -> dict:
    """Run one case in a process of its own; its row, or a row saying why there is none."""
    var_dir = VAR_DIR / case.name
    shutil.rmtree(var_dir, ignore_errors=True)
    var_dir.mkdir(parents=True)
    result = var_dir / "row.json"
    database = f"{base_name}_{case.fault.name}_{case.broker}".replace("-", "_")
    command = [
        sys.executable,
        str(BASE_DIR / "benchmarks" / "fault_case.py"),
        f"--fault={case.fault.name}",
        f"--broker={case.broker}",
        f"--reminders={args.reminders}",
        f"--outage-seconds={args.outage_seconds}",
        f"--database={database}",
        f"--var-dir={var_dir}",
        f"--result={result}",
    ]
    log = var_dir / "case.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            command,
            cwd=BASE_DIR,
            env={**os.environ, "DATABASE_URL": server_url},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the case's Ctrl-C is ours: it cleans up when told
            preexec_fn=die_with_parent(),
        )
        RUNNING.add(process)
        try:
            process.wait(timeout=args.case_timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGTERM)  # it cleans up: servers, workers, database
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        finally:
            RUNNING.discard(process)
    if result.exists():
        row = json.loads(result.read_text())
    else:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        row = {"fault": case.fault.name, "broker": case.broker, "notes": []}
        row["error"] = f"the case process exited {process.returncode}, no row:\n{tail}"
    row["log"] = str(log.relative_to(BASE_DIR))
    print(f"  {case.name}: {summary(row)}  ({row['log']})", flush=True)
    return row


def failed(row: dict) -> bool:
    return bool(row.get("error") or row.get("duplicates") or row.get("lost"))


def summary(row: dict) -> str:
    if row.get("error"):
        return "BROKE: " + row["error"].splitlines()[0]
    recover = row.get("recover_seconds")
    return (
        f"{row['accepted']:,} accepted of {row['planned']:,}, {row['duplicates']} duplicates, "
        f"{row['lost']} lost, "
        + (f"recovered in {recover} s" if recover is not None else "not recovered")
    )


def table(rows: list[dict]) -> str:
    lines = [
        "| fault | broker | planned | accepted | duplicates | lost | time to recover | notes |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for row in rows:
        if row.get("error"):
            error = row["error"].splitlines()[0].replace("|", "/")
            lines.append(f"| {row['fault']} | {row['broker']} | | | | | | BROKE: {error} |")
            continue
        recover = row.get("recover_seconds")
        notes = "; ".join(row.get("notes", [])).replace("|", "/")
        lines.append(
            f"| {row['fault']} | {row['broker']} | {row['planned']:,} | {row['accepted']:,} | "
            f"{row['duplicates']} | {row['lost']} | "
            f"{f'{recover:.1f} s' if recover is not None else 'not recovered'} | {notes} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="make test's: 1,000 reminders; sigkill-one, broker-kill and two-beats on Redis",
    )
    parser.add_argument(
        "--only", help="comma-separated faults: " + ", ".join(f.name for f in FAULTS)
    )
    parser.add_argument("--broker", choices=["redis", "rabbitmq", "both"], default=None)
    parser.add_argument("--reminders", type=int, help="per case, even (default 6,000)")
    parser.add_argument(
        "--outage-seconds", type=float, default=180, help="provider-down's outage (default 180)"
    )
    parser.add_argument("--jobs", type=int, default=3, help="cases at once (default 3)")
    args = parser.parse_args()

    by_name = {fault.name: fault for fault in FAULTS}
    if args.only:
        unknown = [name for name in args.only.split(",") if name not in by_name]
        if unknown:
            parser.error(f"unknown fault {', '.join(unknown)}; the faults: {', '.join(by_name)}")
        faults = [by_name[name] for name in args.only.split(",")]
    else:
        faults = [fault for fault in FAULTS if fault.smoke or not args.smoke]
    broker = args.broker or ("redis" if args.smoke else "both")
    brokers = BOTH if broker == "both" else (broker,)
    args.reminders = args.reminders or (1_000 if args.smoke else 6_000)
    if args.reminders <= 0 or args.reminders % 2:
        parser.error("--reminders must be a positive even number: one email and one SMS each")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    args.case_timeout = 600 + args.outage_seconds
    cases = [
        Case(fault, broker) for fault in faults for broker in brokers if broker in fault.brokers
    ]
    if not cases:
        parser.error("no fault runs on that broker")
    server_url, base_name = database_base()
    signal.signal(signal.SIGTERM, stop_running_cases)
    signal.signal(signal.SIGINT, stop_running_cases)

    print(
        f"Fault suite: {len(cases)} cases, {args.reminders:,} reminders each (half email, half "
        f"SMS), 2 worker processes of --pool=threads --concurrency=2, the fake provider 50 ms a "
        f"call; up to {args.jobs} cases at once on {os.cpu_count()} CPUs",
        flush=True,
    )
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        rows = list(pool.map(lambda case: run(case, args, server_url, base_name), cases))
    print()
    print(table(rows))
    bad = [row for row in rows if failed(row)]
    if bad:
        print(f"\nFAILED: {len(bad)} of {len(rows)} cases with duplicates, losses or errors")
        sys.exit(1)
    print(f"\nAll {len(rows)} cases: 0 duplicates, 0 lost.")


if __name__ == "__main__":
    main()
