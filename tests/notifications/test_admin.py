"""The admin made for the job: templates and rules previewed against a real policy, a test
reminder sent through the real channel, rules validated, the record read-only."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.core import mail
from django.urls import reverse
from django.utils import timezone

from notifications import preferences
from notifications.models import Notification, ReminderRule
from tests.factories import make_agent, make_customer, make_policy


@pytest.fixture
def policy(seeded_defaults):
    customer = make_customer("lucia@mail.example", name="Lucía Gómez", language="es")
    expiry = timezone.localdate() + timedelta(days=20)
    return make_policy(
        "HOME-7", customer=customer, agent=make_agent(), expiry_date=expiry, product_line="home"
    )


@pytest.fixture
def sms_rule(seeded_defaults):
    return ReminderRule.objects.get(lead_days=7, channel="sms", product_line="")


def preview_url(rule) -> str:
    return reverse("admin:notifications_reminderrule_preview", args=[rule.pk])


def test_a_rule_preview_renders_its_sms_for_a_chosen_policy(admin_client, policy, sms_rule):
    page = admin_client.get(preview_url(sms_rule), {"policy_number": "HOME-7"})

    assert page.status_code == 200
    html = page.content.decode()
    assert "Su poliza HOME-7 vence el" in html  # the customer's own language
    assert "SMS segment" in html


def test_a_preview_can_be_read_in_another_language(admin_client, policy, sms_rule):
    page = admin_client.get(preview_url(sms_rule), {"policy_number": "HOME-7", "language": "en"})

    assert "Your home policy HOME-7 expires" in page.content.decode()


def test_an_email_template_preview_shows_subject_text_and_html(admin_client, policy):
    rule = ReminderRule.objects.get(lead_days=14, channel="email", product_line="")
    page = admin_client.get(preview_url(rule), {"policy_number": "HOME-7", "language": "en"})

    html = page.content.decode()
    assert "Your home policy HOME-7 expires in 20 days" in html
    assert "srcdoc=" in html
    assert "&lt;strong&gt;HOME-7&lt;/strong&gt;" in html


def test_an_unknown_policy_is_named_in_the_error(admin_client, policy, sms_rule):
    page = admin_client.get(preview_url(sms_rule), {"policy_number": "NOPE-1"})

    assert "No policy numbered &#x27;NOPE-1&#x27;." in page.content.decode()


def test_a_test_email_goes_to_the_admins_own_address_and_is_logged(admin_client, policy):
    rule = ReminderRule.objects.get(lead_days=30, channel="email", product_line="")
    url = preview_url(rule) + "?policy_number=HOME-7"

    response = admin_client.post(url, {"to": "Admin@Example.com"}, follow=True)

    assert "Test reminder sent to Admin@Example.com" in response.content.decode()
    (sent,) = mail.outbox
    assert sent.to == ["admin@example.com"]  # pytest-django's admin user
    assert sent.subject.startswith("[Test] Su póliza de home HOME-7")
    assert not Notification.objects.exists()
    (entry,) = LogEntry.objects.filter(object_id=str(rule.pk))
    assert "Test reminder sent to Admin@Example.com" in entry.get_change_message()
    assert "HOME-7" in entry.get_change_message()


def test_a_test_email_to_someone_elses_address_is_refused(admin_client, policy):
    rule = ReminderRule.objects.get(lead_days=30, channel="email", product_line="")
    url = preview_url(rule) + "?policy_number=HOME-7"

    response = admin_client.post(url, {"to": "attacker@evil.example"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "A test reminder goes only to your own email address" in html
    assert "attacker@evil.example is neither" in html
    assert mail.outbox == []
    assert not LogEntry.objects.exists()


def test_a_test_sms_goes_through_twilio_to_a_listed_test_number(
    admin_client, policy, sms_rule, providers, settings
):
    settings.PREVIEW_TEST_RECIPIENTS = ["qa@insurer.example", "+14155550199"]
    url = preview_url(sms_rule) + "?policy_number=HOME-7"

    admin_client.post(url, {"to": "+1 415 555 0199"})

    assert providers.accepted == {"+14155550199": 1}
    assert providers.accepted[policy.customer.phone] == 0
    assert LogEntry.objects.filter(object_id=str(sms_rule.pk)).count() == 1


def test_a_test_sms_to_an_unlisted_number_is_refused(
    admin_client, policy, sms_rule, providers, settings
):
    settings.PREVIEW_TEST_RECIPIENTS = ["+14155550199"]
    url = preview_url(sms_rule) + "?policy_number=HOME-7"

    response = admin_client.post(url, {"to": "+1 415 555 0142"})

    assert "+14155550142 is neither" in response.content.decode()
    assert providers.accepted == {}


def test_a_test_to_an_invalid_number_is_refused_and_nothing_sent(admin_client, policy, sms_rule):
    url = preview_url(sms_rule) + "?policy_number=HOME-7"

    response = admin_client.post(url, {"to": "555-CALL-ME"})

    assert "is not a phone number" in response.content.decode()


def test_the_rule_action_opens_the_test_page(admin_client, sms_rule):
    changelist = reverse("admin:notifications_reminderrule_changelist")
    response = admin_client.post(
        changelist, {"action": "preview_and_send_test", "_selected_action": [sms_rule.pk]}
    )

    assert response.status_code == 302
    assert response["Location"] == preview_url(sms_rule)


def test_a_lead_time_out_of_range_is_refused_in_the_admin(admin_client, sms_rule):
    change = reverse("admin:notifications_reminderrule_change", args=[sms_rule.pk])
    form = {
        "lead_days": 400,
        "channel": "sms",
        "product_line": "",
        "template": sms_rule.template_id,
        "active": "on",
    }
    response = admin_client.post(change, form)

    assert response.status_code == 200  # the form again, with the error
    sms_rule.refresh_from_db()
    assert sms_rule.lead_days == 7


def test_an_email_rule_cannot_use_an_sms_template(admin_client, sms_rule):
    rule = ReminderRule.objects.get(lead_days=30, channel="email", product_line="")
    change = reverse("admin:notifications_reminderrule_change", args=[rule.pk])
    form = {"lead_days": 30, "channel": "email", "template": sms_rule.template_id, "active": "on"}

    response = admin_client.post(change, form)

    assert "Choose an Email template." in response.content.decode()
    rule.refresh_from_db()
    assert rule.template.channel == "email"


def test_notifications_and_delivery_events_are_read_only(admin_client, db):
    for model in ["notification", "deliveryevent", "reminderrun"]:
        page = admin_client.get(reverse(f"admin:notifications_{model}_changelist"))
        assert page.status_code == 200
        assert admin_client.get(reverse(f"admin:notifications_{model}_add")).status_code == 403


def test_a_customers_consent_history_shows_on_their_admin_page(admin_client, db):
    customer = make_customer("kim@mail.example", name="Kim Lee")
    preferences.set_channels(customer, email=True, sms=False, source="preferences_page")

    page = admin_client.get(reverse("admin:policies_customer_change", args=[customer.pk]))

    html = page.content.decode()
    assert "Consent changes" in html
    assert "Preferences page" in html


def test_consent_changed_in_the_admin_is_recorded_as_the_admins(admin_client, db):
    customer = make_customer("kai@mail.example", name="Kai Ng")
    change = reverse("admin:policies_customer_change", args=[customer.pk])
    form = {
        "name": "Kai Ng",
        "email": "kai@mail.example",
        "phone": customer.phone,
        "language": "en",
        "timezone": "Europe/Madrid",
        "email_consent": "on",
        # sms_consent unticked
        "consent_changes-TOTAL_FORMS": "0",
        "consent_changes-INITIAL_FORMS": "0",
    }

    response = admin_client.post(change, form)

    assert response.status_code == 302
    customer.refresh_from_db()
    assert (customer.email_consent, customer.sms_consent) == (True, False)
    (record,) = customer.consent_changes.all()
    assert (record.channel, record.accepted, record.source) == ("sms", False, "admin")
