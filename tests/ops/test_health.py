"""/healthz and /readyz: liveness of the web process, readiness of what it needs (database,
broker, a worker answering, the daily scan on schedule), through real workers and a real broker."""

import json
import os
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from celery import Celery
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule

from config.queues import bulk_queue_for
from notifications.models import CircuitBreaker, ReminderRun
from notifications.schedule import daily_scan_task
from ops import health
from ops import urls as probe_urls
from ops.health import daily_scan_on_time, previous_time
from tests.workers import celery_worker, wait_for, worker_log

REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
CLOSED_PORT_URL = "redis://:broker-secret-password@127.0.0.1:1/0"  # nothing listens on port 1
METRICS_TOKEN = "probe-test-token"
PROBE_PATHS = [f"/{pattern.pattern}" for pattern in probe_urls.urlpatterns]

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("seeded_defaults")]


@pytest.fixture(autouse=True)
def fresh_answers(settings):
    """Every /readyz pings the workers afresh: no earlier answer counts."""
    settings.READYZ_WORKER_FRESH_SECONDS = 0
    settings.READYZ_WORKER_RETRY_SECONDS = 0
    settings.READYZ_TIMEOUT_SECONDS = 1
    settings.METRICS_TOKEN = METRICS_TOKEN


@pytest.fixture
def broker_at(monkeypatch):
    """Point the web side's Celery app at a broker and a queue (its own control channel too,
    as settings do), as a site configured so would."""

    def point(broker_url: str, queue: str) -> None:
        app = Celery("renewly", set_as_current=False)  # /metrics and the tasks keep theirs
        app.config_from_object("django.conf:settings", namespace="CELERY")
        app.conf.update(
            broker_url=broker_url,
            broker_transport_options={},
            task_default_queue=queue,
            control_exchange=queue,
        )
        monkeypatch.setattr(health, "celery_app", app)

    return point


@pytest.fixture
def redis_url(require_service):
    return require_service("Redis", REDIS_TEST_URL)


@pytest.fixture
def scanned_today(db):
    ReminderRun.objects.create(run_date=timezone.localdate(), finished_at=timezone.now())


def readyz(client, token: str | None = METRICS_TOKEN) -> tuple[int, dict]:
    """/readyz as the monitoring that bears METRICS_TOKEN reads it, or as anyone (token=None)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    response = client.get("/readyz", headers=headers)
    assert response["Content-Type"] == "application/json"
    return response.status_code, json.loads(response.content)


def test_healthz_answers_while_the_process_runs(client):
    response = client.get("/healthz")

    assert response.status_code == 200
    assert json.loads(response.content) == {"status": "alive"}


def test_probes_answer_by_address_whatever_allowed_hosts_says(client, settings):
    settings.ALLOWED_HOSTS = ["renewly.example"]

    assert client.get("/healthz", headers={"host": "10.0.0.7:8000"}).status_code == 200
    assert client.get("/admin/login/", headers={"host": "10.0.0.7:8000"}).status_code == 400


def test_probes_answer_with_or_without_a_trailing_slash(client, settings):
    settings.ALLOWED_HOSTS = ["renewly.example"]

    assert PROBE_PATHS == ["/healthz", "/readyz", "/metrics"]
    for path in ("/healthz", "/healthz/"):
        assert client.get(path, headers={"host": "10.0.0.7:8000"}).status_code == 200
    assert client.get("/healthz/more", headers={"host": "10.0.0.7:8000"}).status_code == 400


@pytest.mark.services
def test_readyz_follows_the_worker_stopping_and_coming_back(
    client, redis_url, broker_at, scanned_today, tmp_path
):
    queue = f"renewly-ready-{uuid.uuid4().hex[:8]}"
    broker_at(redis_url, queue)
    worker = {"broker_url": redis_url, "queue": queue, "var_dir": tmp_path}

    def ready():
        return readyz(client)[0] == 200

    with celery_worker(**worker, CELERY_TASK_DEFAULT_QUEUE=queue):
        wait_for(
            ready, timeout=60, explain=lambda: str(readyz(client)) + worker_log(tmp_path, queue)
        )
        status, body = readyz(client)
        assert body["status"] == "ready"
        assert body["failing"] == []
        assert set(body["checks"]) == {
            "database",
            "broker",
            "workers",
            "daily_scan",
            "providers",
            "feeds",
        }
        assert all(check["latency_ms"] >= 0 for check in body["checks"].values())

    status, body = readyz(client)
    assert status == 503
    assert body["failing"] == ["workers"]
    assert body["checks"]["workers"]["detail"] == f"no worker reading {queue!r} answered within 1 s"

    with celery_worker(**worker, CELERY_TASK_DEFAULT_QUEUE=queue):
        wait_for(ready, timeout=60, explain=lambda: worker_log(tmp_path, queue))


@pytest.mark.services
def test_readyz_wants_a_worker_of_the_reminders_queue_not_only_of_the_long_jobs(
    client, redis_url, broker_at, scanned_today, tmp_path
):
    queue = f"renewly-ready-{uuid.uuid4().hex[:8]}"
    broker_at(redis_url, queue)
    worker = {"broker_url": redis_url, "var_dir": tmp_path, "CELERY_TASK_DEFAULT_QUEUE": queue}

    with celery_worker(**worker, queue=bulk_queue_for(queue)):
        # The long jobs' worker is up and answering: the reminders would still wait.
        wait_for(
            lambda: health.celery_app.control.ping(timeout=1),
            timeout=60,
            explain=lambda: worker_log(tmp_path, bulk_queue_for(queue)),
        )
        status, body = readyz(client)
        assert status == 503
        assert body["failing"] == ["workers"]
        assert body["checks"]["workers"]["detail"] == (
            f"no worker reading {queue!r} answered within 1 s"
        )

        with celery_worker(**worker, queue=queue):
            wait_for(
                lambda: readyz(client)[0] == 200,
                timeout=60,
                explain=lambda: str(readyz(client)) + worker_log(tmp_path, queue),
            )
            assert readyz(client)[1]["checks"]["workers"]["detail"] == (
                f"a worker reading {queue!r} answered"
            )


@pytest.mark.services
def test_readyz_names_an_unreachable_broker_and_recovers_when_it_is_back(
    client, redis_url, broker_at, scanned_today, tmp_path
):
    queue = f"renewly-ready-{uuid.uuid4().hex[:8]}"
    with celery_worker(
        broker_url=redis_url, queue=queue, var_dir=tmp_path, CELERY_TASK_DEFAULT_QUEUE=queue
    ):
        broker_at(CLOSED_PORT_URL, queue)
        status, body = readyz(client)

        assert status == 503
        assert body["failing"] == ["broker", "workers"]
        assert body["checks"]["database"]["ok"] is True
        assert body["checks"]["workers"]["detail"] == "broker unreachable"
        text = json.dumps(body)
        for secret in ("broker-secret-password", "127.0.0.1", "redis://", ":1/"):
            assert secret not in text

        broker_at(redis_url, queue)
        wait_for(
            lambda: readyz(client)[0] == 200,
            timeout=60,
            explain=lambda: str(readyz(client)) + worker_log(tmp_path, queue),
        )


def test_a_worker_answer_counts_for_a_while(monkeypatch, settings):
    settings.READYZ_WORKER_FRESH_SECONDS = 30
    monkeypatch.setattr(health.ReminderWorkers, "last_answer", health.time.monotonic() - 5)

    ok, detail = health.ReminderWorkers.check()  # no broker is asked

    assert ok is True
    assert (
        detail == f"a worker reading {health.celery_app.conf.task_default_queue!r} answered 5 s ago"
    )


def test_an_unanswered_ping_is_not_repeated_for_a_few_seconds(monkeypatch, settings):
    settings.READYZ_WORKER_RETRY_SECONDS = 5
    monkeypatch.setattr(health.ReminderWorkers, "last_silence", health.time.monotonic() - 2)

    ok, detail = health.ReminderWorkers.check()  # no broker is asked, no timeout waited out

    assert ok is False
    queue = health.celery_app.conf.task_default_queue
    assert detail == f"no worker reading {queue!r} answered 2 s ago"


# --- The daily scan's schedule -----------------------------------------------------------------

MADRID_8AM = {"minute": "0", "hour": "8", "timezone": "Europe/Madrid"}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).astimezone(UTC)


def test_previous_time_is_the_last_time_the_crontab_named():
    schedule = CrontabSchedule(**MADRID_8AM).schedule

    assert previous_time(schedule, at("2026-03-10T09:00+01:00")) == at("2026-03-10T08:00+01:00")
    assert previous_time(schedule, at("2026-03-10T07:59+01:00")) == at("2026-03-09T08:00+01:00")
    # Summer time in Madrid: 08:00 is 06:00 UTC.
    assert previous_time(schedule, at("2026-07-01T06:30+00:00")) == at("2026-07-01T06:00+00:00")


def test_previous_time_keeps_to_the_days_of_the_week():
    weekdays = CrontabSchedule(**MADRID_8AM, day_of_week="1-5").schedule  # Monday to Friday

    sunday_noon = at("2026-03-15T12:00+01:00")
    assert previous_time(weekdays, sunday_noon) == at("2026-03-13T08:00+01:00")  # Friday


@pytest.fixture
def daily_at_8_madrid():
    task = daily_scan_task()
    task.crontab = CrontabSchedule.objects.create(**MADRID_8AM)
    task.save()
    # As if set up long ago and fired by Beat yesterday.
    type(task).objects.filter(pk=task.pk).update(
        date_changed=at("2026-01-01T00:00+00:00"), last_run_at=at("2026-03-09T08:00+01:00")
    )
    return task


def scan_finished(when: str) -> None:
    ReminderRun.objects.create(run_date=at(when).date(), finished_at=at(when))


def test_a_scan_finished_after_its_time_is_on_time(daily_at_8_madrid):
    scan_finished("2026-03-10T08:00:05+01:00")

    assert daily_scan_on_time(at("2026-03-10T12:00+01:00"))[0] is True


def test_the_scan_has_its_grace_period_to_finish(daily_at_8_madrid, settings):
    settings.READYZ_SCAN_GRACE_MINUTES = 60
    scan_finished("2026-03-09T08:00:05+01:00")

    assert daily_scan_on_time(at("2026-03-10T08:30+01:00"))[0] is True
    ok, detail = daily_scan_on_time(at("2026-03-10T09:30+01:00"))
    assert ok is False
    assert detail == (
        "no scan finished since 2026-03-10T08:00+01:00 (last: 2026-03-09T07:00:05+00:00)"
    )


def test_a_missed_scan_makes_readyz_name_it(client, daily_at_8_madrid, monkeypatch):
    database_and_scan = {name: health.CHECKS[name] for name in ("database", "daily_scan")}
    monkeypatch.setattr(health, "CHECKS", database_and_scan)  # no broker asked
    three_days_ago = timezone.now() - timedelta(days=3)
    ReminderRun.objects.create(run_date=three_days_ago.date(), finished_at=three_days_ago)

    status, body = readyz(client)

    assert status == 503
    assert body["failing"] == ["daily_scan"]
    assert body["checks"]["daily_scan"]["detail"].startswith("no scan finished since")


@pytest.fixture
def database_and_providers_only(monkeypatch):
    checks = {name: health.CHECKS[name] for name in ("database", "providers")}
    monkeypatch.setattr(health, "CHECKS", checks)  # no broker asked


def test_readyz_says_every_provider_is_sending(client, database_and_providers_only):
    status, body = readyz(client)

    assert (status, body["status"], body["degraded"]) == (200, "ready", [])
    assert body["checks"]["providers"]["detail"] == "every provider is sending"


@pytest.mark.parametrize("token", [METRICS_TOKEN, None])
def test_a_paused_provider_leaves_the_site_ready_and_is_reported_degraded(
    client, settings, database_and_providers_only, token
):
    settings.SMS_BACKEND = "twilio"
    opened = datetime(2026, 3, 10, 9, 15, tzinfo=UTC)
    CircuitBreaker.objects.create(
        channel="sms",
        provider="twilio",
        state=CircuitBreaker.State.OPEN,
        consecutive_failures=20,
        opened_at=opened,
        next_probe_at=opened + timedelta(minutes=10),
    )

    status, body = readyz(client, token=token)

    # Its reminders wait in the database: nothing a restart or a load balancer would fix.
    assert (status, body["status"], body["failing"]) == (200, "ready", [])
    assert body["degraded"] == ["providers"]
    if token:
        assert body["checks"]["providers"]["detail"] == (
            "sms (twilio) paused since 2026-03-10T09:15:00+00:00 after provider errors; "
            "next probe at 2026-03-10T09:25:00+00:00"
        )
    else:
        assert body["checks"]["providers"] == {"ok": True}


@pytest.fixture
def database_and_scan_only(monkeypatch):
    checks = {name: health.CHECKS[name] for name in ("database", "daily_scan")}
    monkeypatch.setattr(health, "CHECKS", checks)  # no broker asked


@pytest.mark.parametrize("token", [None, "a-wrong-token"])
def test_readyz_tells_an_unauthorized_caller_only_which_checks_pass(
    client, daily_at_8_madrid, database_and_scan_only, token
):
    scan_finished("2026-03-09T08:00:05+01:00")  # long ago: the scan is late

    status, body = readyz(client, token=token)

    assert status == 503
    assert body == {
        "status": "not ready",
        "failing": ["daily_scan"],
        "degraded": [],
        "checks": {"database": {"ok": True}, "daily_scan": {"ok": False}},
    }


def test_readyz_tells_the_metrics_token_bearer_why_and_when(
    client, daily_at_8_madrid, database_and_scan_only
):
    scan_finished("2026-03-09T08:00:05+01:00")

    status, body = readyz(client)

    assert status == 503
    assert body["checks"]["daily_scan"]["detail"].endswith("(last: 2026-03-09T07:00:05+00:00)")
    assert body["checks"]["database"]["latency_ms"] >= 0


def test_readyz_shows_no_detail_to_anyone_without_a_metrics_token(
    client, settings, daily_at_8_madrid, database_and_scan_only
):
    settings.METRICS_TOKEN = ""

    _, body = readyz(client, token="anything")

    assert body["checks"] == {"database": {"ok": True}, "daily_scan": {"ok": False}}


@pytest.mark.parametrize("path", PROBE_PATHS)
def test_probes_answer_any_host_over_plain_http_with_the_security_headers(
    client, settings, database_and_scan_only, path
):
    settings.ALLOWED_HOSTS = ["renewly.example"]
    settings.SECURE_SSL_REDIRECT = True  # a load balancer probes over plain HTTP all the same
    headers = {"host": "10.0.0.7:8000", "authorization": f"Bearer {METRICS_TOKEN}"}

    response = client.get(path, headers=headers)

    assert response.status_code in (200, 503)
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    policy = response["Content-Security-Policy"]
    assert "default-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert "Strict-Transport-Security" not in response  # not over plain HTTP


def test_probes_carry_hsts_when_it_is_configured_and_they_come_over_https(client, settings):
    settings.ALLOWED_HOSTS = ["renewly.example"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.SECURE_HSTS_INCLUDE_SUBDOMAINS = True

    response = client.get(
        "/healthz", headers={"host": "10.0.0.7:8000", "x-forwarded-proto": "https"}
    )

    assert response.status_code == 200
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_a_new_schedule_owes_no_scan_yet(daily_at_8_madrid):
    type(daily_at_8_madrid).objects.filter(pk=daily_at_8_madrid.pk).update(
        date_changed=at("2026-03-10T10:00+01:00"), last_run_at=None
    )

    ok, detail = daily_scan_on_time(at("2026-03-10T12:00+01:00"))

    assert ok is True
    assert detail == "the schedule is new or changed: no scan due yet"


def test_without_the_schedule_the_scan_is_not_ready(daily_at_8_madrid):
    daily_at_8_madrid.delete()

    assert daily_scan_on_time(at("2026-03-10T12:00+01:00")) == (
        False,
        'no "Daily reminder scan" schedule',
    )
