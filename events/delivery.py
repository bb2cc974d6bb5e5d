"""Delivering events: claim what is due, POST each event as JSON to its subscription, signed per
Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature: HMAC-SHA256 by the
standardwebhooks library), and record what came back.

At least once: a claim lasts EVENTS_CLAIM_SECONDS, and a worker starts a POST only while its
claim outlives the request's timeouts; a worker that dies leaves its claim to lapse, and the
next sweep sends again, with the same webhook-id. A failed attempt (no answer, or not 2xx) is
tried again after an exponential backoff, for EVENTS_RETRY_FOR_HOURS after the first failure;
then the delivery fails. A subscription failing every attempt for long enough is disabled, and
the admins are told (`disable_failing`)."""

import json
import logging
import os
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce
from django.utils import timezone
from standardwebhooks import Webhook

from events import lifecycle
from events.models import Delivery, DeliveryAttempt, Subscription
from notifications.retries import jittered_backoff
from notifications.updates import each_row
from policies.feeds import redact

logger = logging.getLogger(__name__)
Status = Delivery.Status
# What an attempt keeps of the receiver's answer, for the admin.
EXCERPT_BYTES = 500
USER_AGENT = "Renewly-Webhooks/1"


@dataclass(frozen=True)
class Answer:
    """What one POST got: a status code, or the error that stood for one."""

    status_code: int | None
    latency_ms: int
    excerpt: str = ""
    error: str = ""

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    def __str__(self) -> str:
        return f"HTTP {self.status_code}" if self.status_code else self.error


def deliver(delivery_ids: list[int] | None = None) -> dict[str, int]:
    """Claim up to EVENTS_BATCH_SIZE due deliveries (of `delivery_ids`, when given), POST them
    on this process's threads and record each outcome. Returns how many ended each way."""
    began = time.monotonic()
    claim = lifecycle.claim(
        limit=settings.EVENTS_BATCH_SIZE,
        seconds=settings.EVENTS_CLAIM_SECONDS,
        among=delivery_ids,
    )
    deliveries = list(
        Delivery.objects.select_related("event", "subscription").filter(claim=claim).order_by("pk")
    )
    if not deliveries:
        return {}
    # The latest a POST may start: it must be over (connecting, then reading) before the claim
    # lapses and another worker may send the same delivery.
    last_start = began + settings.EVENTS_CLAIM_SECONDS - 2 * settings.EVENTS_TIMEOUT_SECONDS
    answers = list(send_threads().map(lambda delivery: _post(delivery, last_start), deliveries))
    return _record(claim, deliveries, answers)


def deliver_due() -> dict[str, int]:
    """Deliver every delivery that is due (new, a retry's time come, a dead worker's), a batch
    at a time. Returns how many ended each way."""
    total = Counter()
    while True:
        outcomes = deliver()
        total.update(outcomes)
        if sum(outcomes.values()) < settings.EVENTS_BATCH_SIZE:
            return dict(total)


def body_of(delivery: Delivery) -> bytes:
    return json.dumps(delivery.event.payload(), separators=(",", ":")).encode()


def _post(delivery: Delivery, last_start: float) -> Answer | None:
    """POST the delivery's event; None when its claim is too near its end to start."""
    if time.monotonic() > last_start:
        return None
    started = time.monotonic()
    try:
        status_code, excerpt = _send_signed(delivery)
    except requests.RequestException as error:
        # requests names the URL in its errors: no token of its query goes to the admin.
        error_text = redact(f"{type(error).__name__}: {error}")
        return Answer(None, _since(started), error=error_text[:1000])
    except Exception as error:  # a bug or a misconfiguration: a failed attempt, not a lost batch
        logger.error("event delivery %s not sent", delivery.pk, exc_info=error)
        return Answer(None, _since(started), error=f"unexpected error: {error!r}"[:1000])
    return Answer(status_code, _since(started), excerpt=excerpt)


def _send_signed(delivery: Delivery) -> tuple[int, str]:
    """POST the event signed per Standard Webhooks: the same webhook-id at every attempt, the
    timestamp of this one (receivers refuse one five minutes old)."""
    body, webhook_id, now = body_of(delivery), delivery.event.webhook_id, datetime.now(UTC)
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(delivery.subscription.secret).sign(webhook_id, now, body),
        "content-type": "application/json",
        "user-agent": USER_AGENT,
    }
    timeout, url = settings.EVENTS_TIMEOUT_SECONDS, delivery.subscription.url
    with _session().post(
        url,
        data=body,
        headers=headers,
        timeout=(timeout, timeout),
        allow_redirects=False,
        stream=True,  # read no more of the answer than the excerpt keeps
        **_environment_settings(url),
    ) as response:
        return response.status_code, _excerpt(response)


def _excerpt(response: requests.Response) -> str:
    read = b""
    for chunk in response.iter_content(chunk_size=EXCERPT_BYTES):
        read += chunk
        if len(read) >= EXCERPT_BYTES:
            break  # the rest is not read: the connection closes instead of going back to the pool
    return read[:EXCERPT_BYTES].decode(errors="replace")


def _since(started: float) -> int:
    return round((time.monotonic() - started) * 1000)


def _record(claim, deliveries: list[Delivery], answers: list[Answer | None]) -> dict[str, int]:
    """Record each attempt, and move each delivery where its answer takes it, under the claim:
    a delivery another worker claimed meanwhile (this one's claim lapsed) is not moved."""
    now = timezone.now()
    delivered, retry_at, gave_up, not_tried, errors = [], {}, {}, [], {}
    for delivery, answer in zip(deliveries, answers, strict=True):
        if answer is None:
            not_tried.append(delivery.pk)
        elif answer.succeeded:
            delivered.append(delivery.pk)
        elif out_of_time(delivery, now):
            gave_up[delivery.pk] = f"gave up after {settings.EVENTS_RETRY_FOR_HOURS} h: {answer}"
        else:
            retry_at[delivery.pk] = now + timedelta(seconds=retry_backoff(delivery.attempts))
            errors[delivery.pk] = f"attempt {delivery.attempts}: {answer}"
    tried = [(d, a) for d, a in zip(deliveries, answers, strict=True) if a is not None]
    with transaction.atomic():
        DeliveryAttempt.objects.bulk_create(
            DeliveryAttempt(
                delivery=delivery,
                attempted_at=now,
                succeeded=answer.succeeded,
                status_code=answer.status_code,
                latency_ms=answer.latency_ms,
                response_excerpt=answer.excerpt,
                error=answer.error,
            )
            for delivery, answer in tried
        )
        lifecycle.move(delivered, Status.DELIVERED, held_by=claim, delivered_at=now, last_error="")
        failing_since = Coalesce(F("failing_since"), Value(now))
        lifecycle.move(
            retry_at,
            Status.PENDING,
            held_by=claim,
            next_attempt_at=_each(retry_at, "next_attempt_at"),
            last_error=_each(errors, "last_error"),
            failing_since=failing_since,
        )
        lifecycle.move(
            gave_up,
            Status.FAILED,
            held_by=claim,
            last_error=_each(gave_up, "last_error"),
            failing_since=failing_since,
        )
        # Its claim ran short before the POST could start: no attempt, no wait.
        lifecycle.move(
            not_tried,
            Status.PENDING,
            held_by=claim,
            next_attempt_at=now,
            attempts=F("attempts") - 1,
        )
        disabled = _count_for_subscriptions(tried, now)
    for subscription in disabled:
        tell_admins(subscription)
    outcomes = {
        "delivered": len(delivered),
        "retrying": len(retry_at),
        "failed": len(gave_up),
        "not_tried": len(not_tried),
    }
    return {outcome: count for outcome, count in outcomes.items() if count}


def _count_for_subscriptions(tried: list[tuple[Delivery, Answer]], now) -> list[Subscription]:
    """A success resets its subscription's failures; failures add up, and may disable it."""
    succeeded = {delivery.subscription_id for delivery, answer in tried if answer.succeeded}
    failed = Counter(
        delivery.subscription_id
        for delivery, answer in tried
        if not answer.succeeded and delivery.subscription_id not in succeeded
    )
    if succeeded:
        Subscription.objects.filter(pk__in=succeeded, consecutive_failures__gt=0).update(
            consecutive_failures=0, failing_since=None
        )
    for pk, count in failed.items():  # a few subscriptions at most
        Subscription.objects.filter(pk=pk).update(
            consecutive_failures=F("consecutive_failures") + count,
            failing_since=Coalesce(F("failing_since"), Value(now)),
        )
    last_errors = {delivery.subscription_id: str(answer) for delivery, answer in tried}
    return disable_failing(failed, now, last_errors)


def disable_failing(subscription_ids, now: datetime, last_errors: dict[int, str]) -> list:
    """Disable those of the subscriptions that failed EVENTS_DISABLE_AFTER_FAILURES attempts in
    a row, over EVENTS_DISABLE_AFTER_HOURS at least, and return them."""
    if not subscription_ids:
        return []
    hours = settings.EVENTS_DISABLE_AFTER_HOURS
    failing = Subscription.objects.filter(
        pk__in=list(subscription_ids),
        active=True,
        consecutive_failures__gte=settings.EVENTS_DISABLE_AFTER_FAILURES,
        failing_since__lte=now - timedelta(hours=hours),
    )
    disabled = []
    for subscription in failing:
        subscription.disabled_reason = (
            f"Disabled after {subscription.consecutive_failures} failed attempts in a row since "
            f"{subscription.failing_since:%Y-%m-%d %H:%M} UTC; the last: "
            f"{last_errors.get(subscription.pk, 'unknown')}. Fix the receiver, then re-enable "
            "it: what waits is sent then."
        )
        if Subscription.objects.filter(pk=subscription.pk, active=True).update(
            active=False, disabled_reason=subscription.disabled_reason, disabled_at=now
        ):
            disabled.append(subscription)
    return disabled


def tell_admins(subscription: Subscription) -> None:
    """Email EVENTS_ADMIN_EMAILS that a subscription was disabled (the admin shows it too)."""
    logger.error("events subscription %s disabled: %s", subscription, subscription.disabled_reason)
    if not settings.EVENTS_ADMIN_EMAILS:
        return
    try:
        send_mail(
            f"Renewly: events to {subscription.name} are disabled",
            f"{subscription.disabled_reason}\n\nURL: {subscription.url}\n"
            "Re-enable it in the admin (Events to other systems > Subscriptions).",
            None,
            settings.EVENTS_ADMIN_EMAILS,
        )
    except Exception:  # the subscription is disabled all the same; the admin shows it
        logger.exception("could not email the admins about subscription %s", subscription.pk)


def out_of_time(delivery: Delivery, now: datetime) -> bool:
    """Whether a delivery whose attempt just failed has spent its EVENTS_RETRY_FOR_HOURS,
    counted from its first failed attempt (this one, when it is the first)."""
    failing_since = delivery.failing_since or now
    return now - failing_since >= timedelta(hours=settings.EVENTS_RETRY_FOR_HOURS)


def retry_backoff(attempts: int) -> int:
    """Seconds a delivery waits after its `attempts`-th attempt failed: EVENTS_RETRY_BACKOFF_
    SECONDS, doubling with each attempt, at most EVENTS_RETRY_BACKOFF_MAX_SECONDS, jittered as
    reminders' retries are."""
    return jittered_backoff(
        attempts,
        first=settings.EVENTS_RETRY_BACKOFF_SECONDS,
        most=settings.EVENTS_RETRY_BACKOFF_MAX_SECONDS,
    )


def _each(values: dict[int, object], field_name: str):
    return each_row(Delivery, values, field_name)


# The threads POSTing for this process, each with a requests Session of its own (keep-alive
# connections to the receivers); made again in a process forked from the one that made them.
_threads: tuple[int, ThreadPoolExecutor | None] = (0, None)
_threads_lock = threading.Lock()
_local = threading.local()


def send_threads() -> ThreadPoolExecutor:
    global _threads
    pid, pool = _threads
    if pool is None or pid != os.getpid():
        with _threads_lock:
            if _threads[1] is None or _threads[0] != os.getpid():
                _threads = (
                    os.getpid(),
                    ThreadPoolExecutor(
                        max_workers=settings.EVENTS_SEND_THREADS, thread_name_prefix="events"
                    ),
                )
            pool = _threads[1]
    return pool


def _session() -> requests.Session:
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = requests.Session()
        # The environment is read once per URL (_environment_settings), not at every POST.
        session.trust_env = False
    return session


@lru_cache(maxsize=1024)
def _environment_settings(url: str) -> dict:
    """What requests takes from the environment for a request to `url`: the proxy (HTTP_PROXY,
    HTTPS_PROXY, ALL_PROXY, NO_PROXY), the CA bundle (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE) and
    ~/.netrc's credentials. requests reads them at every request, a sixth of a worker's CPU
    per event; a worker's environment does not change while it runs."""
    with requests.Session() as reader:
        found = reader.merge_environment_settings(url, {}, None, None, None)
    return {
        "proxies": found["proxies"],
        "verify": found["verify"],
        "auth": requests.utils.get_netrc_auth(url),
    }
