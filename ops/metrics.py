"""Prometheus metrics. Sends, provider latency and webhook requests happen in web and worker
processes alike, so they are counted in prometheus_client's multiprocess mode: files under
METRICS_DIR that /metrics adds up, with no network round trip per send (counters in Redis would
cost one). What the database already knows (notifications by status and channel, the last
finished scan, each provider's circuit breaker) and the queues' depth are read when Prometheus
scrapes."""

import glob
import logging

from celery import current_app
from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.conf import settings
from django.db.models import Count, Max
from kombu.exceptions import ChannelError, OperationalError
from prometheus_client import CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

from notifications import circuit, recovery
from notifications.models import CircuitBreaker, Notification, ReminderRun
from ops.health import broker_connection

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
RECONCILIATIONS = Counter(
    "renewly_reconciliations",
    "Sends whose worker died or got no answer, reconciled with the provider: found (recorded "
    "as sent), not_found (sent again), unavailable (asked again later), waiting or "
    "resent_unverified (a provider with no lookup).",
    ["channel", "provider", "outcome"],
)
WEBHOOK_REQUESTS = Counter(
    "renewly_webhook_requests",
    "Provider callbacks received: accepted, refused (bad signature or credentials) or invalid.",
    ["webhook", "outcome"],
)


# --- What the engine tells: notifications.signals, connected in ops.apps ----------------------


def count_send(sender, *, channel: str, provider: str, outcome: str, seconds: float, **kwargs):
    SEND_SECONDS.labels(channel, provider).observe(seconds)
    SENDS.labels(channel, provider, outcome).inc()


def count_reconciliation(sender, *, channel: str, provider: str, outcome: str, **kwargs):
    RECONCILIATIONS.labels(channel, provider, outcome).inc()


def count_webhook_request(sender, *, webhook: str, outcome: str, **kwargs):
    WEBHOOK_REQUESTS.labels(webhook, outcome).inc()


# --- What is read at scrape time ---------------------------------------------------------------


class StateCollector:
    """Gauges read when Prometheus scrapes: the database's notifications, last scan and
    providers' breakers, and the broker's queues."""

    def collect(self):
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

        yield GaugeMetricFamily(
            "renewly_abandoned_sends",
            "Notifications left sending by a worker that died, or a send that got no answer, "
            "not reconciled with the provider yet.",
            value=recovery.without_worker().count(),
        )

        last_scan = ReminderRun.objects.aggregate(last=Max("finished_at"))["last"]
        yield GaugeMetricFamily(
            "renewly_last_successful_scan_timestamp_seconds",
            "When the last daily scan finished (Unix time); 0 before the first.",
            value=last_scan.timestamp() if last_scan else 0,
        )

        breakers = GaugeMetricFamily(
            "renewly_provider_circuit_state",
            "Each channel's provider breaker: 1 for its state (closed: sending; open: paused "
            "after transient errors; probing: one send is trying), 0 for the others.",
            labels=["channel", "provider", "state"],
        )
        for channel, breaker in circuit.breakers().items():
            for state in CircuitBreaker.State.values:
                breakers.add_metric([channel, breaker.provider, state], int(breaker.state == state))
        yield breakers

        depth = GaugeMetricFamily(
            "renewly_queue_depth", "Messages waiting in a broker queue.", labels=["queue"]
        )
        for queue, messages in queue_depths().items():
            depth.add_metric([queue], messages)
        yield depth


def queue_depths() -> dict[str, int]:
    """Messages waiting in each queue Renewly's tasks go to; {} when the broker is down.
    kombu asks each broker its own way: LLEN on Redis, a passive declare on RabbitMQ."""
    app = current_app
    routes = app.conf.task_routes if isinstance(app.conf.task_routes, dict) else {}
    queues = sorted(
        {queue.name for queue in app.amqp.queues.values()}
        | {app.conf.task_default_queue}
        | {route["queue"] for route in routes.values() if isinstance(route.get("queue"), str)}
    )
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
