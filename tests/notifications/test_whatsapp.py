"""WhatsApp, the third channel: opt-in only (the consent history records how), its rules'
reminders planned for customers who opted in and their fallback (SMS or email) for those who did
not, sent through the real twilio client to the fake provider as approved content (a Content
SID per language, its variables filled from the reminder's values), tracked through the same
signed callbacks, stopped by STOP or BAJA on WhatsApp, falling back when it fails for good, and
reconciled after a crash without a second message."""

from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from notifications.models import (
    Channel,
    MessageTemplate,
    Notification,
    ReminderRule,
    WhatsAppContent,
)
from notifications.rendering import date_text
from policies.models import Customer
from tests.factories import make_customer, make_policy, template_for
from tests.notifications.conftest import plan, send_until_settled

pytestmark = pytest.mark.django_db
Status = Notification.Status
RUN = date(2026, 6, 15)
EMAIL, SMS, WHATSAPP = Channel.EMAIL, Channel.SMS, Channel.WHATSAPP
PHONE = "+14155550100"


def whatsapp_rule(rules, lead_days: int = 7, *, fallback: str | None = None) -> ReminderRule:
    rule = rules(lead_days, WHATSAPP)
    if fallback:
        rule.fallback_template = template_for(fallback)
        rule.full_clean()
        rule.save()
    return rule


def customer_with(**fields) -> Customer:
    return make_customer(**{"email": "pat@mail.example", "phone": PHONE, **fields})


def planned(run) -> set[tuple[str, int, str]]:
    """(channel, lead days, rule's channel) of what a scan planned."""
    return {
        (n.channel, n.lead_days, n.rule.channel)
        for n in run.notifications.filter(status=Status.PLANNED).select_related("rule")
    }


# --- Planning: opt-in, and the fallback for those who did not opt in --------------------------


def test_a_customer_who_opted_in_gets_the_whatsapp_reminder(rules, agent):
    whatsapp_rule(rules, fallback=SMS)
    customer = customer_with(whatsapp_consent=True)
    make_policy("P-1", customer=customer, agent=agent, expiry_date=RUN + timedelta(7))

    assert planned(plan(RUN)) == {(WHATSAPP, 7, WHATSAPP)}


def test_whatsapp_is_opt_in_a_new_customer_gets_none_without_a_fallback(rules, agent):
    whatsapp_rule(rules)
    customer = customer_with()
    make_policy("P-1", customer=customer, agent=agent, expiry_date=RUN + timedelta(7))

    assert customer.whatsapp_consent is False
    assert planned(plan(RUN)) == set()


@pytest.mark.parametrize(
    ("customer_fields", "fallback", "expected"),
    [
        ({}, SMS, {(SMS, 7, WHATSAPP)}),
        ({}, EMAIL, {(EMAIL, 7, WHATSAPP)}),
        ({"whatsapp_consent": True, "phone": ""}, EMAIL, {(EMAIL, 7, WHATSAPP)}),
        ({"sms_consent": False}, SMS, set()),
    ],
    ids=["no_opt_in_to_sms", "no_opt_in_to_email", "no_number_to_email", "fallback_refused_too"],
)
def test_a_customer_whatsapp_cannot_reach_gets_the_rules_fallback_instead(
    rules, agent, customer_fields, fallback, expected
):
    whatsapp_rule(rules, fallback=fallback)
    customer = customer_with(**customer_fields)
    make_policy("P-1", customer=customer, agent=agent, expiry_date=RUN + timedelta(7))

    assert planned(plan(RUN)) == expected


def test_the_fallback_channels_own_rule_at_that_lead_time_comes_first(rules, agent):
    """One SMS at 7 days, not two: the SMS rule's own reminder, the WhatsApp rule's fallback
    only where the SMS rules leave a lead time free."""
    whatsapp_rule(rules, 7, fallback=SMS)
    whatsapp_rule(rules, 3, fallback=SMS)
    rules(7, SMS)
    customer = customer_with()
    make_policy("P-1", customer=customer, agent=agent, expiry_date=RUN + timedelta(7))
    make_policy("P-2", customer=customer, agent=agent, expiry_date=RUN + timedelta(3))

    run = plan(RUN)

    assert {
        (n.policy.policy_number, n.channel, n.lead_days, n.rule.channel, n.status)
        for n in run.notifications.all()
    } == {
        ("P-1", SMS, 7, SMS, Status.PLANNED),
        # The most urgent SMS of P-2 is the WhatsApp rule's 3-day fallback; the 7-day one, due
        # since before the first scan, is skipped as ever.
        ("P-2", SMS, 3, WHATSAPP, Status.PLANNED),
        ("P-2", SMS, 7, SMS, Status.SKIPPED),
    }


def test_a_fallback_planned_for_a_customer_without_whatsapp_reads_the_fallback_template(
    rules, agent
):
    from notifications.rendering import render

    whatsapp_rule(rules, fallback=SMS)
    customer = customer_with()
    make_policy("P-1", customer=customer, agent=agent, expiry_date=RUN + timedelta(7))

    (notification,) = plan(RUN).notifications.all()
    message = render(notification)

    assert message.body.startswith("Dear Pat Doe, P-1 expires on")
    assert message.content_sid == ""


def test_a_rules_fallback_is_sms_or_email_for_whatsapp_and_email_only_for_sms(rules):
    from django.core.exceptions import ValidationError

    rule = rules(7, WHATSAPP)
    rule.fallback_template = template_for(WHATSAPP, "another whatsapp template")
    with pytest.raises(ValidationError, match="SMS or email template"):
        rule.full_clean()
    email_rule = rules(7, EMAIL)
    email_rule.fallback_template = template_for(SMS)
    with pytest.raises(ValidationError, match="email rule has no fallback"):
        email_rule.full_clean()


# --- Consent: opt-in recorded wherever it comes from --------------------------------------------


def history(customer) -> list[tuple[str, bool, str, str]]:
    return [
        (c.channel, c.accepted, c.source, c.changed_by)
        for c in customer.consent_changes.order_by("id")
    ]


def test_opting_in_on_the_preferences_page_is_recorded(client):
    from notifications import preferences

    customer = customer_with()
    path = preferences.preferences_url(customer).removeprefix("http://127.0.0.1:8000")

    shown = client.get(path).content.decode()
    response = client.post(path, {"email": "on", "sms": "on", "whatsapp": "on"})

    assert 'type="checkbox" name="whatsapp" id="id_whatsapp">' in shown  # unticked until asked
    assert "You will receive renewal reminders on WhatsApp." in response.content.decode()
    customer.refresh_from_db()
    assert customer.whatsapp_consent is True
    assert history(customer) == [(WHATSAPP, True, "preferences_page", "")]


def test_a_spanish_customer_reads_the_whatsapp_choice_in_spanish(client):
    from notifications import preferences

    customer = customer_with(language="es")
    path = preferences.preferences_url(customer).removeprefix("http://127.0.0.1:8000")

    html = client.get(path).content.decode()

    assert "Avisos por WhatsApp" in html


def test_a_customer_added_in_the_admin_with_whatsapp_has_the_opt_in_recorded(admin_client):
    response = admin_client.post(
        "/admin/policies/customer/add/",
        {
            "name": "Ana Ruiz",
            "email": "ana@mail.example",
            "phone": "+34612345678",
            "language": "es",
            "timezone": "Europe/Madrid",
            "email_consent": "on",
            "sms_consent": "on",
            "whatsapp_consent": "on",
            "consent_changes-TOTAL_FORMS": "0",
            "consent_changes-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    customer = Customer.objects.get(email="ana@mail.example")
    assert customer.whatsapp_consent is True
    assert history(customer) == [(WHATSAPP, True, "admin", "")]


def test_whatsapp_content_needs_a_content_sid_twilio_would_take(db):
    from django.core.exceptions import ValidationError

    template = MessageTemplate.objects.create(name="wa", channel=WHATSAPP, body="Hi")
    content = WhatsAppContent(template=template, language="en", content_sid="HX123")
    with pytest.raises(ValidationError, match="HX followed by 32 hex digits"):
        content.full_clean()
    content.content_sid = "HX" + "0a" * 16
    content.variables = "{{ customer.name }}\n{{ customer.password }}"
    with pytest.raises(ValidationError, match="Variable \\{\\{2\\}\\}"):
        content.full_clean()


# --- Sending: approved content through the real twilio client --------------------------------

CONTENT_EN = "HX" + "e0" * 16
CONTENT_ES = "HX" + "5a" * 16
APPROVED = {
    CONTENT_EN: "Hi {{1}}, your {{2}} policy {{3}} expires on {{4}}. Renew: {{5}}",
    CONTENT_ES: "Hola {{1}}, su póliza de {{2}} {{3}} vence el {{4}}. Renovar: {{5}}",
}
VARIABLES = (
    "{{ customer.name }}\n{{ policy.product_line }}\n{{ policy.policy_number }}\n"
    "{{ expiry_date_text }}\n{{ renew_url }}"
)
WHATSAPP_ADDRESS = f"whatsapp:{PHONE}"


@pytest.fixture
def approved(providers):
    """The fake provider, with the content Meta approved for the account."""
    for content_sid, text in APPROVED.items():
        providers.approve_content(content_sid, text)
    return providers


def whatsapp_template(*languages: str) -> MessageTemplate:
    template = MessageTemplate.objects.create(
        name="Renewal reminder (WhatsApp)",
        channel=WHATSAPP,
        body="Hi {{ customer.name }}, your policy {{ policy.policy_number }} expires soon.",
    )
    sids = {"en": CONTENT_EN, "es": CONTENT_ES}
    for language in languages:
        WhatsAppContent.objects.create(
            template=template, language=language, content_sid=sids[language], variables=VARIABLES
        )
    return template


def queue_whatsapp(
    *, contents=("en", "es"), fallback: str | None = None, **customer_fields
) -> Notification:
    """One opted-in customer's policy, due for a 7-day WhatsApp reminder today, planned and
    queued as the fan-out leaves it."""
    from notifications import planning
    from tests.factories import make_agent, make_rule

    ReminderRule.objects.all().delete()
    rule = make_rule(7, WHATSAPP, template=whatsapp_template(*contents))
    if fallback:
        rule.fallback_template = template_for(fallback)
        rule.save()
    today = timezone.localdate()
    customer = customer_with(**{"whatsapp_consent": True, **customer_fields})
    make_policy("P-7", customer=customer, agent=make_agent(), expiry_date=today + timedelta(7))
    planning.plan_due(run_date=today)
    planning.claim_for_enqueue(limit=10, stalled_after=timedelta(hours=1))
    return Notification.objects.get(channel=WHATSAPP)


def test_a_whatsapp_reminder_goes_out_as_approved_content_once(approved):
    notification = send_until_settled(queue_whatsapp().pk)

    assert notification.status == Status.SENT
    (message,) = approved.messages
    assert message.channel == "whatsapp"
    assert notification.provider_message_id == message.id
    assert (message.recipient, message.sender) == (WHATSAPP_ADDRESS, "whatsapp:+14155238886")
    assert message.content_sid == CONTENT_EN
    expiry = notification.expiry_date
    assert message.content_variables == {
        "1": "Pat Doe",
        "2": "auto",
        "3": "P-7",
        "4": date_text(expiry, "en"),
        "5": "mailto:agent@agency.example?subject=Renew%20policy%20P-7",
    }
    assert message.body == (
        f"Hi Pat Doe, your auto policy P-7 expires on {date_text(expiry, 'en')}. "
        "Renew: mailto:agent@agency.example?subject=Renew%20policy%20P-7"
    )
    assert f"notification={notification.pk}" in message.data["StatusCallback"]
    assert approved.accepted[WHATSAPP_ADDRESS] == 1
    assert approved.accepted[PHONE] == 0  # not an SMS


def test_a_spanish_customer_gets_the_spanish_content_with_the_date_in_spanish(approved):
    notification = send_until_settled(queue_whatsapp(language="es").pk)

    (message,) = approved.messages
    assert message.content_sid == CONTENT_ES
    assert message.content_variables["4"] == date_text(notification.expiry_date, "es")
    assert " de " in message.content_variables["4"]
    assert message.body.startswith("Hola Pat Doe, su póliza de auto P-7 vence el ")


def test_a_language_without_its_own_content_gets_the_default_languages(approved):
    send_until_settled(queue_whatsapp(contents=("en",), language="es").pk)

    (message,) = approved.messages
    assert message.content_sid == CONTENT_EN


@pytest.mark.parametrize(
    ("language", "chosen"),
    [("es-MX", "es"), ("pt-BR", "pt-BR"), ("pt_br", "pt-BR"), ("pt-PT", "en"), ("de", "en")],
)
def test_the_content_follows_the_templates_language_fallbacks(db, language, chosen):
    from notifications.whatsapp import content_for

    template = MessageTemplate.objects.create(name="WA", channel="whatsapp", body="-")
    for number, tag in enumerate(("en", "es", "pt-BR")):
        WhatsAppContent.objects.create(
            template=template, language=tag, content_sid=f"HX{number:032x}"
        )

    assert content_for(template, language).language == chosen


@pytest.mark.parametrize("transient", ["503", "429", "reset"])
def test_a_transient_twilio_error_is_retried_and_the_message_sent_once(approved, transient):
    approved.script(WHATSAPP_ADDRESS, [transient, "ok"])

    notification = send_until_settled(queue_whatsapp().pk)

    assert notification.status == Status.SENT
    assert approved.attempts[WHATSAPP_ADDRESS] == 2
    assert approved.accepted[WHATSAPP_ADDRESS] == 1


def test_a_variable_left_empty_is_sent_as_a_dash_which_whatsapp_takes(approved):
    """WhatsApp refuses an empty variable (Twilio 21656, which the fake answers too)."""
    notification = queue_whatsapp()
    Customer.objects.filter(pk=notification.customer_id).update(name="   ")

    assert send_until_settled(notification.pk).status == Status.SENT
    (message,) = approved.messages
    assert message.content_variables["1"] == "-"


def test_the_fake_refuses_what_twilio_refuses(approved):
    client = approved.twilio_client()
    create = client.messages.create
    from twilio.base.exceptions import TwilioRestException

    cases = [
        ({"from_": "+15005550006", "content_sid": CONTENT_EN}, 21910),  # an SMS sender
        ({"from_": "whatsapp:+14155238886", "content_sid": "HX123"}, 21655),
        ({"from_": "whatsapp:+14155238886", "content_sid": "HX" + "0" * 32}, 21655),  # unknown
        (
            {
                "from_": "whatsapp:+14155238886",
                "content_sid": CONTENT_EN,
                "content_variables": '{"1": ""}',
            },
            21656,
        ),
    ]
    for arguments, code in cases:
        with pytest.raises(TwilioRestException) as refused:
            create(to=WHATSAPP_ADDRESS, **arguments)
        assert refused.value.code == code
    assert approved.accepted[WHATSAPP_ADDRESS] == 0


def test_free_text_on_whatsapp_is_accepted_then_fails_outside_the_24_hour_window(approved):
    sent = approved.twilio_client().messages.create(
        to=WHATSAPP_ADDRESS, from_="whatsapp:+14155238886", body="Hello"
    )

    fetched = approved.twilio_client().messages(sent.sid).fetch()
    assert (fetched.status, fetched.error_code) == ("failed", 63016)


def test_without_approved_content_it_fails_for_good_and_the_sms_fallback_goes(
    approved, eager_tasks
):
    notification = queue_whatsapp(contents=(), fallback=SMS)

    failed = send_until_settled(notification.pk)

    assert failed.status == Status.FAILED
    assert "no approved WhatsApp content" in failed.last_error
    assert approved.attempts[WHATSAPP_ADDRESS] == 0
    sms = Notification.objects.get(channel=SMS)
    assert (sms.status, sms.fallback_for_id) == (Status.SENT, failed.pk)
    (message,) = approved.messages
    assert (message.channel, message.recipient) == ("sms", PHONE)
    assert message.body.startswith("Dear Pat Doe, P-7 expires on")


def test_the_outbox_writes_the_content_and_variables(outbox):
    import json

    notification = send_until_settled(queue_whatsapp().pk)

    assert notification.status == Status.SENT
    written = json.loads((outbox / "whatsapp" / f"notification-{notification.pk}.json").read_text())
    assert (written["to"], written["content_sid"]) == (WHATSAPP_ADDRESS, CONTENT_EN)
    assert written["content_variables"]["3"] == "P-7"


# --- Delivery reports and replies, through the same signed Twilio webhooks ---------------------

TOKEN = "fake-twilio-auth-token"  # the fake provider's, set by the providers fixture
PUBLIC = "http://127.0.0.1:8000"


def signed_post(client, path: str, params: dict, *, query: str = "", signature=None):
    from twilio.request_validator import RequestValidator

    if signature is None:
        signature = RequestValidator(TOKEN).compute_signature(f"{PUBLIC}{path}{query}", params)
    return client.post(f"{path}{query}", params, headers={"X-Twilio-Signature": signature})


def status_callback(client, notification: Notification, status: str, **extra):
    params = {"MessageSid": notification.provider_message_id, "MessageStatus": status, **extra}
    return signed_post(
        client, "/webhooks/twilio/status/", params, query=f"?notification={notification.pk}"
    )


def reply(client, body: str, *, sender: str = WHATSAPP_ADDRESS, sid: str = "", **options):
    import uuid

    params = {"MessageSid": sid or "SM" + uuid.uuid4().hex, "From": sender, "Body": body}
    return signed_post(client, "/webhooks/twilio/inbound/", params, **options)


def test_a_signed_read_receipt_marks_the_reminder_delivered_and_read(approved, client):
    notification = send_until_settled(queue_whatsapp().pk)

    assert status_callback(client, notification, "read").status_code == 204
    assert status_callback(client, notification, "delivered").status_code == 204  # came late

    notification.refresh_from_db()
    assert notification.status == Status.DELIVERED
    assert notification.delivered_at is not None
    kinds = list(notification.events.values_list("event_type", flat=True))
    assert kinds == ["read", "delivered"]


def test_a_forged_whatsapp_callback_is_refused_and_changes_nothing(approved, client):
    notification = send_until_settled(queue_whatsapp().pk)

    response = signed_post(
        client,
        "/webhooks/twilio/status/",
        {"MessageSid": notification.provider_message_id, "MessageStatus": "read"},
        query=f"?notification={notification.pk}",
        signature="forged",
    )

    assert response.status_code == 403
    notification.refresh_from_db()
    assert notification.status == Status.SENT
    assert not notification.events.exists()


@pytest.mark.django_db(transaction=True)
def test_the_fake_providers_callbacks_reach_the_webhook_up_to_read(approved, live_server, settings):
    from tests.workers import wait_for

    settings.PUBLIC_BASE_URL = live_server.url
    approved.status_callbacks = True
    for content_sid, text in APPROVED.items():  # a transactional test flushed nothing of these
        approved.approve_content(content_sid, text)
    approved.script(WHATSAPP_ADDRESS, ["read"])

    notification = send_until_settled(queue_whatsapp().pk)

    def read():
        return notification.events.filter(event_type="read").exists()

    wait_for(read, timeout=15, explain=lambda: repr(approved.callbacks))
    assert all(callback.status == 204 for callback in approved.callbacks)
    assert [c.params["MessageStatus"] for c in approved.callbacks] == ["sent", "delivered", "read"]
    assert Notification.objects.get(pk=notification.pk).status == Status.DELIVERED


@pytest.mark.parametrize("word", ["STOP", "baja", " Parar "])
def test_stop_or_baja_on_whatsapp_opts_out_of_whatsapp_only(approved, client, word):
    notification = queue_whatsapp()

    response = reply(client, word)

    assert response.status_code == 200
    customer = Customer.objects.get(pk=notification.customer_id)
    assert (customer.whatsapp_consent, customer.sms_consent) == (False, True)
    assert history(customer) == [(WHATSAPP, False, "whatsapp_reply", "")]
    # The reminder already queued does not go.
    assert send_until_settled(notification.pk).status == Status.CANCELLED
    assert approved.attempts[WHATSAPP_ADDRESS] == 0


def test_start_on_whatsapp_is_the_customers_own_opt_in(approved, client):
    customer = customer_with()

    reply(client, "START")

    customer.refresh_from_db()
    assert customer.whatsapp_consent is True
    assert history(customer) == [(WHATSAPP, True, "whatsapp_reply", "")]


def test_baja_by_sms_is_no_sms_keyword_and_changes_nothing(approved, client):
    customer = customer_with(whatsapp_consent=True)

    reply(client, "BAJA", sender=PHONE)

    customer.refresh_from_db()
    assert (customer.whatsapp_consent, customer.sms_consent) == (True, True)


def test_an_unsigned_whatsapp_stop_changes_nothing(approved, client):
    customer = customer_with(whatsapp_consent=True)

    response = reply(client, "STOP", signature="")

    assert response.status_code == 403
    customer.refresh_from_db()
    assert customer.whatsapp_consent is True


# --- Falling back when WhatsApp fails for good -------------------------------------------------


@pytest.mark.parametrize(("fallback", "recipient"), [(SMS, PHONE), (EMAIL, "pat@mail.example")])
def test_a_failure_reported_by_callback_sends_the_fallback_once(
    approved, client, fallback, recipient
):
    """Not a WhatsApp user (63003) arrives in the status callback, after Twilio accepted the
    message: the WhatsApp reminder fails, and the rule's fallback goes with the next release."""
    from notifications import dispatch, planning

    approved.always(WHATSAPP_ADDRESS, "failed:63003")
    whatsapp = send_until_settled(queue_whatsapp(fallback=fallback).pk)
    assert whatsapp.status == Status.SENT  # accepted: the failure comes later

    status_callback(client, whatsapp, "failed", ErrorCode="63003")
    status_callback(client, whatsapp, "undelivered", ErrorCode="63003")  # a second report
    dispatch.send_many(planning.claim_for_enqueue(limit=10, stalled_after=timedelta(hours=1)))

    whatsapp.refresh_from_db()
    assert whatsapp.status == Status.FAILED
    assert "not on WhatsApp" in whatsapp.last_error
    replacement = Notification.objects.get(channel=fallback)
    assert (replacement.status, replacement.fallback_for_id) == (Status.SENT, whatsapp.pk)
    assert approved.accepted[recipient] == 1
    assert approved.accepted[WHATSAPP_ADDRESS] == 1


def test_a_refusal_at_send_time_sends_the_fallback_at_once(approved, eager_tasks):
    approved.script(WHATSAPP_ADDRESS, ["invalid"])  # Twilio 21211

    failed = send_until_settled(queue_whatsapp(fallback=SMS).pk)

    assert failed.status == Status.FAILED
    assert Notification.objects.get(channel=SMS, fallback_for=failed).status == Status.SENT
    assert approved.accepted[PHONE] == 1


def test_an_opt_out_after_planning_sends_the_fallback_instead(approved, client, eager_tasks):
    notification = queue_whatsapp(fallback=SMS)
    reply(client, "BAJA")

    cancelled = send_until_settled(notification.pk)

    assert cancelled.status == Status.CANCELLED
    assert cancelled.last_error == "customer has not opted in to WhatsApp"
    sms = Notification.objects.get(channel=SMS)
    assert (sms.status, sms.fallback_for_id) == (Status.SENT, cancelled.pk)
    assert approved.accepted == {PHONE: 1}


def test_no_fallback_when_the_customer_refused_the_fallbacks_channel_too(approved, client):
    approved.always(WHATSAPP_ADDRESS, "failed:63003")
    notification = queue_whatsapp(fallback=SMS, sms_consent=False)
    whatsapp = send_until_settled(notification.pk)

    status_callback(client, whatsapp, "failed", ErrorCode="63003")

    assert not Notification.objects.filter(channel=SMS).exists()


def test_a_failed_sms_callback_still_does_not_fall_back(providers, client):
    """SMS keeps falling back on a refusal at send time only, as before WhatsApp came."""
    from tests.factories import queue_an_email_and_an_sms

    queued = queue_an_email_and_an_sms("pat@mail.example", PHONE)
    rule = queued["sms"].rule
    rule.fallback_template = template_for(EMAIL)
    rule.save()
    queued["email"].delete()
    sms = send_until_settled(queued["sms"].pk)

    status_callback(client, sms, "undelivered", ErrorCode="30003")

    assert Notification.objects.get(pk=sms.pk).status == Status.FAILED
    assert not Notification.objects.filter(channel=EMAIL).exists()


# --- A worker killed mid-send: reconciled, never sent twice ------------------------------------


@pytest.mark.parametrize("reached_provider", [True, False])
def test_a_whatsapp_send_a_dead_worker_left_is_reconciled_without_a_second_message(
    approved, reached_provider
):
    from notifications import recovery
    from tests.notifications.test_recovery import died_while_sending, send_what_was_released

    notification = died_while_sending(queue_whatsapp(), reached_provider=reached_provider)

    found = recovery.FOUND if reached_provider else recovery.NOT_FOUND
    assert recovery.recover_abandoned() == {found: 1}
    send_what_was_released()

    notification.refresh_from_db()
    assert notification.status == Status.SENT
    assert approved.accepted[WHATSAPP_ADDRESS] == 1
    (message,) = approved.messages
    assert notification.provider_message_id == message.id


def test_another_policys_whatsapp_to_the_same_number_is_not_taken_for_this_one(approved):
    from notifications import recovery
    from notifications.channels import sending_through
    from notifications.rendering import render
    from tests.notifications.test_recovery import died_while_sending

    notification = died_while_sending(queue_whatsapp(), reached_provider=False)
    other = render(notification)
    other_variables = {**other.content_variables, "3": "P-8"}
    with sending_through(WHATSAPP) as sender:
        sender.send(
            type(other)(
                0, to=PHONE, body="", content_sid=CONTENT_EN, content_variables=other_variables
            )
        )

    assert recovery.recover_abandoned() == {recovery.NOT_FOUND: 1}


def test_an_admin_maps_a_whatsapp_template_to_its_approved_content(admin_client):
    template = whatsapp_template("en")

    page = admin_client.get(f"/admin/notifications/messagetemplate/{template.pk}/change/")

    assert page.status_code == 200
    assert CONTENT_EN in page.content.decode()


def test_an_approved_content_must_name_its_policy(db):
    template = MessageTemplate.objects.create(name="WA", channel="whatsapp", body="-")
    content = WhatsAppContent(
        template=template,
        language="en",
        content_sid=f"HX{1:032x}",
        variables="{{ customer.name }}\n{{ expiry_date_text }}",
    )

    with pytest.raises(ValidationError, match=r"policy\.policy_number"):
        content.full_clean()
    content.variables += "\n{{ policy.policy_number }}"
    content.full_clean()
