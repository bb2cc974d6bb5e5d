"""Fixtures for events out: a real receiver over HTTP that verifies every request with the
standardwebhooks library, subscriptions to it, and reminders whose moves make the events."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from events import delivery
from events.models import Delivery, Event, Subscription, new_secret
from notifications.models import Notification
from tests.factories import (
    make_agent,
    make_customer,
    make_notification,
    make_policy,
    make_subscription,
)
from tests.notifications.conftest import eager_tasks  # noqa: F401
from tests.webhook_receiver import WebhookReceiver

Status = Notification.Status


@pytest.fixture(autouse=True)
def quick_events(settings):
    """Short waits, a few threads; nobody emailed unless a test says so."""
    settings.EVENTS_TIMEOUT_SECONDS = 2
    settings.EVENTS_SEND_THREADS = 4
    settings.EVENTS_RETRY_BACKOFF_SECONDS = 1
    settings.EVENTS_ADMIN_EMAILS = []


@pytest.fixture
def receiver():
    with WebhookReceiver(new_secret()) as running:
        yield running


@pytest.fixture
def reminder(db) -> Notification:
    """An email reminder handed to its provider (sent), 30 days before its policy expires."""
    policy = make_policy(
        "P-100",
        customer=make_customer("pat@mail.example"),
        agent=make_agent(),
        expiry_date=timezone.localdate() + timedelta(days=30),
    )
    return make_notification(
        policy, status=Status.SENT, provider_message_id="pm-1", sent_at=timezone.now()
    )


class Boom(Exception):
    pass


def rolled_back(change) -> None:
    """Make the change in a transaction that then fails."""
    with transaction.atomic():
        change()
        raise Boom


def subscribe(receiver: WebhookReceiver, *event_types: str, **fields) -> Subscription:
    """A subscription of the receiver to these event types, with the receiver's secret."""
    return make_subscription(receiver.url, *event_types, **{"secret": receiver.secret, **fields})


def sent_reminders(count: int) -> list[Notification]:
    """`count` sent email reminders, one policy and customer each."""
    agent = make_agent("events-agent", "events-agent@agency.example")
    expiry = timezone.localdate() + timedelta(days=30)
    return [
        make_notification(
            make_policy(
                f"E-{n}",
                customer=make_customer(f"customer{n}@mail.example"),
                agent=agent,
                expiry_date=expiry,
            ),
            status=Status.SENT,
        )
        for n in range(count)
    ]


def deliver_until_settled(*, rounds: int = 10) -> None:
    """Deliver what is due, and each time deliveries wait out a retry's backoff, let that time
    pass and deliver again (what the sweep does every minute), until none waits."""
    for _ in range(rounds):
        delivery.deliver_due()
        waiting = Delivery.objects.filter(status=Delivery.Status.PENDING)
        if not waiting.update(next_attempt_at=timezone.now()):
            return


def webhook_ids() -> set[str]:
    return {event.webhook_id for event in Event.objects.all()}
