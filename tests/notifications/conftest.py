"""Fixtures for planning and dispatch: exactly the rules a test asks for, an outbox of files in
a directory of the test's own, and the real provider SDKs pointed at the fake provider."""

import importlib
import threading
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from notifications import planning, recovery
from notifications.models import Channel, MessageTemplate, Notification, ReminderRule
from notifications.tasks import send_batch
from tests.factories import make_rule, template_for
from tests.fake_provider import FakeProvider

# The rules migration 0002 seeds (email 60/30/14/7 days, SMS 14/7/1), read from the migration
# itself so these tests follow it.
DEFAULT_RULES: list[tuple[int, str]] = importlib.import_module(
    "notifications.migrations.0002_defaults"
).DEFAULT_RULES

Status = Notification.Status
TWILIO_TEST_FROM = "+15005550006"  # Twilio's own magic test number
TWILIO_WHATSAPP_TEST_FROM = "+14155238886"  # Twilio's WhatsApp sandbox number


@pytest.fixture
def rules(db):
    """Deletes the seeded rules; call the fixture to create exactly the rules a test wants:
    `rules(7, "sms")`, `rules(30, product_line="home")`, `rules(14, active=False)`."""
    ReminderRule.objects.all().delete()

    def add(
        lead_days: int,
        channel: str = Channel.EMAIL,
        product_line: str = "",
        *,
        active: bool = True,
        template: MessageTemplate | None = None,
    ) -> ReminderRule:
        return make_rule(
            lead_days,
            channel,
            product_line,
            active=active,
            template=template or template_for(channel),
        )

    return add


@pytest.fixture
def default_rules(rules) -> list[ReminderRule]:
    """The seeded set of rules, created afresh (a transactional test elsewhere may have
    flushed the seeded rows)."""
    return [rules(lead_days, channel) for lead_days, channel in DEFAULT_RULES]


@pytest.fixture
def fake_provider():
    with FakeProvider(status_callbacks=False) as provider:
        yield provider


@pytest.fixture
def providers(settings, fake_provider) -> FakeProvider:
    """The real channels, twilio's Client and anymail's Postmark backend, talking HTTP to the
    fake provider; SMS from TWILIO_TEST_FROM, WhatsApp from TWILIO_WHATSAPP_TEST_FROM."""
    for name, value in fake_provider.django_settings(anymail=dict(settings.ANYMAIL)).items():
        setattr(settings, name, value)
    settings.SMS_BACKEND = settings.WHATSAPP_BACKEND = "twilio"
    settings.TWILIO_FROM_NUMBER = TWILIO_TEST_FROM
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    settings.TWILIO_WHATSAPP_FROM = TWILIO_WHATSAPP_TEST_FROM
    return fake_provider


@pytest.fixture
def eager_tasks():
    """Tasks a task sends run in place, so a test sees the whole chain. (The tasks' own app:
    a test that builds a Celery app of its own makes that one current.)"""
    conf = send_batch.app.conf
    conf.update(task_always_eager=True)
    yield
    conf.update(task_always_eager=False)


@pytest.fixture
def outbox(settings, tmp_path) -> Path:
    """The local outbox, in this test's own directory, for every channel."""
    settings.OUTBOX_DIR = tmp_path / "outbox"
    settings.EMAIL_BACKEND = "notifications.channels.outbox.EmailBackend"
    settings.SMS_BACKEND = settings.WHATSAPP_BACKEND = "outbox"
    return settings.OUTBOX_DIR


def plan(day: date, *, days: int = 0):
    """plan_due for `day` shifted by `days`: `plan(RUN, days=-5)` is the scan five days before."""
    return planning.plan_due(run_date=day + timedelta(days=days))


def keys(notifications) -> set[tuple[str, str, int, str]]:
    """(policy number, channel, lead days, status) of each notification, for exact asserts."""
    return {
        (n.policy.policy_number, n.channel, n.lead_days, n.status)
        for n in notifications.select_related("policy")
    }


def statuses(**filters) -> dict[tuple[str, int], str]:
    """{(channel, lead days): status} of the notifications matching `filters`."""
    return {(n.channel, n.lead_days): n.status for n in Notification.objects.filter(**filters)}


def run_at_once(*calls: Callable, timeout: float = 120) -> list:
    """Run each call in a thread of its own, all released together by a barrier, each on its
    own database connection (closed when the thread ends). Returns their results in order;
    re-raises the first error a thread met. Needs a transactional test: the threads must see
    what the test wrote, and the test what they wrote."""
    barrier = threading.Barrier(len(calls))
    results: list = [None] * len(calls)
    errors: list[BaseException] = []

    def run(index: int, call: Callable) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = call()
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), "a thread is still running"
    if errors:
        raise errors[0]
    return results


def send_until_settled(
    notification_id: int, *, rounds: int = 10, hours_each_wait: float = 0
) -> Notification:
    """Send the notification with the send_batch task, in place, and each time it waits out a
    retry backoff (with `hours_each_wait` of its retry budget), or waits to be reconciled with
    the provider (a send with no answer), let that time pass and do what the release task does:
    the whole retry path, without the wait. Returns the notification as it settled."""
    send_batch.apply(args=[[notification_id]])
    for _ in range(rounds):
        unconfirmed = Notification.objects.filter(
            pk=notification_id, status=Status.SENDING, lease__isnull=True
        )
        if unconfirmed.update(recover_after=timezone.now()):
            recovery.recover_abandoned()
        waiting = Notification.objects.filter(pk=notification_id, status=Status.DEFERRED)
        if not waiting.update(send_after=timezone.now()):
            break
        waiting.filter(failing_since__isnull=False).update(
            failing_since=F("failing_since") - timedelta(hours=hours_each_wait)
        )
        assert notification_id in planning.claim_for_enqueue(
            limit=1000, stalled_after=timedelta(hours=1)
        )
        send_batch.apply(args=[[notification_id]])
    return Notification.objects.get(pk=notification_id)


def retry_for_hours(settings, hours: int) -> None:
    """Both channels retry a transient error for this many hours (0: not at all)."""
    settings.REMINDER_RETRY_FOR_HOURS = dict.fromkeys(Channel.values, hours)
