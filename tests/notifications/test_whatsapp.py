"""WhatsApp, the third channel: opt-in only (the consent history records how), its rules'
reminders planned for customers who opted in and their fallback (SMS or email) for those who did
not, sent through the real twilio client to the fake provider as approved content (a Content
SID per language, its variables filled from the reminder's values), tracked through the same
signed callbacks, stopped by STOP or BAJA on WhatsApp, falling back when it fails for good, and
reconciled after a crash without a second message."""

from datetime import date, timedelta

import pytest
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


def test_the_content_language_falls_back_from_a_regional_tag_to_its_base_language():
    from notifications.whatsapp import languages_to_try

    assert languages_to_try("es-mx") == ["es-mx", "es", "en"]
    assert languages_to_try("en") == ["en"]


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
