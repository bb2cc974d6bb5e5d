"""/metrics: Prometheus' text format, read back with prometheus_client's own parser. Counters
move when a reminder goes out (through the real SDKs to the fake provider, and through a real
worker process) and when a forged webhook is refused."""

import os
import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from celery import Celery
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from twilio.request_validator import RequestValidator

from notifications import dispatch, planning
from notifications.models import Notification, ReminderRule, ReminderRun
from tests.factories import (
    make_agent,
    make_customer,
    make_policy,
    make_rule,
    queue_an_email_and_an_sms,
)
from tests.workers import BASE_DIR, celery_worker, wait_for, worker_log

TOKEN = "metrics-test-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
PHONE = "+14155550100"
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
TWILIO = {"channel": "sms", "provider": "twilio"}


@pytest.fixture(autouse=True)
def metrics_token(settings):
    settings.METRICS_TOKEN = TOKEN


def scrape(client) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted labels): value} of every sample /metrics shows."""
    response = client.get("/metrics", headers=AUTH)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples, name: str, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.mark.django_db
def test_metrics_need_the_token(client, settings):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics").headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/metrics", headers={"authorization": "Bearer wrong"}).status_code == 403
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics", headers=AUTH).status_code == 404


@pytest.mark.django_db
def test_metrics_show_notifications_by_status_and_channel_and_the_last_scan(client, rules):
    rules(7, "email")
    rules(7, "sms")
    today = timezone.localdate()
    customer = make_customer("pat@mail.example", phone=PHONE)
    make_policy("P-1", customer=customer, agent=make_agent(), expiry_date=today + timedelta(7))
    run = planning.plan_due(run_date=today)

    samples = scrape(client)

    assert value(samples, "renewly_notifications", status="planned", channel="email") == 1
    assert value(samples, "renewly_notifications", status="planned", channel="sms") == 1
    assert value(samples, "renewly_last_successful_scan_timestamp_seconds") == pytest.approx(
        run.finished_at.timestamp()
    )
    queue = ("renewly_queue_depth", (("queue", "celery"),))
    assert queue in samples  # the embedded broker's queue, empty or not


# --- Sends through the real SDKs to the fake provider ------------------------------------------


@pytest.fixture
def queued(db):
    """An email and an SMS reminder, planned and queued: {channel: Notification}."""
    return queue_an_email_and_an_sms("pat@mail.example", PHONE)


def test_a_reminder_sent_moves_the_sends_counter_and_latency(client, providers, queued):
    sms = {"channel": "sms", "provider": "twilio"}
    before = scrape(client)

    dispatch.send(queued["sms"].pk)
    dispatch.send(queued["email"].pk)

    after = scrape(client)
    sent = "renewly_provider_sends_total"
    assert (
        value(after, sent, **sms, outcome="accepted")
        == value(before, sent, **sms, outcome="accepted") + 1
    )
    email = {"channel": "email", "provider": "postmark", "outcome": "accepted"}
    assert value(after, sent, **email) == value(before, sent, **email) + 1
    latency = "renewly_provider_send_seconds_count"
    assert value(after, latency, **sms) == value(before, latency, **sms) + 1
    assert value(after, "renewly_provider_send_seconds_sum", **sms) > value(
        before, "renewly_provider_send_seconds_sum", **sms
    )


def test_a_provider_error_is_counted_by_its_kind(client, providers, queued):
    providers.script(PHONE, ["503"])
    transient = {"channel": "sms", "provider": "twilio", "outcome": "transient_error"}
    before = value(scrape(client), "renewly_provider_sends_total", **transient)

    assert dispatch.send(queued["sms"].pk).status == "deferred"  # to be retried

    assert value(scrape(client), "renewly_provider_sends_total", **transient) == before + 1


def test_a_provider_paused_after_its_errors_shows_as_an_open_breaker(
    client, providers, queued, settings
):
    settings.PROVIDER_BREAKER_FAILURES = 1
    providers.script(PHONE, ["503"])
    assert value(scrape(client), "renewly_provider_circuit_state", **TWILIO, state="closed") == 1

    dispatch.send(queued["sms"].pk)

    samples = scrape(client)
    assert value(samples, "renewly_provider_circuit_state", **TWILIO, state="open") == 1
    assert value(samples, "renewly_provider_circuit_state", **TWILIO, state="closed") == 0
    postmark = {"channel": "email", "provider": "postmark"}
    assert value(samples, "renewly_provider_circuit_state", **postmark, state="closed") == 1


# --- Webhooks ----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_forged_twilio_callback_moves_the_refused_counter(client, settings):
    settings.TWILIO_AUTH_TOKEN = "twilio-test-auth-token"
    settings.PUBLIC_BASE_URL = "https://renewly.example"
    path, params = "/webhooks/twilio/status/", {"MessageSid": "SM1", "MessageStatus": "sent"}
    refused = {"webhook": "twilio-status", "outcome": "refused"}
    accepted = {"webhook": "twilio-status", "outcome": "accepted"}
    before = scrape(client)

    forged = RequestValidator("not-the-token").compute_signature(
        f"https://renewly.example{path}", params
    )
    assert client.post(path, params, headers={"X-Twilio-Signature": forged}).status_code == 403
    signed = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(
        f"https://renewly.example{path}", params
    )
    assert client.post(path, params, headers={"X-Twilio-Signature": signed}).status_code == 204

    after = scrape(client)
    name = "renewly_webhook_requests_total"
    assert value(after, name, **refused) == value(before, name, **refused) + 1
    assert value(after, name, **accepted) == value(before, name, **accepted) + 1


@pytest.mark.django_db
def test_anymail_tracking_without_its_basic_auth_is_counted_refused(client):
    refused = {"webhook": "postmark_tracking_webhook", "outcome": "refused"}
    before = value(scrape(client), "renewly_webhook_requests_total", **refused)

    response = client.post("/anymail/postmark/tracking/", "{}", content_type="application/json")

    assert response.status_code == 400
    assert value(scrape(client), "renewly_webhook_requests_total", **refused) == before + 1


# --- Counted in a worker, shown by the web process ---------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_sends_in_a_worker_process_show_in_the_web_process_metrics(
    client, require_service, settings, tmp_path
):
    redis_url = require_service("Redis", REDIS_TEST_URL)
    ReminderRule.objects.all().delete()
    make_rule(7, "email")
    today = timezone.localdate()
    agent = make_agent()
    for number in range(3):
        customer = make_customer(f"c{number}@mail.example")
        make_policy(f"W-{number}", customer=customer, agent=agent, expiry_date=today + timedelta(7))
    outbox = {"channel": "email", "provider": "outbox", "outcome": "accepted"}
    before = value(scrape(client), "renewly_provider_sends_total", **outbox)
    queue = f"renewly-metrics-{uuid.uuid4().hex[:8]}"
    sender = Celery("sender", broker=redis_url, set_as_current=False)

    with celery_worker(
        broker_url=redis_url,
        queue=queue,
        var_dir=tmp_path,
        CELERY_TASK_DEFAULT_QUEUE=queue,
        EMAIL_BACKEND="notifications.channels.outbox.EmailBackend",
        METRICS_DIR=str(settings.METRICS_DIR),  # where this process, the web side, reads
    ):
        sender.send_task("notifications.tasks.daily_scan", queue=queue)

        def all_sent():
            return Notification.objects.filter(status=Notification.Status.SENT).count() == 3

        wait_for(all_sent, timeout=90, explain=lambda: worker_log(tmp_path, queue))

    assert ReminderRun.objects.filter(finished_at__isnull=False).exists()
    assert value(scrape(client), "renewly_provider_sends_total", **outbox) == before + 3


def test_a_process_that_imported_prometheus_client_before_django_still_counts(tmp_path):
    # `celery worker` does so (Flower's command plugin imports it), with no variable set.
    script = (
        "import celery.bin.celery, django; django.setup()\n"
        "from ops.metrics import SENDS\n"
        "SENDS.labels('sms', 'outbox', 'accepted').inc()\n"
    )
    environment = {**os.environ, "METRICS_DIR": str(tmp_path)}
    environment.pop("PROMETHEUS_MULTIPROC_DIR")

    subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=environment, check=True)

    assert list(tmp_path.glob("*/counter_*.db"))
