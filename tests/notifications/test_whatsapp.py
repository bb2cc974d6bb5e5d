"""WhatsApp, the third channel: opt-in only (the consent history records how), its rules'
reminders planned for customers who opted in and their fallback (SMS or email) for those who did
not, sent through the real twilio client to the fake provider as approved content (a Content
SID per language, its variables filled from the reminder's values), tracked through the same
signed callbacks, stopped by STOP or BAJA on WhatsApp, falling back when it fails for good, and
reconciled after a crash without a second message."""

from datetime import date, timedelta

import pytest

from notifications.models import (
    Channel,
    MessageTemplate,
    Notification,
    ReminderRule,
    WhatsAppContent,
)
from policies.models import Customer
from tests.factories import make_customer, make_policy, template_for
from tests.notifications.conftest import plan

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
