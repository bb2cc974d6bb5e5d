"""The outbox: an event is written in the transaction of the change it announces, for the
subscriptions that want it, and for nothing else."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from events import outbox
from events.models import Delivery, Event, EventType
from notifications import dispatch, lifecycle, preferences, tracking
from notifications.models import Channel, ConsentChange, DeliveryEvent, Notification
from policies.models import Customer, Policy
from tests.events.conftest import Boom, rolled_back, sent_reminders, subscribe
from tests.factories import make_agent, make_customer, make_policy, queue_an_email_and_an_sms

Status = Notification.Status
Source = ConsentChange.Source


def test_a_reminder_delivered_writes_one_event_with_plain_values(reminder, receiver):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)

    assert lifecycle.move(reminder.pk, Status.DELIVERED) == 1

    event = Event.objects.get()
    assert event.type == "notification.delivered"
    assert event.customer_id == reminder.customer_id
    reminder.refresh_from_db()
    assert event.data == {
        "notification_id": reminder.pk,
        "policy_id": reminder.policy_id,
        "policy_number": "P-100",
        "customer_id": reminder.customer_id,
        "channel": "email",
        "status": "delivered",
        "lead_days": 30,
        "expiry_date": reminder.expiry_date.isoformat(),
        "provider_message_id": "pm-1",
        "reason": "",
        "occurred_at": reminder.status_changed_at.isoformat(),
    }
    assert event.payload() == {
        "id": event.webhook_id,
        "type": "notification.delivered",
        "created_at": event.created_at.isoformat(),
        "sequence": event.pk,
        "data": event.data,
    }
    assert Delivery.objects.get().status == Delivery.Status.PENDING


def test_a_move_that_rolls_back_leaves_no_event(reminder, receiver):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)

    with pytest.raises(Boom):
        rolled_back(lambda: lifecycle.move(reminder.pk, Status.DELIVERED))

    assert not Event.objects.exists()
    assert not Delivery.objects.exists()


def test_a_receiver_that_fails_rolls_the_move_back(reminder, receiver, monkeypatch):
    """Signal.send, not send_robust: the move must not commit without its event."""
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)

    def broken(*args, **kwargs):
        raise Boom

    monkeypatch.setattr(outbox, "record", broken)

    with pytest.raises(Boom), transaction.atomic():
        lifecycle.move(reminder.pk, Status.DELIVERED)

    reminder.refresh_from_db()
    assert reminder.status == Status.SENT


def test_a_move_nobody_subscribed_to_stays_one_query_and_writes_nothing(reminder, receiver):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    outbox.subscribers(EventType.NOTIFICATION_DELIVERED)  # read once, as a running process has

    with CaptureQueriesContext(connection) as queries:
        assert lifecycle.move(reminder.pk, Status.FAILED, last_error="bounced at the gate") == 1

    assert len(queries) == 1  # the UPDATE
    assert not Event.objects.exists()


def test_an_inactive_subscription_gets_no_events(reminder, receiver):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED, active=False)

    lifecycle.move(reminder.pk, Status.DELIVERED)

    assert not Event.objects.exists()


def test_a_move_that_moved_nothing_writes_nothing(reminder, receiver):
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    lifecycle.move(reminder.pk, Status.DELIVERED)

    assert lifecycle.move(reminder.pk, Status.DELIVERED) == 0  # a replayed callback

    assert Event.objects.count() == 1


def test_each_subscription_that_wants_an_event_gets_its_delivery(reminder, receiver):
    first = subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    second = subscribe(receiver, *EventType.values)
    subscribe(receiver, EventType.NOTIFICATION_FAILED)

    lifecycle.move(reminder.pk, Status.DELIVERED)

    event = Event.objects.get()
    assert set(event.deliveries.values_list("subscription", flat=True)) == {first.pk, second.pk}


def test_a_batch_move_writes_one_event_per_notification_in_order(db, receiver):
    subscribe(receiver, EventType.NOTIFICATION_SENT)
    reminders = sent_reminders(3)
    Notification.objects.update(status=Status.SENDING)

    lifecycle.move([n.pk for n in reminders], Status.SENT)

    events = list(Event.objects.order_by("pk"))
    assert [event.data["notification_id"] for event in events] == [n.pk for n in reminders]
    assert len({event.webhook_id for event in events}) == 3


def test_a_customer_opting_out_and_back_in_is_told(db, receiver):
    subscribe(receiver, EventType.CUSTOMER_OPTED_OUT, EventType.CUSTOMER_OPTED_IN)
    customer = make_customer()
    customers = Customer.objects.filter(pk=customer.pk)

    preferences.change_consent(customers, channel=Channel.SMS, accepted=False, source=Source.ADMIN)
    preferences.change_consent(customers, channel=Channel.SMS, accepted=False, source=Source.ADMIN)
    preferences.change_consent(
        customers, channel=Channel.SMS, accepted=True, source=Source.SMS_REPLY
    )

    events = list(Event.objects.order_by("pk"))
    assert [(e.type, e.data["channel"], e.data["source"]) for e in events] == [
        ("customer.opted_out", "sms", "admin"),  # the second, changing nothing, told nothing
        ("customer.opted_in", "sms", "sms_reply"),
    ]
    assert {e.data["customer_id"] for e in events} == {customer.pk}


def test_a_consent_change_that_rolls_back_leaves_no_event(db, receiver):
    subscribe(receiver, EventType.CUSTOMER_OPTED_OUT)
    customer = make_customer()

    with pytest.raises(Boom):
        rolled_back(lambda: preferences.unsubscribe_from_email(customer))

    assert not Event.objects.exists()


# --- policy.unreachable ------------------------------------------------------------------------


def email_only_policy(number: str = "U-1", *, days: int = 20, **fields) -> Policy:
    customer = make_customer(f"{number.lower()}@mail.example", phone="", **fields)
    return make_policy(
        number,
        customer=customer,
        agent=make_agent(),
        expiry_date=timezone.localdate() + timedelta(days=days),
    )


def opt_out_of_email(customer: Customer, accepted: bool = False) -> None:
    preferences.change_consent(
        Customer.objects.filter(pk=customer.pk),
        channel=Channel.EMAIL,
        accepted=accepted,
        source=Source.PREFERENCES_PAGE,
    )


def test_a_customer_losing_their_last_channel_makes_their_policy_unreachable_once(db, receiver):
    subscribe(receiver, EventType.POLICY_UNREACHABLE)
    policy = email_only_policy()

    opt_out_of_email(policy.customer)
    opt_out_of_email(policy.customer, accepted=True)
    opt_out_of_email(policy.customer)  # the same expiry: told once

    event = Event.objects.get()
    assert event.type == "policy.unreachable"
    assert event.data["policy_number"] == "U-1"
    assert event.data["expiry_date"] == policy.expiry_date.isoformat()


def test_a_customer_with_a_channel_left_is_not_unreachable(db, receiver):
    subscribe(receiver, EventType.POLICY_UNREACHABLE)
    policy = email_only_policy()
    Customer.objects.filter(pk=policy.customer_id).update(phone="+14155550199")

    opt_out_of_email(policy.customer)

    assert not Event.objects.exists()


def test_an_expired_or_renewed_policy_is_not_unreachable(db, receiver):
    subscribe(receiver, EventType.POLICY_UNREACHABLE)
    expired = email_only_policy("U-OLD", days=-1)
    renewed = email_only_policy("U-RENEWED")
    Policy.objects.filter(pk=renewed.pk).update(status=Policy.Status.RENEWED)

    opt_out_of_email(expired.customer)
    opt_out_of_email(renewed.customer)

    assert not Event.objects.exists()


def test_a_bounce_that_leaves_no_channel_makes_the_policy_unreachable(db, receiver):
    subscribe(receiver, EventType.POLICY_UNREACHABLE)
    policy = email_only_policy()

    tracking.apply_to_customer(policy.customer_id, DeliveryEvent.Type.BOUNCED)
    tracking.apply_to_customer(policy.customer_id, DeliveryEvent.Type.BOUNCED)

    assert Event.objects.get().data["policy_id"] == policy.pk
    assert Customer.objects.get(pk=policy.customer_id).email_undeliverable


def test_reminders_sent_through_the_real_send_path_are_told(db, receiver, settings, tmp_path):
    subscribe(receiver, EventType.NOTIFICATION_SENT, EventType.NOTIFICATION_DELIVERED)
    settings.OUTBOX_DIR = tmp_path / "outbox"
    settings.EMAIL_BACKEND = "notifications.channels.outbox.EmailBackend"
    settings.SMS_BACKEND = "outbox"
    queued = queue_an_email_and_an_sms("sam@mail.example", "+14155550111")

    dispatch.send_many([n.pk for n in queued.values()])
    tracking.apply(
        tracking.TrackingEvent(
            provider="postmark",
            event_type=DeliveryEvent.Type.DELIVERED,
            event_id="pm-event-1",
            occurred_at=timezone.now(),
            notification_id=queued["email"].pk,
        )
    )

    told = list(Event.objects.order_by("pk").values_list("type", "data__channel"))
    assert sorted(told[:2]) == [("notification.sent", "email"), ("notification.sent", "sms")]
    assert told[2:] == [("notification.delivered", "email")]
