"""Provider callbacks through the real endpoints: Twilio's, signed with twilio's own
RequestValidator, and anymail's Postmark tracking webhook behind its basic auth."""

import base64
import json
import uuid
from datetime import timedelta
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.utils import timezone
from twilio.request_validator import RequestValidator

from notifications import dispatch, planning, preferences
from notifications.models import (
    ConsentChange,
    DeliveryEvent,
    InboundMessage,
    Notification,
    ReminderRule,
)
from notifications.planning import plan_due
from tests.factories import make_agent, make_customer, make_policy, make_rule

pytestmark = pytest.mark.django_db
Status = Notification.Status
TOKEN = "twilio-test-auth-token"
PUBLIC = "https://renewly.example"
STATUS_PATH = "/webhooks/twilio/status/"
INBOUND_PATH = "/webhooks/twilio/inbound/"


@pytest.fixture(autouse=True)
def twilio_settings(settings, tmp_path):
    settings.TWILIO_AUTH_TOKEN = TOKEN
    settings.PUBLIC_BASE_URL = PUBLIC
    settings.OUTBOX_DIR = tmp_path
    settings.SMS_BACKEND = "outbox"
    settings.EMAIL_BACKEND = "notifications.channels.outbox.EmailBackend"


@pytest.fixture
def sent():
    """One email and one SMS reminder, sent to the outbox: {channel: Notification}."""
    ReminderRule.objects.all().delete()
    make_rule(7, "email")
    make_rule(7, "sms")
    today = timezone.localdate()
    customer = make_customer("pat@mail.example", phone="+14155550100")
    make_policy("P-1", customer=customer, agent=make_agent(), expiry_date=today + timedelta(7))
    plan_due(run_date=today)
    for notification_id in planning.claim_for_enqueue(limit=10, stalled_after=timedelta(hours=1)):
        dispatch.send(notification_id)
    return {n.channel: n for n in Notification.objects.filter(status=Status.SENT)}


def twilio_post(client, path, params, *, token=TOKEN, signature=None, query=""):
    url = f"{PUBLIC}{path}{query}"
    if signature is None:
        signature = RequestValidator(token).compute_signature(url, params)
    headers = {"X-Twilio-Signature": signature} if signature else {}
    return client.post(f"{path}{query}", params, headers=headers)


def sms_reply(client, body, *, sid=None, sender="+14155550100", **options):
    """A customer's SMS as Twilio posts it, signed; each gets a MessageSid of its own."""
    params = {"MessageSid": sid or "SM" + uuid.uuid4().hex, "From": sender, "Body": body}
    return twilio_post(client, INBOUND_PATH, params, **options)


def status_callback(client, notification, status, **extra):
    params = {
        "MessageSid": notification.provider_message_id,
        "MessageStatus": status,
        "AccountSid": "AC" + "0" * 32,
        **extra,
    }
    return twilio_post(
        client, STATUS_PATH, params, query="?" + urlencode({"notification": notification.pk})
    )


def reload(notification):
    return Notification.objects.get(pk=notification.pk)


def test_a_signed_delivered_callback_marks_the_sms_delivered(client, sent):
    response = status_callback(client, sent["sms"], "delivered")

    assert response.status_code == 204
    notification = reload(sent["sms"])
    assert notification.status == Status.DELIVERED
    assert notification.delivered_at is not None
    (event,) = notification.events.all()
    assert (event.provider, event.event_type) == ("twilio", "delivered")
    assert event.raw_payload["MessageStatus"] == "delivered"


@pytest.mark.parametrize(
    "signature",
    [
        "",  # missing
        "bm90IGEgc2lnbmF0dXJl",  # made up
        RequestValidator("someone-elses-token").compute_signature(
            f"{PUBLIC}{STATUS_PATH}", {"MessageSid": "SMx", "MessageStatus": "delivered"}
        ),
    ],
    ids=["missing", "made-up", "wrong-token"],
)
def test_a_forged_status_callback_is_refused_and_records_nothing(client, sent, signature):
    params = {"MessageSid": sent["sms"].provider_message_id, "MessageStatus": "delivered"}
    response = twilio_post(client, STATUS_PATH, params, signature=signature)

    assert response.status_code == 403
    assert DeliveryEvent.objects.count() == 0
    assert reload(sent["sms"]).status == Status.SENT


def test_a_signature_for_other_parameters_is_refused(client, sent):
    genuine = {"MessageSid": sent["sms"].provider_message_id, "MessageStatus": "sent"}
    signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}{STATUS_PATH}", genuine)
    tampered = {**genuine, "MessageStatus": "delivered"}

    assert twilio_post(client, STATUS_PATH, tampered, signature=signature).status_code == 403
    assert DeliveryEvent.objects.count() == 0


def test_a_replayed_callback_is_recorded_once(client, sent):
    assert status_callback(client, sent["sms"], "delivered").status_code == 204
    assert status_callback(client, sent["sms"], "delivered").status_code == 204

    assert DeliveryEvent.objects.filter(notification=sent["sms"]).count() == 1


def test_a_late_sent_callback_never_moves_delivered_back(client, sent):
    status_callback(client, sent["sms"], "delivered")
    status_callback(client, sent["sms"], "sent")

    assert reload(sent["sms"]).status == Status.DELIVERED
    assert list(sent["sms"].events.values_list("event_type", flat=True)) == ["delivered", "sent"]


def test_an_undelivered_callback_fails_the_sms_with_the_reason_in_words(client, sent):
    status_callback(client, sent["sms"], "undelivered", ErrorCode="30003")

    notification = reload(sent["sms"])
    assert notification.status == Status.FAILED
    assert "handset is unreachable" in notification.last_error
    assert "30003" in notification.last_error
    assert notification.events.get().error_code == "30003"


def test_a_callback_with_no_message_status_is_a_bad_request(client, sent):
    response = twilio_post(client, STATUS_PATH, {"MessageSid": "SM123"})
    assert response.status_code == 400
    assert DeliveryEvent.objects.count() == 0


@pytest.mark.parametrize(
    "word", ["STOP", " stop ", "Unsubscribe", "CANCEL", "END", "QUIT", "STOPALL"]
)
def test_replying_stop_opts_the_customer_out_of_sms(client, sent, word):
    response = sms_reply(client, word)

    assert response.status_code == 200
    assert "<Response>" in response.content.decode()
    customer = sent["sms"].customer
    customer.refresh_from_db()
    assert customer.sms_consent is False
    assert customer.email_consent is True
    (change,) = ConsentChange.objects.filter(customer=customer)
    assert (change.channel, change.accepted, change.source) == ("sms", False, "sms_reply")


@pytest.mark.parametrize("word", ["START", "unstop"])
def test_replying_start_opts_the_customer_back_in(client, sent, word):
    sms_reply(client, "STOP")
    sms_reply(client, word)

    customer = sent["sms"].customer
    customer.refresh_from_db()
    assert customer.sms_consent is True
    history = ConsentChange.objects.filter(customer=customer).order_by("changed_at", "id")
    assert [change.accepted for change in history] == [False, True]


def test_an_unsigned_stop_changes_nothing(client, sent):
    response = sms_reply(client, "STOP", signature="")
    assert response.status_code == 403
    customer = sent["sms"].customer
    customer.refresh_from_db()
    assert customer.sms_consent is True


def sms_consent(sent) -> bool:
    customer = sent["sms"].customer
    customer.refresh_from_db()
    return customer.sms_consent


def test_a_replayed_start_after_a_stop_does_not_resubscribe(client, sent):
    captured = "SM" + "1" * 32
    sms_reply(client, "STOP")
    sms_reply(client, "START", sid=captured)
    sms_reply(client, "STOP")  # the customer changes their mind again

    # Someone who captured the signed START posts it again: Twilio's signature still holds.
    response = sms_reply(client, "START", sid=captured)

    assert response.status_code == 200
    assert sms_consent(sent) is False
    history = ConsentChange.objects.filter(customer=sent["sms"].customer)
    assert [change.accepted for change in history.order_by("changed_at", "id")] == [
        False,
        True,
        False,
    ]
    assert InboundMessage.objects.filter(message_sid=captured).count() == 1


def test_twilio_retrying_the_same_stop_records_it_once(client, sent):
    sms_reply(client, "STOP", sid="SM" + "2" * 32)
    sms_reply(client, "STOP", sid="SM" + "2" * 32)

    assert sms_consent(sent) is False
    (message,) = InboundMessage.objects.all()
    assert (message.keyword, message.customers_changed) == ("STOP", 1)
    assert ConsentChange.objects.count() == 1


def test_a_start_received_before_the_latest_consent_change_does_not_override_it(client, sent):
    # The customer turned SMS off on the preferences page while their START was on its way:
    # that change was recorded after the START was received.
    customer = sent["sms"].customer
    preferences.set_channels(
        customer, email=True, sms=False, source=ConsentChange.Source.PREFERENCES_PAGE
    )
    received_at = timezone.now() - timedelta(seconds=5)

    message = preferences.apply_sms_reply(
        message_sid="SM" + "3" * 32, sender=customer.phone, body="START", received_at=received_at
    )

    assert message.customers_changed == 0
    assert sms_consent(sent) is False
    assert ConsentChange.objects.filter(customer=customer).count() == 1


def test_a_start_received_after_the_latest_consent_change_applies(client, sent):
    sms_reply(client, "STOP")

    assert sms_reply(client, "START").status_code == 200
    assert sms_consent(sent) is True


@pytest.mark.parametrize("sid", ["", "SM" + "9" * 80], ids=["missing", "overlong"])
def test_a_reply_without_a_usable_message_sid_is_a_bad_request(client, sent, sid):
    params = {"From": "+14155550100", "Body": "STOP"}
    if sid:
        params["MessageSid"] = sid
    response = twilio_post(client, INBOUND_PATH, params)

    assert response.status_code == 400
    assert sms_consent(sent) is True
    assert InboundMessage.objects.count() == 0


def test_replies_are_listed_read_only_in_the_admin(client, admin_client, sent):
    sms_reply(client, "STOP", sid="SM" + "4" * 32)
    (message,) = InboundMessage.objects.all()

    listing = admin_client.get("/admin/notifications/inboundmessage/")
    assert listing.status_code == 200
    assert "SM" + "4" * 32 in listing.content.decode()
    assert admin_client.get("/admin/notifications/inboundmessage/add/").status_code == 403
    change_page = admin_client.get(f"/admin/notifications/inboundmessage/{message.pk}/change/")
    assert change_page.status_code == 200
    assert b'name="_save"' not in change_page.content
    delete = admin_client.post(
        f"/admin/notifications/inboundmessage/{message.pk}/delete/", {"post": "yes"}
    )
    assert delete.status_code == 403
    assert InboundMessage.objects.filter(pk=message.pk).exists()


def test_an_opted_out_customer_gets_no_more_sms(client, sent):
    sms_reply(client, "STOP")
    policy = sent["sms"].policy
    policy.expiry_date += timedelta(days=1)  # a new expiry: new reminders fall due
    policy.save()
    make_rule(8, "sms")
    make_rule(8, "email")

    plan_due(run_date=timezone.localdate())

    planned = Notification.objects.filter(status=Status.PLANNED)
    assert list(planned.values_list("channel", flat=True)) == ["email"]


# --- anymail (Postmark) ---------------------------------------------------------------------


def postmark_event(client, payload, *, secret=None):
    secret = secret or django_settings.ANYMAIL["WEBHOOK_SECRET"]
    auth = base64.b64encode(secret.encode()).decode()
    return client.post(
        "/anymail/postmark/tracking/",
        json.dumps(payload),
        content_type="application/json",
        headers={"Authorization": f"Basic {auth}"},
    )


def delivery(notification):
    return {
        "RecordType": "Delivery",
        "MessageID": "pm-0001",
        "Recipient": notification.customer.email,
        "DeliveredAt": "2026-03-10T08:00:05Z",
        "Metadata": {"notification_id": str(notification.pk)},
        "Details": "250 OK",
    }


def bounce(notification, *, bounce_type="HardBounce", bounce_id=4242):
    return {
        "RecordType": "Bounce",
        "ID": bounce_id,
        "Type": bounce_type,
        "MessageID": "pm-0001",
        "Email": notification.customer.email,
        "BouncedAt": "2026-03-10T08:00:09Z",
        "Description": "The server was unable to deliver your message",
        "Metadata": {"notification_id": str(notification.pk)},
    }


def test_a_postmark_delivery_marks_the_email_delivered(client, sent):
    response = postmark_event(client, delivery(sent["email"]))

    assert response.status_code == 200
    notification = reload(sent["email"])
    assert notification.status == Status.DELIVERED
    event = notification.events.get()
    assert (event.provider, event.event_type) == ("postmark", "delivered")
    assert event.raw_payload["RecordType"] == "Delivery"


def test_anymail_webhook_refuses_the_wrong_basic_auth(client, sent):
    response = postmark_event(client, delivery(sent["email"]), secret="someone:else")

    assert response.status_code in (400, 401, 403)
    assert DeliveryEvent.objects.count() == 0
    assert reload(sent["email"]).status == Status.SENT


def test_a_hard_bounce_marks_the_address_undeliverable_and_stops_email(client, sent):
    postmark_event(client, bounce(sent["email"]))

    notification = reload(sent["email"])
    assert notification.status == Status.BOUNCED
    assert "unable to deliver" in notification.last_error
    customer = notification.customer
    customer.refresh_from_db()
    assert customer.email_undeliverable is True


def test_a_replayed_bounce_is_recorded_once(client, sent):
    postmark_event(client, bounce(sent["email"]))
    postmark_event(client, bounce(sent["email"]))

    assert DeliveryEvent.objects.filter(event_type="bounced").count() == 1


def test_a_spam_complaint_opts_the_customer_out_of_email(client, sent):
    postmark_event(client, bounce(sent["email"], bounce_type="SpamComplaint", bounce_id=77))

    customer = sent["email"].customer
    customer.refresh_from_db()
    assert customer.email_consent is False
    assert DeliveryEvent.objects.get().event_type == "complained"
    (change,) = ConsentChange.objects.filter(customer=customer)
    assert (change.channel, change.accepted, change.source) == ("email", False, "complaint")


def test_a_delivery_after_a_bounce_does_not_undo_it(client, sent):
    postmark_event(client, bounce(sent["email"]))
    postmark_event(client, delivery(sent["email"]))

    assert reload(sent["email"]).status == Status.BOUNCED
