"""Probes for machines: /healthz (the process answers), /readyz (it can do its work) and
/metrics. Each /readyz check says ok or not, how long it took and, in words that name no host
and no secret, why; the full error goes to the log."""

import hmac
import logging
import time
from collections.abc import Callable
from contextlib import contextmanager
from urllib.parse import urlsplit

from celery import Celery
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from config.celery import app as celery_app

logger = logging.getLogger(__name__)

PROBES = {
    "/healthz": "config.health.healthz",
    "/readyz": "config.health.readyz",
    "/metrics": "notifications.metrics.metrics_view",
}


class ProbeMiddleware:
    """Answers the probes ahead of the middleware that checks the Host header: Docker and load
    balancers call them by address, where ALLOWED_HOSTS rightly refuses the site's own pages.
    The middleware above it in settings adds the site's security headers to their answers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        view = PROBES.get(request.path_info.rstrip("/"))
        if view is None:
            return self.get_response(request)
        return import_string(view)(request)


@never_cache
@require_safe
def healthz(request):
    return JsonResponse({"status": "alive"})


@never_cache
@require_safe
def readyz(request):
    """Anyone may ask whether each check passes; only a caller bearing METRICS_TOKEN reads how
    long each took and why (the last scan's time, say)."""
    checks = run_checks()
    failing = [name for name, result in checks.items() if not result["ok"]]
    if not bears_metrics_token(request):
        checks = {name: {"ok": result["ok"]} for name, result in checks.items()}
    return JsonResponse(
        {"status": "not ready" if failing else "ready", "failing": failing, "checks": checks},
        status=503 if failing else 200,
    )


def bearer_token(request) -> str:
    """The token of an `Authorization: Bearer <token>` header; "" without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def bears_metrics_token(request) -> bool:
    token = bearer_token(request)
    expected = settings.METRICS_TOKEN
    return bool(expected and token) and hmac.compare_digest(token.encode(), expected.encode())


# --- The checks: each returns (ok, detail) -----------------------------------------------------


def database() -> tuple[bool, str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return True, "answered"


def broker() -> tuple[bool, str]:
    with broker_connection(celery_app):
        return True, "answered"


class WorkerPing:
    """Whether a worker answered a ping through the broker lately. The answer proves what a
    heartbeat file would not: a worker is connected to this broker and its loop is free. It
    is kept READYZ_WORKER_FRESH_SECONDS, so probes every few seconds cost one broadcast."""

    last_answer = float("-inf")  # time.monotonic() of the last answer, in this process
    last_silence = float("-inf")  # ... and of the last ping nobody answered

    @classmethod
    def check(cls) -> tuple[bool, str]:
        now = time.monotonic()
        if now - cls.last_answer < settings.READYZ_WORKER_FRESH_SECONDS:
            return True, f"a worker answered a ping {now - cls.last_answer:.0f} s ago"
        # While no worker answers, each ping waits out its whole timeout: a burst of probes
        # must not tie up every web worker doing that.
        if now - cls.last_silence < settings.READYZ_WORKER_RETRY_SECONDS:
            return False, f"no worker answered a ping {now - cls.last_silence:.0f} s ago"
        timeout = settings.READYZ_TIMEOUT_SECONDS
        with broker_connection(celery_app) as connection_:
            answers = celery_app.control.ping(timeout=timeout, limit=1, connection=connection_)
        if not answers:
            cls.last_silence = time.monotonic()
            return False, f"no worker answered a ping within {timeout} s"
        cls.last_answer = time.monotonic()
        return True, "a worker answered a ping"


def daily_scan() -> tuple[bool, str]:
    from notifications.health import daily_scan_on_time

    return daily_scan_on_time()


# name: (check, the check it needs to have passed first)
CHECKS: dict[str, tuple[Callable[[], tuple[bool, str]], str | None]] = {
    "database": (database, None),
    "broker": (broker, None),
    "workers": (WorkerPing.check, "broker"),
    "daily_scan": (daily_scan, "database"),
}


def run_checks() -> dict[str, dict]:
    results: dict[str, dict] = {}
    for name, (check, needs) in CHECKS.items():
        if needs and not results[needs]["ok"]:
            results[name] = {"ok": False, "latency_ms": 0.0, "detail": f"{needs} unreachable"}
            continue
        started = time.perf_counter()
        try:
            ok, detail = check()
        except Exception as error:  # a probe reports every failure; its text may name a host
            logger.warning("readiness check %s failed", name, exc_info=True)
            ok, detail = False, f"failed: {type(error).__name__}"
        results[name] = {
            "ok": ok,
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
