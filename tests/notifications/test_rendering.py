"""What a customer reads: the rule's template in their language, with the policy's data, the
expiry date written the way their language writes dates, and the links they need."""

from datetime import date
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from notifications import rendering
from notifications.channels.sms import sms_segments
from notifications.models import MessageTemplate, Notification, TemplateTranslation
from tests.factories import make_agent, make_customer, make_policy

EXPIRY = date(2036, 12, 2)  # ahead of any day these tests run


@pytest.fixture
def policy(db):
    agent = make_agent("rosa", "rosa@agency.example")
    customer = make_customer("pat@mail.example", name="Pat O'Brien & Sons")
    return make_policy("AUTO-42", customer=customer, agent=agent, expiry_date=EXPIRY)


@pytest.fixture
def email_template(seeded_defaults):
    return MessageTemplate.objects.get(name="Renewal reminder (email)")


@pytest.fixture
def sms_template(seeded_defaults):
    return MessageTemplate.objects.get(name="Renewal reminder (SMS)")


def test_an_english_customer_reads_english_with_the_date_written_out(policy, email_template):
    message = rendering.preview(email_template, policy)

    assert message.subject.startswith("Your auto policy AUTO-42 expires in ")
    assert message.subject.endswith(" days")
    assert ", on December 2, 2036." in message.body
    assert "Dear Pat O'Brien & Sons," in message.body  # plain text is not HTML-escaped
    assert "Your agent, Rosa, can help: rosa@agency.example" in message.body


def test_a_spanish_customer_reads_spanish_with_a_spanish_date(policy, email_template):
    policy.customer.language = "es"
    message = rendering.preview(email_template, policy)

    assert message.subject.startswith("Su póliza de auto AUTO-42 vence dentro de ")
    assert message.subject.endswith(" días")
    assert ", el 2 de diciembre de 2036." in message.body
    assert "2 de diciembre de 2036" in message.html_body
    assert "Su agente, Rosa, puede ayudarle" in message.body


def test_a_language_without_a_translation_falls_back_to_the_default_text(policy, db):
    template = MessageTemplate.objects.create(
        name="English only", channel="email", subject="Renew {{ policy.policy_number }}", body="B"
    )
    policy.customer.language = "es"

    assert rendering.preview(template, policy).subject == "Renew AUTO-42"

    TemplateTranslation.objects.create(
        template=template, language="es", subject="Renueve {{ policy.policy_number }}", body="C"
    )
    template = MessageTemplate.objects.prefetch_related("translations").get(pk=template.pk)
    assert rendering.preview(template, policy).subject == "Renueve AUTO-42"


def test_the_html_body_escapes_the_customers_data(policy, email_template):
    policy.customer.name = "<script>alert(1)</script>"
    message = rendering.preview(email_template, policy)

    assert "<script>" not in message.html_body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in message.html_body
    assert "<script>alert(1)</script>" in message.body


def test_the_renew_link_writes_to_the_agent_unless_a_portal_is_configured(
    policy, email_template, settings
):
    message = rendering.preview(email_template, policy)
    assert "mailto:rosa@agency.example?subject=Renew%20policy%20AUTO-42" in message.body

    settings.RENEW_URL_TEMPLATE = "https://portal.insurer.example/renew/{policy_number}"
    message = rendering.preview(email_template, policy)
    assert "https://portal.insurer.example/renew/AUTO-42" in message.body
    assert 'href="https://portal.insurer.example/renew/AUTO-42"' in message.html_body


def test_every_email_links_to_the_customers_preferences_page(policy, email_template, client):
    message = rendering.compose(
        email_template,
        policy=policy,
        customer=policy.customer,
        expiry_date=EXPIRY,
        lead_days=14,
        notification_id=1,
    )
    (link,) = [word for word in message.body.split() if "/preferences/" in word]

    assert client.get(urlsplit(link).path).status_code == 200
    assert f'href="{link}"' in message.html_body
    assert "/unsubscribe/" in message.headers["List-Unsubscribe"]


def test_a_preview_links_to_no_customers_page(policy, email_template, client):
    message = rendering.preview(email_template, policy)
    (link,) = [word for word in message.body.split() if "/preferences/" in word]

    assert client.get(urlsplit(link).path).status_code == 400  # no customer's key
    assert "/unsubscribe/preview/" in message.headers["List-Unsubscribe"]


def test_days_left_count_from_the_customers_own_today(policy, email_template):
    """Kiritimati (UTC+14) is always a day or two ahead of Pago Pago (UTC-11)."""
    policy.customer.timezone = "Pacific/Kiritimati"
    ahead = rendering.values_for(policy, policy.customer, EXPIRY, 7)["days_left"]
    policy.customer.timezone = "Pacific/Pago_Pago"
    behind = rendering.values_for(policy, policy.customer, EXPIRY, 7)["days_left"]

    assert ahead < behind
    today_there = timezone.localdate(timezone=policy.customer.timezone)
    assert behind == (EXPIRY - today_there).days


def test_the_sms_is_short_and_in_the_customers_language(policy, sms_template):
    policy.customer.language = "es"
    message = rendering.preview(sms_template, policy)

    assert message.subject == message.html_body == ""
    assert message.to == policy.customer.phone
    assert message.body.startswith("Su poliza AUTO-42 vence el 2 de diciembre de 2036.")
    assert sms_segments(message.body) == 1


def test_a_preview_saves_nothing(policy, email_template):
    message = rendering.preview(email_template, policy, lead_days=14)

    assert message.notification_id == 0
    assert not Notification.objects.exists()
