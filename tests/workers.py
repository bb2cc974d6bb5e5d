"""Real Celery worker processes for tests: started with the project's own Celery app, on the
broker a test names, against the test database the test process is using."""

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)


def test_database_url() -> str:
    """The URL of the database this test session created, for processes the test starts."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    user = db["USER"] or "postgres"
    password = f":{db['PASSWORD']}" if db["PASSWORD"] else ""
    return (
        f"postgres://{user}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    )


def worker_environment(*, broker_url: str, var_dir: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "DEBUG": "1",
        "DATABASE_URL": test_database_url(),
        "CELERY_BROKER_URL": broker_url,
        "RENEWLY_VAR_DIR": str(var_dir),
        **extra,
    }


@contextmanager
def celery_worker(
    *,
    broker_url: str,
    queue: str,
    var_dir: Path,
    concurrency: int = 1,
    also: tuple[str, ...] = (),
    name: str = "",
    **env,
):
    """Run `celery worker` in a child process for the duration of the block, reading `queue`
    and the queues in `also` (`also=(bulk_queue_for(queue),)`: the long jobs too). Its log is
    worker-<name or queue>.log."""
    name = name or queue
    arguments = [
        "worker",
        "--pool=threads" if concurrency > 1 else "--pool=solo",
        f"--concurrency={concurrency}",
        f"--queues={','.join([queue, *also])}",
        f"--hostname=test-{name}@%h",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=INFO",
    ]
    with _celery(
        arguments, log_name=f"worker-{name}", broker_url=broker_url, var_dir=var_dir, **env
    ) as process:
        yield process


@contextmanager
def celery_beat(*, broker_url: str, var_dir: Path, **env):
    """Run `celery beat` (the DatabaseScheduler, as configured) in a child process."""
    arguments = ["beat", "--loglevel=INFO", f"--pidfile={var_dir / 'beat.pid'}"]
    with _celery(
        arguments, log_name="beat", broker_url=broker_url, var_dir=var_dir, **env
    ) as process:
        yield process


@contextmanager
def _celery(arguments: list[str], *, log_name: str, broker_url: str, var_dir: Path, **env):
    var_dir.mkdir(parents=True, exist_ok=True)
    with open(var_dir / f"{log_name}.log", "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", *arguments],
            cwd=BASE_DIR,
            env=worker_environment(broker_url=broker_url, var_dir=var_dir, **env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def worker_log(var_dir: Path, queue: str) -> str:
    return process_log(var_dir, f"worker-{queue}")


def process_log(var_dir: Path, log_name: str) -> str:
    path = var_dir / f"{log_name}.log"
    return path.read_text(errors="replace") if path.exists() else "(no log)"


def wait_for(predicate, *, timeout: float = 60, interval: float = 0.2, explain=None):
    """Poll until predicate() returns something truthy; return it, or fail with what explain()
    says (called only then, so it can read a log written meanwhile)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(interval)
    detail = explain() if explain else ""
    raise AssertionError(f"gave up after {timeout}s waiting for {predicate.__name__}\n{detail}")
