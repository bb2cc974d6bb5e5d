"""Prometheus metrics. Sends, provider latency and webhook requests happen in web and worker
processes alike, so they are counted in prometheus_client's multiprocess mode: files under
METRICS_DIR that /metrics adds up, with no network round trip per send (counters in Redis would
cost one). What the database already knows (notifications by status and channel, the last
finished scan) and the queues' depth are read when Prometheus scrapes."""

import glob
import logging
import time
from functools import wraps

from anymail.exceptions import AnymailWebhookValidationFailure
from django.conf import settings
from django.db.models import Count, Max
from django.http import Http404, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from notifications.channels.base import PermanentSendError, TransientSendError

logger = logging.getLogger(__name__)
# Count in files even where prometheus_client was imported before settings set the folder:
# `celery worker` imports it at start-up (Flower's command plugin does), before Django.
values.ValueClass = values.MultiProcessValue()

SENDS = Counter(
    "renewly_provider_sends",
    "Messages handed to a provider, by what the provider answered.",
    ["channel", "provider", "outcome"],
)
SEND_SECONDS = Histogram(
    "renewly_provider_send_seconds",
    "How long a provider took to accept or refuse one message.",
    ["channel", "provider"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
WEBHOOK_REQUESTS = Counter(
    "renewly_webhook_requests",
    "Provider callbacks received: accepted, refused (bad signature or credentials) or invalid.",
    ["webhook", "outcome"],
)


# --- Sends -------------------------------------------------------------------------------------


class MeasuredSender:
    """A channel's sender whose every send is counted and timed; anything else it offers
    (close(), say) is the sender's own."""

    def __init__(self, sender, *, channel: str, provider: str):
        self._sender, self._channel, self._provider = sender, channel, provider
        self._seconds = SEND_SECONDS.labels(channel, provider)

    def __getattr__(self, name):
        return getattr(self._sender, name)

    def send(self, message):
        outcome = "error"  # neither accepted nor a classified refusal: a bug or misconfiguration
        started = time.perf_counter()
        try:
            provider_message_id = self._sender.send(message)
            outcome = "accepted"
            return provider_message_id
        except TransientSendError:
            outcome = "transient_error"
            raise
        except PermanentSendError:
            outcome = "permanent_error"
            raise
        finally:
            self._seconds.observe(time.perf_counter() - started)
            SENDS.labels(self._channel, self._provider, outcome).inc()


def measured(sender, *, channel: str, provider: str) -> MeasuredSender:
    return MeasuredSender(sender, channel=channel, provider=provider)


# --- Webhooks ----------------------------------------------------------------------------------


def counted_webhook(name: str):
    """Count a webhook view's requests by outcome. Refused: the caller is not the provider
    (a missing or wrong signature, anymail's basic auth failing)."""

    def decorate(view):
        @wraps(view)
        def counted(request, *args, **kwargs):
            try:
                response = view(request, *args, **kwargs)
            except AnymailWebhookValidationFailure:
                WEBHOOK_REQUESTS.labels(name, "refused").inc()
                raise
            WEBHOOK_REQUESTS.labels(name, outcome_of(response.status_code)).inc()
            return response

        return counted

    return decorate


def outcome_of(status_code: int) -> str:
    if status_code < 300:
        return "accepted"
    if status_code in (401, 403):
        return "refused"
    return "invalid"


# --- What is read at scrape time ---------------------------------------------------------------


class StateCollector:
    """Gauges read when Prometheus scrapes: the database's notifications and last scan, and
    the broker's queues."""

    def collect(self):
        from notifications.models import Notification, ReminderRun

        by_status = GaugeMetricFamily(
            "renewly_notifications",
            "Notifications by status and channel.",
            labels=["status", "channel"],
        )
        # One GROUP BY over the table: a parallel sequential scan of a few hundred ms at a
        # million rows (README: Metrics), paid once per scrape.
        rows = Notification.objects.values_list("status", "channel").annotate(Count("id"))
        for status, channel, count in rows.order_by():
            by_status.add_metric([status, channel], count)
        yield by_status

        last_scan = ReminderRun.objects.aggregate(last=Max("finished_at"))["last"]
        yield GaugeMetricFamily(
            "renewly_last_successful_scan_timestamp_seconds",
            "When the last daily scan finished (Unix time); 0 before the first.",
            value=last_scan.timestamp() if last_scan else 0,
        )

        depth = GaugeMetricFamily(
            "renewly_queue_depth", "Messages waiting in a broker queue.", labels=["queue"]
        )
        for queue, messages in queue_depths().items():
            depth.add_metric([queue], messages)
        yield depth


def queue_depths() -> dict[str, int]:
    """Messages waiting in each queue Renewly's tasks go to; {} when the broker is down.
    kombu asks each broker its own way: LLEN on Redis, a passive declare on RabbitMQ."""
    from celery.exceptions import TimeoutError as CeleryTimeoutError
    from kombu.exceptions import ChannelError, OperationalError

    from config.celery import app
    from config.health import broker_connection

    queues = [queue.name for queue in app.amqp.queues.values()] or [app.conf.task_default_queue]
    depths = {}
    try:
        with broker_connection(app) as connection:
            for queue in queues:
                channel = connection.channel()
                try:
                    depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
                except ChannelError:  # not declared yet: nothing was ever sent to it
                    depths[queue] = 0
                finally:
                    channel.close()
    except (OperationalError, OSError, CeleryTimeoutError) as error:
        logger.warning("queue depth unknown: broker unreachable (%s)", type(error).__name__)
        return {}
    return depths


class SharedCountsCollector:
    """The counters and histograms of every process on every machine writing to METRICS_DIR,
    each machine in a folder of its own."""

    def collect(self):
        files = glob.glob(str(settings.METRICS_DIR / "*" / "*.db"))
        merged = MultiProcessCollector.merge(files, accumulate=True)
        return [metric for metric in merged if metric.name.startswith("renewly_")]


def registry() -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(SharedCountsCollector())
    registry.register(StateCollector())
    return registry


def metrics_view(request):
    """Prometheus' text format, for a scraper bearing METRICS_TOKEN."""
    from config.health import bearer_token, bears_metrics_token

    if not settings.METRICS_TOKEN:
        raise Http404("METRICS_TOKEN is not set.")
    if not bearer_token(request):
        response = HttpResponse("A bearer token is required.", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not bears_metrics_token(request):
        return HttpResponse("Wrong token.", status=403)
    return HttpResponse(generate_latest(registry()), content_type=CONTENT_TYPE_LATEST)
