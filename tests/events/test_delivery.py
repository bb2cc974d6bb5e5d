"""Delivery to a real receiver over HTTP, which verifies every request with the standardwebhooks
library: signed, retried with the same webhook-id until it arrives, at least once, and a
subscription that keeps failing disabled."""

import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.core import mail
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from events import delivery, lifecycle, services
from events.models import Delivery, DeliveryAttempt, Event, EventType, Subscription, new_secret
from events.schedule import SWEEP_NAME, SWEEP_TASK
from events.tasks import deliver_due_events
from notifications import lifecycle as notification_lifecycle
from notifications.models import Notification
from tests.events.conftest import (
    Boom,
    deliver_until_settled,
    rolled_back,
    sent_reminders,
    subscribe,
    webhook_ids,
)
from tests.notifications.conftest import run_at_once
from tests.webhook_receiver import WebhookReceiver

Status = Delivery.Status
DELIVERED = Notification.Status.DELIVERED


def deliver_reminders(count: int) -> list[Notification]:
    reminders = sent_reminders(count)
    notification_lifecycle.move([n.pk for n in reminders], DELIVERED)
    return reminders


def test_a_delivered_reminder_reaches_the_receiver_once_signed(reminder, receiver):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    notification_lifecycle.move(reminder.pk, DELIVERED)

    assert delivery.deliver_due() == {"delivered": 1}

    event = Event.objects.get()
    assert receiver.accepted_count() == {event.webhook_id: 1}  # verified by standardwebhooks
    assert receiver.accepted[event.webhook_id] == event.payload()
    assert receiver.accepted[event.webhook_id]["data"]["notification_id"] == reminder.pk
    sent = Delivery.objects.get()
    assert (sent.status, sent.attempts, sent.last_error) == (Status.DELIVERED, 1, "")
    attempt = sent.attempt_log.get()
    assert (attempt.succeeded, attempt.status_code) == (True, 200)
    assert attempt.response_excerpt == '{"status": 200}'
    assert delivery.deliver_due() == {}  # nothing twice


def test_the_signature_is_real_a_receiver_with_another_secret_refuses_it(reminder, receiver):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED, secret=new_secret())
    notification_lifecycle.move(reminder.pk, DELIVERED)

    assert delivery.deliver_due() == {"retrying": 1}

    assert receiver.rejected == 1
    assert receiver.accepted == {}
    waiting = Delivery.objects.get()
    assert waiting.status == Status.PENDING
    assert waiting.last_error == "attempt 1: HTTP 401"


def test_a_forged_or_replayed_old_request_does_not_verify(reminder, receiver):
    subscription = subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    notification_lifecycle.move(reminder.pk, DELIVERED)
    sent = Delivery.objects.select_related("event", "subscription").get()
    body = delivery.body_of(sent)
    old = timezone.now() - timedelta(minutes=10)
    headers = {"webhook-id": sent.event.webhook_id, "webhook-timestamp": str(int(old.timestamp()))}
    signer = Webhook(subscription.secret)

    with pytest.raises(WebhookVerificationError, match="too old"):
        signer.verify(
            body, {**headers, "webhook-signature": signer.sign(headers["webhook-id"], old, body)}
        )
    now = timezone.now()
    fresh = {**headers, "webhook-timestamp": str(int(now.timestamp()))}
    forged = Webhook(new_secret()).sign(fresh["webhook-id"], now, body)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        signer.verify(body, {**fresh, "webhook-signature": forged})
    tampered = body.replace(b"delivered", b"bounced")
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        signer.verify(
            tampered, {**fresh, "webhook-signature": signer.sign(fresh["webhook-id"], now, body)}
        )


def test_a_receiver_down_then_failing_then_back_gets_every_event_with_the_same_ids(db, receiver):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    deliver_reminders(12)
    receiver.stop()  # connections refused

    assert delivery.deliver_due() == {"retrying": 12}
    receiver.start()
    receiver.script(["500"] * 5 + ["503"] * 3)
    deliver_until_settled()

    assert set(receiver.accepted) == webhook_ids()
    assert set(receiver.received) == webhook_ids()  # the 5xx'd were retried with their own ids
    assert len(receiver.received) == 12 + 8
    assert set(Delivery.objects.values_list("status", flat=True)) == {Status.DELIVERED}
    errors = list(
        DeliveryAttempt.objects.filter(succeeded=False).values_list("error", "status_code")
    )
    assert sum(1 for error, _ in errors if "ConnectionError" in error) == 12
    assert sorted(code for _, code in errors if code) == [500] * 5 + [503] * 3
    attempts = DeliveryAttempt.objects.count()
    assert attempts == 12 + 12 + 8


def test_a_retry_waits_its_backoff(reminder, receiver, settings):
    settings.EVENTS_RETRY_BACKOFF_SECONDS = 60
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    notification_lifecycle.move(reminder.pk, DELIVERED)
    receiver.script(["500"])

    before = timezone.now()
    delivery.deliver_due()
    after = timezone.now()

    waiting = Delivery.objects.get()
    # Half the backoff or more, at random, from when the failure was recorded.
    assert (waiting.next_attempt_at - before).total_seconds() >= 30
    assert (waiting.next_attempt_at - after).total_seconds() <= 60
    assert delivery.deliver_due() == {}  # not before its time
    assert waiting.failing_since is not None


def test_a_delivery_failing_past_its_retry_window_fails_and_can_be_resent(
    reminder, receiver, settings
):
    settings.EVENTS_RETRY_FOR_HOURS = 1
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    notification_lifecycle.move(reminder.pk, DELIVERED)
    receiver.script(["500", "500"])
    delivery.deliver_due()
    Delivery.objects.update(
        next_attempt_at=timezone.now(), failing_since=timezone.now() - timedelta(hours=1)
    )

    assert delivery.deliver_due() == {"failed": 1}
    failed = Delivery.objects.get()
    assert failed.status == Status.FAILED
    assert failed.last_error == "gave up after 1 h: HTTP 500"

    assert services.resend([failed.pk]) == 1
    assert delivery.deliver_due() == {"delivered": 1}
    assert receiver.received == [Event.objects.get().webhook_id] * 3


def test_a_subscription_that_keeps_failing_is_disabled_and_the_admins_are_told(
    reminder, receiver, settings
):
    settings.EVENTS_DISABLE_AFTER_FAILURES = 3
    settings.EVENTS_DISABLE_AFTER_HOURS = 0
    settings.EVENTS_ADMIN_EMAILS = ["ops@insurer.example"]
    subscription = subscribe(receiver, EventType.NOTIFICATION_DELIVERED, name="CRM")
    notification_lifecycle.move(reminder.pk, DELIVERED)
    receiver.script(["500"] * 3)

    deliver_until_settled(rounds=3)

    subscription.refresh_from_db()
    assert not subscription.active
    assert subscription.consecutive_failures == 3
    assert "Disabled after 3 failed attempts in a row" in subscription.disabled_reason
    assert "HTTP 500" in subscription.disabled_reason
    [email] = mail.outbox
    assert email.to == ["ops@insurer.example"]
    assert email.subject == "Renewly: events to CRM are disabled"
    assert delivery.deliver_due() == {}  # what waits stays in the database

    assert services.reenable(subscription) == 1
    assert delivery.deliver_due() == {"delivered": 1}
    subscription.refresh_from_db()
    assert (subscription.active, subscription.consecutive_failures) == (True, 0)
    assert len(receiver.accepted) == 1


def test_a_success_resets_the_subscriptions_failures(reminder, receiver):
    subscription = subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    notification_lifecycle.move(reminder.pk, DELIVERED)
    receiver.script(["500", "500"])

    deliver_until_settled()

    subscription.refresh_from_db()
    assert (subscription.consecutive_failures, subscription.failing_since) == (0, None)


def test_a_worker_that_died_holding_a_claim_leaves_it_to_the_next_with_the_same_id(
    reminder, receiver
):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    notification_lifecycle.move(reminder.pk, DELIVERED)
    lifecycle.claim(limit=10, seconds=60)  # then SIGKILLed before its POST was recorded

    assert delivery.deliver_due() == {}  # claimed: nobody else sends it meanwhile
    Delivery.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert delivery.deliver_due() == {"delivered": 1}

    assert Delivery.objects.get().attempts == 2
    assert list(receiver.accepted) == [Event.objects.get().webhook_id]


def test_a_late_worker_records_nothing_over_the_next_ones_claim(reminder, receiver):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    notification_lifecycle.move(reminder.pk, DELIVERED)
    late = lifecycle.claim(limit=10, seconds=60)
    Delivery.objects.update(claimed_until=timezone.now() - timedelta(seconds=1))
    delivery.deliver_due()

    assert lifecycle.move(Delivery.objects.all(), Status.PENDING, held_by=late) == 0


def test_an_event_type_nobody_wants_is_not_delivered(reminder, receiver):
    subscribe(receiver, EventType.NOTIFICATION_FAILED)

    notification_lifecycle.move(reminder.pk, DELIVERED)

    assert delivery.deliver_due() == {}
    assert receiver.received == []


@pytest.mark.django_db(transaction=True)
def test_two_workers_at_once_never_deliver_the_same_event_twice(receiver, settings):
    settings.EVENTS_BATCH_SIZE = 10
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    deliver_reminders(60)

    first, second = run_at_once(delivery.deliver_due, delivery.deliver_due)

    assert first["delivered"] + second["delivered"] == 60
    assert receiver.accepted_count() == dict.fromkeys(webhook_ids(), 1)
    assert DeliveryAttempt.objects.count() == 60


@pytest.mark.django_db(transaction=True)
def test_a_committed_move_is_delivered_right_after_commit_and_a_rolled_back_one_never(
    receiver, eager_tasks
):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    committed, rolled_back_one = sent_reminders(2)

    with transaction.atomic():
        notification_lifecycle.move(committed.pk, DELIVERED)
    with pytest.raises(Boom):
        rolled_back(lambda: notification_lifecycle.move(rolled_back_one.pk, DELIVERED))

    [payload] = receiver.accepted.values()  # no sweep ran: the task after commit did it
    assert payload["data"]["notification_id"] == committed.pk
    assert deliver_due_events.apply().get() == {}


def test_the_sweep_runs_every_minute_as_a_periodic_task(db):
    migration = importlib.import_module("events.migrations.0002_sweep_schedule")
    migration.create_schedule(django_apps, schema_editor=None)

    sweep = PeriodicTask.objects.select_related("interval").get(name=SWEEP_NAME)
    assert (sweep.task, sweep.interval.every, sweep.interval.period) == (SWEEP_TASK, 1, "minutes")


def test_housekeeping_purges_old_events_every_subscription_got(db, receiver):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    deliver_reminders(3)
    delivery.deliver_due()
    waiting = Event.objects.order_by("pk").first()
    Delivery.objects.filter(event=waiting).update(status=Status.PENDING)

    assert services.purge_delivered(before=timezone.now() - timedelta(days=1)) == 0
    assert services.purge_delivered(before=timezone.now() + timedelta(seconds=1)) == 2

    assert list(Event.objects.all()) == [waiting]
    assert Delivery.objects.count() == 1


def test_a_second_receiver_down_does_not_hold_up_the_first(db, receiver):
    with WebhookReceiver(new_secret()) as other:
        subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
        subscribe(other, EventType.NOTIFICATION_DELIVERED)
        other.stop()
        deliver_reminders(3)

        assert delivery.deliver_due() == {"delivered": 3, "retrying": 3}

    assert len(receiver.accepted) == 3
    assert Subscription.objects.filter(consecutive_failures=3).count() == 1
