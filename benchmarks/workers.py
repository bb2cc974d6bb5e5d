"""Celery workers for the benchmarks: started as docker-compose.yml runs them, each process in
a group of its own that dies with the benchmark, and stopped warm."""

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent


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


def _die_with_parent() -> None:
    """In a worker, before exec: get SIGTERM if the benchmark dies, even by SIGKILL."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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
        self.var_dir.mkdir(parents=True, exist_ok=True)
        for n in range(self.config.processes):
            log = self.var_dir / f"worker-{n}.log"
            with open(log, "wb") as out:
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "config",
                        "worker",
                        f"--pool={self.config.pool}",
                        f"--concurrency={self.config.concurrency}",
                        f"--queues={self.queue}",
                        f"--hostname={self.queue}-{n}@%h",
                        "--without-gossip",
                        "--without-mingle",
                        "--loglevel=INFO",  # as docker-compose.yml runs it
                    ],
                    cwd=BASE_DIR,
                    env=self.env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, prefork children too
                    preexec_fn=_die_with_parent,
                )
            self.processes.append(process)
            self.logs.append(log)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = set(range(len(self.processes)))
        while pending and time.monotonic() < deadline:
            for n in list(pending):
                if self.processes[n].poll() is not None:
                    raise RuntimeError(f"worker {n} exited:\n{self.tail(n)}")
                if " ready." in self.logs[n].read_text(errors="replace"):
                    pending.discard(n)
            time.sleep(0.1)
        if pending:
            raise RuntimeError(f"workers {sorted(pending)} not ready in {timeout}s")

    def tail(self, n: int, lines: int = 30) -> str:
        text = self.logs[n].read_text(errors="replace") if self.logs[n].exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)  # warm shutdown
        for process in self.processes:
            with suppress(subprocess.TimeoutExpired):
                process.wait(timeout=30)
            with suppress(ProcessLookupError):  # whatever is left of its group (prefork children)
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def log_counts(self, needle: str) -> int:
        return sum(log.read_text(errors="replace").count(needle) for log in self.logs)
