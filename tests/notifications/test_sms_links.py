"""SMS links that fit: a reminder SMS carries the renew link only where Twilio's Link
Shortening makes it short (a Messaging Service and TWILIO_LINK_SHORTENING_DOMAIN); otherwise it
is left out, as a full link costs a segment. Sent through the real twilio client to the fake
provider, which shortens links as Twilio does; previewed with the segment count both ways."""

import importlib
import re
from datetime import date

import pytest
from django.apps import apps
from django.urls import reverse

from notifications import previews, rendering
from notifications.channels.sms import sms_segments
from notifications.models import MessageTemplate, Notification, ReminderRule
from tests.factories import make_agent, make_customer, make_policy, queue_an_email_and_an_sms
from tests.fake_provider import DEFAULT_MESSAGING_SERVICE_SID, DEFAULT_SHORT_LINK_DOMAIN
from tests.notifications.conftest import TWILIO_TEST_FROM, send_until_settled

Status = Notification.Status
PHONE = "+14155550100"
PORTAL = "https://portal.insurer.example/renew/{policy_number}?line={product_line}"
RENEW_LINK = "https://portal.insurer.example/renew/P-7?line=auto"
SHORT_LINK = re.compile(rf"https://{re.escape(DEFAULT_SHORT_LINK_DOMAIN)}/[A-Za-z0-9]{{10}}")


@pytest.fixture
def renewal_portal(settings):
    settings.RENEW_URL_TEMPLATE = PORTAL


@pytest.fixture
def link_shortening(settings, providers):
    """SMS through the fake's Messaging Service, onboarded for Link Shortening."""
    settings.TWILIO_MESSAGING_SERVICE_SID = DEFAULT_MESSAGING_SERVICE_SID
    settings.TWILIO_LINK_SHORTENING_DOMAIN = DEFAULT_SHORT_LINK_DOMAIN
    return providers


@pytest.fixture
def sms_reminder(seeded_defaults, renewal_portal) -> Notification:
    """A queued SMS reminder of policy P-7 with the default SMS template."""
    notification = queue_an_email_and_an_sms("pat@mail.example", PHONE)["sms"]
    rule = notification.rule
    rule.template = MessageTemplate.objects.get(name="Renewal reminder (SMS)")
    rule.save(update_fields=["template"])
    return notification


# --- Sending ----------------------------------------------------------------------------------


def test_without_link_shortening_the_sms_goes_from_the_number_without_the_renew_link(
    providers, sms_reminder
):
    assert send_until_settled(sms_reminder.pk).status == Status.SENT

    (sent,) = providers.messages
    assert sent.data["From"] == TWILIO_TEST_FROM
    assert "MessagingServiceSid" not in sent.data
    assert "ShortenUrls" not in sent.data
    assert "http" not in sent.body
    assert "To renew, contact Agent agent@agency.example. Reply STOP to opt out." in sent.body


def test_a_messaging_service_without_a_shortening_domain_sends_as_before(
    providers, sms_reminder, settings
):
    settings.TWILIO_MESSAGING_SERVICE_SID = DEFAULT_MESSAGING_SERVICE_SID

    send_until_settled(sms_reminder.pk)

    (sent,) = providers.messages
    assert sent.data["MessagingServiceSid"] == DEFAULT_MESSAGING_SERVICE_SID
    assert "ShortenUrls" not in sent.data
    assert "From" not in sent.data
    assert "http" not in sent.body


def test_with_link_shortening_the_customer_gets_the_renew_link_as_a_short_link(
    link_shortening, sms_reminder
):
    assert send_until_settled(sms_reminder.pk).status == Status.SENT

    (sent,) = link_shortening.messages
    assert sent.data["MessagingServiceSid"] == DEFAULT_MESSAGING_SERVICE_SID
    assert sent.data["ShortenUrls"] == "true"
    assert "From" not in sent.data
    assert f"Renew at {RENEW_LINK} or contact Agent." in sent.data["Body"]  # as we sent it
    (short_link,) = SHORT_LINK.findall(sent.body)  # as the customer reads it
    assert link_shortening.short_links[short_link] == RENEW_LINK
    assert sent.body.endswith(f". Renew at {short_link} or contact Agent. Reply STOP to opt out.")
    assert sms_segments(sent.body) == 1


def test_a_mailto_renew_link_never_goes_in_an_sms(link_shortening, sms_reminder, settings):
    settings.RENEW_URL_TEMPLATE = "mailto:{agent_email}?subject=Renew%20policy%20{policy_number}"

    send_until_settled(sms_reminder.pk)

    (sent,) = link_shortening.messages
    assert "mailto:" not in sent.body
    assert "To renew, contact Agent agent@agency.example." in sent.body


# --- Rendering --------------------------------------------------------------------------------


@pytest.fixture
def policy(db, renewal_portal):
    customer = make_customer("pat@mail.example", name="Pat")
    return make_policy("P-7", customer=customer, agent=make_agent(), expiry_date=date(2026, 12, 2))


@pytest.fixture
def sms_template(seeded_defaults):
    return MessageTemplate.objects.get(name="Renewal reminder (SMS)")


@pytest.mark.parametrize("language", ["en", "es"])
def test_the_default_sms_carries_the_renew_link_only_when_links_are_shortened(
    policy, sms_template, language
):
    policy.customer.language = language

    with_link = rendering.preview(sms_template, policy, links_shortened=True).body
    without = rendering.preview(sms_template, policy, links_shortened=False).body

    assert f" {RENEW_LINK} " in with_link  # a space after it: no punctuation taken for the link
    assert "http" not in without
    assert "agent@agency.example" in without


def test_the_settings_decide_whether_an_sms_carries_the_link(policy, sms_template, settings):
    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_MESSAGING_SERVICE_SID = DEFAULT_MESSAGING_SERVICE_SID
    assert RENEW_LINK not in rendering.preview(sms_template, policy).body

    settings.TWILIO_LINK_SHORTENING_DOMAIN = DEFAULT_SHORT_LINK_DOMAIN
    assert RENEW_LINK in rendering.preview(sms_template, policy).body

    settings.SMS_BACKEND = "outbox"  # the local outbox shortens nothing
    assert RENEW_LINK not in rendering.preview(sms_template, policy).body


def test_an_email_always_carries_the_renew_link(policy, seeded_defaults):
    email_template = MessageTemplate.objects.get(name="Renewal reminder (email)")

    assert RENEW_LINK in rendering.preview(email_template, policy, links_shortened=False).body


MIGRATION = importlib.import_module("notifications.migrations.0020_sms_renew_link")
SHIPPED = importlib.import_module("notifications.migrations.0003_template_languages_and_html")


def test_the_migration_adds_the_link_to_the_shipped_sentence_wherever_it_still_stands(
    seeded_defaults,
):
    template = MessageTemplate.objects.get(name="Renewal reminder (SMS)")
    reworded_elsewhere = SHIPPED.SMS_BODY.replace("Reply STOP", "Text STOP")
    MessageTemplate.objects.filter(pk=template.pk).update(body=reworded_elsewhere)

    MIGRATION.add_renew_link(apps, schema_editor=None)
    MIGRATION.add_renew_link(apps, schema_editor=None)  # once only, however often it runs

    template.refresh_from_db()
    assert template.body.count("{% if renew_url %}Renew at {{ renew_url }}") == 1
    assert template.body.endswith("{% endif %} Text STOP to opt out.")
    MIGRATION.remove_renew_link(apps, schema_editor=None)
    template.refresh_from_db()
    assert template.body == reworded_elsewhere


def test_an_admins_own_sms_wording_is_not_rewritten_by_the_migration(seeded_defaults):
    template = MessageTemplate.objects.get(name="Renewal reminder (SMS)")
    template.body = "Our own words for {{ policy.policy_number }}"
    template.save()

    MIGRATION.add_renew_link(apps, schema_editor=None)

    template.refresh_from_db()
    assert template.body == "Our own words for {{ policy.policy_number }}"


# --- Preview ----------------------------------------------------------------------------------


def counts(preview: previews.Preview) -> tuple[int, int, int, bool]:
    length = preview.sms_length
    return (
        length.without_shortening,
        length.with_shortening,
        length.with_full_links,
        length.links_shortened,
    )


def test_the_preview_counts_the_segments_both_ways(policy, sms_template, settings):
    # A long portal link: at full length it costs a segment of its own.
    settings.RENEW_URL_TEMPLATE = PORTAL + "&source=sms-reminder&campaign=renewal-2026"

    preview = previews.preview(sms_template, policy)

    assert counts(preview) == (1, 1, 2, False)
    assert "http" not in preview.message.body  # sent now: no link
    assert preview.sms_segments == 1
    assert preview.sms_length.short_link_length == len("https://yourdomain.com/") + 10


def test_the_preview_counts_short_links_at_the_configured_domains_length(
    policy, sms_template, link_shortening
):
    preview = previews.preview(sms_template, policy)

    assert counts(preview)[3] is True
    assert RENEW_LINK in preview.message.body  # the test send hands Twilio the full link
    short_length = len(f"https://{DEFAULT_SHORT_LINK_DOMAIN}/") + 10
    assert preview.sms_length.short_link_length == short_length
    assert preview.sms_length.characters == len(preview.message.body) - len(RENEW_LINK) + (
        short_length
    )


def test_a_template_whose_link_pushes_it_over_a_segment_shows_it(policy, db):
    template = MessageTemplate.objects.create(
        name="Wordy SMS",
        channel="sms",
        body="x" * 120 + "{% if renew_url %} {{ renew_url }}{% endif %}",
    )

    preview = previews.preview(template, policy)

    # 120 + 1 + 33 = 154 characters shortened; 120 + 1 + 50 at full length.
    assert counts(preview) == (1, 1, 2, False)


def test_the_admin_preview_says_which_count_the_current_settings_use(
    admin_client, policy, sms_template, settings
):
    settings.RENEW_URL_TEMPLATE = PORTAL + "&source=sms-reminder&campaign=renewal-2026"
    rule = ReminderRule.objects.get(lead_days=7, channel="sms", product_line="")
    url = reverse("admin:notifications_reminderrule_preview", args=[rule.pk])

    page = admin_client.get(url, {"policy_number": "P-7"}).content.decode()
    assert "Without link shortening (the renew link left out): 1 segment &mdash;" in page
    assert "used now" in page.split("Without link shortening")[1].split("</li>")[0]
    assert "used now" not in page.split("With Twilio's link shortening")[1].split("</li>")[0]

    settings.SMS_BACKEND = "twilio"
    settings.TWILIO_MESSAGING_SERVICE_SID = DEFAULT_MESSAGING_SERVICE_SID
    settings.TWILIO_LINK_SHORTENING_DOMAIN = DEFAULT_SHORT_LINK_DOMAIN
    page = admin_client.get(url, {"policy_number": "P-7"}).content.decode()
    shortened = page.split("With Twilio's link shortening")[1].split("</li>")[0]
    short_length = len(f"https://{DEFAULT_SHORT_LINK_DOMAIN}/") + 10
    assert f"(each link {short_length} characters): 1 segment, where the full" in shortened
    assert "the full links would take 2" in shortened
    assert "used now" in shortened
