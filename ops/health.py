"""What /readyz checks: the database, the broker, a worker of the reminders' queue answering and
the daily scan keeping to its schedule; and, without failing readiness, whether a provider is
paused or a policy feed keeps failing. Each check says ok or not, how long it took and, in words
that name no host and no secret, why; the full error goes to the log."""

import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from urllib.parse import urlsplit

from celery import Celery
from celery import current_app as celery_app
from django.conf import settings
from django.db import connection
from django.db.models import Max
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from notifications import circuit
from notifications.models import CircuitBreaker, ReminderRun
from notifications.schedule import DAILY_SCAN_NAME
from policies import feeds

logger = logging.getLogger(__name__)

# --- The checks: each returns (ok, detail) -----------------------------------------------------


def database() -> tuple[bool, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return True, "answered"


def broker() -> tuple[bool, str]:
    with broker_connection(celery_app):
        return True, "answered"


class _ReaderFound(Exception):
    """Raised from a reply's callback to stop collecting: one reader of the queue is enough."""


class ReminderWorkers:
    """Whether a worker reading the default queue (where the reminders wait) answered through
    the broker lately. The answer proves what a heartbeat file would not: such a worker is
    connected to this broker and its loop is free; a worker of the long jobs' queue alone does
    not count. It is kept READYZ_WORKER_FRESH_SECONDS, so probes every few seconds cost one
    broadcast."""

    last_answer = float("-inf")  # time.monotonic() of the last answer, in this process
    last_silence = float("-inf")  # ... and of the last broadcast no reader answered

    @classmethod
    def check(cls) -> tuple[bool, str]:
        now = time.monotonic()
        queue = celery_app.conf.task_default_queue
        if now - cls.last_answer < settings.READYZ_WORKER_FRESH_SECONDS:
            ago = now - cls.last_answer
            return True, f"a worker reading {queue!r} answered {ago:.0f} s ago"
        # While no worker answers, each broadcast waits out its whole timeout: a burst of
        # probes must not tie up every web worker doing that.
        if now - cls.last_silence < settings.READYZ_WORKER_RETRY_SECONDS:
            ago = now - cls.last_silence
            return False, f"no worker reading {queue!r} answered {ago:.0f} s ago"
        timeout = settings.READYZ_TIMEOUT_SECONDS
        if not _a_reader_answers(queue, timeout):
            cls.last_silence = time.monotonic()
            return False, f"no worker reading {queue!r} answered within {timeout} s"
        cls.last_answer = time.monotonic()
        return True, f"a worker reading {queue!r} answered"


def _a_reader_answers(queue: str, timeout: float) -> bool:
    """Ask every worker which queues it reads (Celery's `active_queues` control command), and
    stop at the first that reads `queue` rather than wait out the timeout for the others."""

    def on_reply(reply: dict) -> None:
        for queues in reply.values():  # a worker's error comes as {"error": ...}, not a list
            if isinstance(queues, list) and any(
                declared.get("name") == queue for declared in queues
            ):
                raise _ReaderFound

    with broker_connection(celery_app) as connection_:
        try:
            celery_app.control.broadcast(
                "active_queues",
                reply=True,
                timeout=timeout,
                callback=on_reply,
                connection=connection_,
            )
        except _ReaderFound:
            return True
    return False


# --- The providers: a paused one degrades sending, not readiness ------------------------------


class Degraded(str):
    """The detail of a check that passes, but reports something a person should look at."""


def providers() -> tuple[bool, str]:
    """Always ok: a provider paused by its circuit breaker (notifications.circuit) holds its
    channel's reminders safely in the database until a probe finds it back, and taking this
    process out of service would only stop the workspace and the providers' callbacks too.
    The detail names each paused provider, and marks the check degraded."""
    paused = [
        breaker
        for breaker in circuit.breakers().values()
        if breaker.state != CircuitBreaker.State.CLOSED
    ]
    if not paused:
        return True, "every provider is sending"
    return True, Degraded("; ".join(circuit.describe(breaker) for breaker in paused))


def policy_feeds() -> tuple[bool, str]:
    """Always ok, like a paused provider: a policy extract that cannot be fetched leaves the
    policies as they were, and taking this process out of service would only stop the admin
    where the feed is put right. The detail names each active feed whose last
    FEEDS_READYZ_MISSED_RUNS runs failed (not why: the reason may name its host), and marks
    the check degraded."""
    failing = list(feeds.failing_feeds())
    if not failing:
        return True, "no feed is failing"
    return True, Degraded("; ".join(_describe_failing(feed) for feed in failing))


def _describe_failing(feed) -> str:
    last = feed.last_success_at
    since = last.isoformat(timespec="seconds") if last else "never"
    runs = feed.consecutive_failures
    return f"feed {feed.name!r}: {runs} failed runs in a row (last success: {since})"


# --- The daily scan: Beat (or cron mode) finishes one after each time the schedule names -----


def daily_scan_on_time(now: datetime | None = None) -> tuple[bool, str]:
    """(ok, why): the last finished scan is no older than the latest time the schedule fired,
    once the scan has had READYZ_SCAN_GRACE_MINUTES to finish."""
    now = now or timezone.now()
    task = (
        PeriodicTask.objects.select_related("crontab", "interval")
        .filter(name=DAILY_SCAN_NAME)
        .first()
    )
    if task is None or not (task.crontab or task.interval):
        return False, f'no "{DAILY_SCAN_NAME}" schedule'
    grace = timedelta(minutes=settings.READYZ_SCAN_GRACE_MINUTES)
    if task.crontab:
        due = previous_time(task.crontab.schedule, now - grace)
    else:  # an admin made it run every so often
        due = now - grace - task.interval.schedule.run_every
    if due is None:
        return True, "the schedule names no time in the past year"
    last = ReminderRun.objects.aggregate(last=Max("finished_at"))["last"]
    if last is not None and last >= due:
        return True, f"last scan finished {last.isoformat(timespec='seconds')}"
    # A schedule created or changed since (a fresh install, an admin's edit) owes no scan yet;
    # Beat saving the task as it fires changes it too, which last_run_at tells apart.
    fired = task.last_run_at is not None and task.last_run_at >= due
    if task.date_changed >= due and not fired:
        return True, "the schedule is new or changed: no scan due yet"
    since = last.isoformat(timespec="seconds") if last else "never"
    return False, f"no scan finished since {due.isoformat(timespec='minutes')} (last: {since})"


def previous_time(schedule, before: datetime) -> datetime | None:
    """The latest time at or before `before` that a celery crontab names, in its time zone;
    None if there is none within a year."""
    zone = schedule.tz or timezone.get_default_timezone()
    local = before.astimezone(zone)
    times = sorted((hour, minute) for hour in schedule.hour for minute in schedule.minute)
    for days_back in range(367):
        day: date = local.date() - timedelta(days=days_back)
        if not (
            day.month in schedule.month_of_year
            and day.day in schedule.day_of_month
            and day.isoweekday() % 7 in schedule.day_of_week  # cron counts Sunday as 0
        ):
            continue
        for hour, minute in reversed(times):
            fired = datetime.combine(day, time_of_day(hour, minute), tzinfo=zone)
            if fired <= before:
                return fired
    return None


# --- Running them ----------------------------------------------------------------------------

# name: (check, the check it needs to have passed first)
CHECKS: dict[str, tuple[Callable[[], tuple[bool, str]], str | None]] = {
    "database": (database, None),
    "broker": (broker, None),
    "workers": (ReminderWorkers.check, "broker"),
    "daily_scan": (daily_scan_on_time, "database"),
    "providers": (providers, "database"),
    "feeds": (policy_feeds, "database"),
}


def run_checks() -> dict[str, dict]:
    results: dict[str, dict] = {}
    for name, (check, needs) in CHECKS.items():
        if needs and not results[needs]["ok"]:
            results[name] = {
                "ok": False,
                "degraded": False,
                "latency_ms": 0.0,
                "detail": f"{needs} unreachable",
            }
            continue
        started = time.perf_counter()
        try:
            ok, detail = check()
        except Exception as error:  # a probe reports every failure; its text may name a host
            logger.warning("readiness check %s failed", name, exc_info=True)
            ok, detail = False, f"failed: {type(error).__name__}"
        results[name] = {
            "ok": ok,
            "degraded": isinstance(detail, Degraded),
            "latency_ms": round((time.perf_counter() - started) * 1000, 1),
            "detail": detail,
        }
    return results


@contextmanager
def broker_connection(app: Celery):
    """A connection to the broker that fails within READYZ_TIMEOUT_SECONDS instead of
    retrying, as the app's own connections do."""
    timeout = settings.READYZ_TIMEOUT_SECONDS
    options = {}
    if urlsplit(app.conf.broker_url).scheme in {"redis", "rediss"}:
        # redis-py takes its timeouts from the transport options, not from connect_timeout.
        options = {"socket_connect_timeout": timeout, "socket_timeout": timeout}
    with app.connection_for_write(
        connect_timeout=timeout, transport_options=options
    ) as connection_:
        connection_.ensure_connection(max_retries=0, timeout=timeout)
        yield connection_
