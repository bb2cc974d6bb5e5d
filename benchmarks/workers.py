"""Celery workers and Beat for the benchmarks and the fault suite: started as docker-compose.yml
runs them, each process in a group of its own that dies with the benchmark, stopped warm; a
worker can also be killed (its whole group) and started again, as a supervisor would."""

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.processes import die_with_parent, kill_group, stop_warm

BASE_DIR = Path(__file__).resolve().parent.parent
# Batched sending (send_batch over REMINDER_SEND_THREADS send threads per process): on 2 cores
# two threads-pool workers running two batches each (one process per core, a batch's database
# work overlapping the other's sends) were among the fastest; 2x1 and 1x4 left the CPU idle
# between batches, 2x3, 3x2 and prefork 1x4 sent no more for more memory.
DOCUMENTED_CONFIG = "threads:2x2"
RESTART_MARK = "--- restarted by the benchmark ---"  # in a worker's log, at each restart


@dataclass(frozen=True)
class WorkerConfig:
    pool: str  # threads, prefork, solo
    processes: int  # `celery worker` processes
    concurrency: int  # per process

    @classmethod
    def parse(cls, text: str) -> "WorkerConfig":
        pool, _, sizes = text.strip().partition(":")
        processes, _, concurrency = sizes.partition("x")
        config = cls(pool, int(processes), int(concurrency))
        if pool not in ("threads", "prefork", "solo"):
            raise ValueError(f"unknown pool {pool!r} in {text!r}")
        # Each thread or child process holds a PostgreSQL connection (max_connections is 100).
        if config.processes * config.concurrency > 90:
            raise ValueError(f"{text}: more than 90 database connections")
        return config

    def __str__(self) -> str:
        return (
            f"--pool={self.pool}, {self.processes} worker process"
            f"{'es' if self.processes > 1 else ''} x --concurrency={self.concurrency}"
        )


def start_celery(arguments: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """`celery -A config <arguments>` logging to `log`, in a process group of its own (prefork
    children too) that gets SIGTERM if this process dies."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *arguments],
            cwd=BASE_DIR,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(),
        )


@dataclass
class Workers:
    """`celery worker` processes for a benchmark, each in its own process group, logging to
    var_dir/worker-<n>.log, stopped warm and then with whatever is left of their group."""

    config: WorkerConfig
    env: dict[str, str]
    queue: str
    var_dir: Path
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        for n in range(self.config.processes):
            self.logs.append(self.var_dir / f"worker-{n}.log")
            self.logs[n].unlink(missing_ok=True)
            self.processes.append(self._spawn(n))

    def _spawn(self, n: int) -> subprocess.Popen:
        return start_celery(
            [
                "worker",
                f"--pool={self.config.pool}",
                f"--concurrency={self.config.concurrency}",
                f"--queues={self.queue}",  # one queue, or several: "a,b"
                f"--hostname={self.queue.partition(',')[0]}-{n}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel=INFO",  # as docker-compose.yml runs it
            ],
            self.env,
            self.logs[n],
        )

    def wait_ready(self, timeout: float = 60, only: list[int] | None = None) -> None:
        """Wait until each worker (or those in `only`) logged that it is ready, since it last
        (re)started."""
        deadline = time.monotonic() + timeout
        pending = set(range(len(self.processes)) if only is None else only)
        while pending and time.monotonic() < deadline:
            for n in list(pending):
                if self.processes[n].poll() is not None:
                    raise RuntimeError(f"worker {n} exited:\n{self.tail(n)}")
                if " ready." in self.since_start(n):
                    pending.discard(n)
            time.sleep(0.1)
        if pending:
            raise RuntimeError(f"workers {sorted(pending)} not ready in {timeout}s")

    def since_start(self, n: int) -> str:
        """Worker n's log since its last (re)start."""
        text = self.logs[n].read_text(errors="replace") if self.logs[n].exists() else ""
        return text.rpartition(RESTART_MARK)[2]

    def tail(self, n: int, lines: int = 30) -> str:
        text = self.logs[n].read_text(errors="replace") if self.logs[n].exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def kill(self, n: int) -> None:
        """SIGKILL worker n's whole process group, as the kernel's OOM killer or a lost
        machine would end it."""
        kill_group(self.processes[n])

    def restart(self, n: int) -> None:
        """Start worker n again (it must have exited), logging on in the same file."""
        if self.processes[n].poll() is None:
            raise RuntimeError(f"worker {n} is still running")
        with open(self.logs[n], "a") as log:
            log.write(f"\n{RESTART_MARK}\n")
        self.processes[n] = self._spawn(n)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # warm shutdown, all at once
        for process in self.processes:
            stop_warm(process)

    def log_counts(self, needle: str) -> int:
        return sum(log.read_text(errors="replace").count(needle) for log in self.logs)


def start_beat(env: dict[str, str], var_dir: Path, name: str = "beat") -> subprocess.Popen:
    """`celery beat` with the configured scheduler (django-celery-beat's DatabaseScheduler),
    logging to var_dir/<name>.log; stop it with stop_warm()."""
    return start_celery(
        ["beat", "--loglevel=INFO", f"--pidfile={var_dir / f'{name}.pid'}"],
        env,
        var_dir / f"{name}.log",
    )


def clean_redis(broker_url: str, queue_prefix: str) -> None:
    """Remove this run's queue and its messages still unacknowledged (after a failure) from the
    bench's Redis database, and those of earlier runs whose process is gone (killed). Queues are
    named `queue_prefix` + the benchmark's process id."""
    import redis

    def ours(name: str) -> bool:
        pid = re.match(r"\d*", name.partition(queue_prefix)[2]).group()
        return pid == str(os.getpid()) or (pid != "" and not Path(f"/proc/{pid}").exists())

    client = redis.Redis.from_url(broker_url, decode_responses=True)
    try:
        keys = [key for key in client.scan_iter(f"*{queue_prefix}*") if ours(key)]
        if keys:
            client.delete(*keys)
        for tag, payload in client.hscan_iter("unacked"):
            queue = next((word for word in payload.split('"') if queue_prefix in word), "")
            if queue and ours(queue):
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    finally:
        client.close()
