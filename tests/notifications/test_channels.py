"""The real channels: SMS through the twilio SDK and email through anymail's Postmark backend,
both talking HTTP to the local fake provider, which counts what it accepted."""

import pytest

from notifications import dispatch
from notifications.channels.sms import TwilioSmsChannel
from notifications.models import ConsentChange, MessageTemplate, Notification
from notifications.signals import send_attempted
from policies.models import Customer
from tests.factories import queue_an_email_and_an_sms
from tests.notifications.conftest import retry_for_hours, send_until_settled
from tests.workers import wait_for

Status = Notification.Status
PHONE = "+14155550100"
EMAIL = "pat@mail.example"


@pytest.fixture
def queued(db):
    """An email and an SMS reminder, planned and queued: {channel: Notification}."""
    return queue_an_email_and_an_sms(EMAIL, PHONE)


def send(notification) -> Notification:
    return send_until_settled(notification.pk)  # each retry's backoff passes at once


def test_an_sms_goes_out_through_twilio_once(providers, queued):
    notification = send(queued["sms"])

    assert notification.status == Status.SENT
    (message,) = providers.messages
    assert notification.provider_message_id == message.id
    assert message.id.startswith("SM")
    assert (message.recipient, message.sender) == (PHONE, "+15005550006")
    assert "P-7" in message.body
    assert f"notification={notification.pk}" in message.data["StatusCallback"]
    assert providers.accepted[PHONE] == 1


def test_an_email_goes_out_through_anymail_with_its_notification_id(providers, queued):
    notification = send(queued["email"])

    assert notification.status == Status.SENT
    (message,) = providers.messages
    assert notification.provider_message_id == message.id
    assert message.metadata["notification_id"] == str(notification.pk)
    assert "List-Unsubscribe" in message.headers
    assert "P-7" in message.subject
    assert providers.accepted[EMAIL] == 1


def test_an_email_carries_text_and_html_in_the_customers_language(
    providers, queued, seeded_defaults
):
    notification = queued["email"]
    notification.rule.template = MessageTemplate.objects.get(name="Renewal reminder (email)")
    notification.rule.save()
    Customer.objects.filter(pk=notification.customer_id).update(language="es")

    send(notification)

    (message,) = providers.messages
    assert message.subject == "Su póliza de auto P-7 vence dentro de 7 días"
    assert "Estimado/a" in message.body
    assert "<strong>P-7</strong>" in message.html


@pytest.mark.parametrize("transient", ["500", "503", "429", "reset"])
@pytest.mark.parametrize("channel", ["sms", "email"])
def test_a_transient_error_is_retried_and_sent_once(providers, queued, channel, transient):
    recipient = PHONE if channel == "sms" else EMAIL
    providers.script(recipient, [transient, "ok"])

    notification = send(queued[channel])

    assert notification.status == Status.SENT
    assert notification.attempts == 2
    assert providers.attempts[recipient] == 2
    assert providers.accepted[recipient] == 1


def test_twilio_rate_limit_code_20429_is_retried(providers, queued):
    providers.script(PHONE, ["429", "ok"])
    assert send(queued["sms"]).status == Status.SENT


def test_a_transient_error_that_persists_gives_up_as_failed_after_its_retry_budget(
    providers, queued, settings
):
    retry_for_hours(settings, 24)
    providers.always(PHONE, "500")

    # Each backoff, ten hours of the budget go by: tried at 0, 10 and 20 hours, given up at 30.
    notification = send_until_settled(queued["sms"].pk, hours_each_wait=10)

    assert notification.status == Status.FAILED
    assert notification.last_error.startswith("gave up after 24 h of provider errors: ")
    assert notification.failed_transiently
    assert providers.attempts[PHONE] == notification.attempts == 4
    assert providers.accepted[PHONE] == 0


@pytest.mark.parametrize(("outcome", "code"), [("invalid", "21211"), ("not_mobile", "21614")])
def test_an_invalid_number_fails_at_once_without_retry(providers, queued, outcome, code):
    providers.script(PHONE, [outcome])

    notification = send(queued["sms"])

    assert notification.status == Status.FAILED
    assert code in notification.last_error
    assert notification.attempts == 1
    assert providers.attempts[PHONE] == 1


def test_twilio_21610_fails_and_opts_the_customer_out_of_sms(providers, queued):
    providers.script(PHONE, ["unsubscribed"])

    notification = send(queued["sms"])

    assert notification.status == Status.FAILED
    customer = notification.customer
    customer.refresh_from_db()
    assert (customer.sms_consent, customer.email_consent) == (False, True)
    assert customer.consent_changes.get().source == ConsentChange.Source.CARRIER


def test_a_rejected_email_recipient_fails_at_once(providers, queued):
    providers.script(EMAIL, ["inactive"])

    notification = send(queued["email"])

    assert notification.status == Status.FAILED
    assert "recipient refused" in notification.last_error
    assert providers.attempts[EMAIL] == 1


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_a_send_that_timed_out_after_the_provider_accepted_it_is_not_sent_again(
    providers, queued, settings, channel
):
    """The provider took the message but its answer never came back: recovery asks the
    provider, finds the message and records it as sent, with the provider's id."""
    settings.TWILIO_TIMEOUT_SECONDS = settings.EMAIL_TIMEOUT = settings.ANYMAIL[
        "REQUESTS_TIMEOUT"
    ] = 1
    providers.hang_seconds = 3
    recipient = PHONE if channel == "sms" else EMAIL
    providers.script(recipient, ["timeout", "ok"])

    notification = send(queued[channel])

    assert notification.status == Status.SENT
    assert notification.attempts == 1
    assert providers.accepted[recipient] == 1
    (message,) = providers.messages
    assert notification.provider_message_id == message.id
    (event,) = notification.events.all()
    assert event.event_type == "reconciled"
    assert event.reason.startswith("recovered: already delivered to the provider")


@pytest.mark.django_db(transaction=True)
def test_twilio_status_callbacks_reach_the_webhook_and_mark_delivery(
    providers, queued, live_server, settings
):
    settings.PUBLIC_BASE_URL = live_server.url
    providers.status_callbacks = True

    notification = send(queued["sms"])
    assert notification.status in (Status.SENT, Status.DELIVERED)

    def delivered():
        return Notification.objects.filter(pk=notification.pk, status=Status.DELIVERED).exists()

    wait_for(delivered, timeout=15, explain=lambda: repr(providers.callbacks))
    assert all(callback.status == 204 for callback in providers.callbacks)
    kinds = list(notification.events.values_list("event_type", flat=True))
    assert kinds[-1] == "delivered"
    assert "sent" in kinds


@pytest.fixture
def sms_rule_falls_back(queued):
    from notifications.models import MessageTemplate

    rule = queued["sms"].rule
    rule.fallback_template = MessageTemplate.objects.filter(
        channel="email", kind="reminder"
    ).first()
    rule.full_clean()
    rule.save()
    # Only the SMS reminder exists: the email rule's own reminder is not part of this story.
    queued["email"].delete()
    return queued["sms"]


@pytest.mark.usefixtures("eager_tasks")
def test_a_permanently_failed_sms_falls_back_to_email(providers, sms_rule_falls_back):
    providers.script(PHONE, ["invalid"])

    failed = send(sms_rule_falls_back)

    assert failed.status == Status.FAILED
    fallback = Notification.objects.get(channel="email")
    assert fallback.status == Status.SENT
    assert fallback.fallback_for == failed
    assert providers.accepted[EMAIL] == 1
    (email,) = [m for m in providers.messages if m.channel == "email"]
    assert "P-7" in email.subject


@pytest.mark.usefixtures("eager_tasks")
def test_no_fallback_when_the_rule_has_none(providers, queued):
    queued["email"].delete()
    providers.script(PHONE, ["invalid"])

    send(queued["sms"])

    assert not Notification.objects.filter(channel="email").exists()
    assert providers.accepted[EMAIL] == 0


def test_a_fallback_template_must_be_an_email_one(queued):
    from django.core.exceptions import ValidationError

    rule = queued["sms"].rule
    rule.fallback_template = rule.template  # an SMS template
    with pytest.raises(ValidationError, match="email template"):
        rule.full_clean()


def test_an_unexpected_error_fails_the_reminder_instead_of_leaving_it_sending(
    providers, queued, monkeypatch
):
    def broken(channel, message):
        raise ValueError("a bug in the SMS channel")

    monkeypatch.setattr(TwilioSmsChannel, "send", broken)

    outcome = dispatch.send(queued["sms"].pk)

    assert outcome.status == Status.FAILED
    notification = Notification.objects.get(pk=queued["sms"].pk)
    assert notification.status == Status.FAILED
    assert "a bug in the SMS channel" in notification.last_error


def test_a_watcher_that_breaks_does_not_change_what_was_sent(providers, queued):
    def broken_receiver(**facts):
        raise RuntimeError("a metrics bug")

    send_attempted.connect(broken_receiver, dispatch_uid="test-broken-receiver")
    try:
        notification = send(queued["sms"])
    finally:
        send_attempted.disconnect(dispatch_uid="test-broken-receiver")

    assert notification.status == Status.SENT
    assert providers.accepted[PHONE] == 1
