"""An admin tunes a reminder rule in the browser, and the next scan follows it."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from notifications import planning
from notifications.models import Notification, ReminderRule
from tests.e2e.conftest import screenshot
from tests.factories import make_agent, make_customer, make_policy

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def admin_page(page, live_server, seeded_defaults):
    get_user_model().objects.create_superuser("boss", "boss@insurer.example", "s3cret-pass")
    page.goto(f"{live_server.url}/admin/login/")
    page.fill("#id_username", "boss")
    page.fill("#id_password", "s3cret-pass")
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")
    return page


def test_an_admin_changes_a_lead_time_and_the_next_scan_uses_it(admin_page, live_server):
    today = timezone.localdate()
    customer = make_customer("ana@mail.example", phone="+14155550142")
    make_policy("AUTO-10", customer=customer, agent=make_agent(), expiry_date=today + timedelta(10))
    rule = ReminderRule.objects.get(lead_days=7, channel="sms", product_line="")

    admin_page.goto(f"{live_server.url}/admin/notifications/reminderrule/{rule.pk}/change/")
    admin_page.fill("#id_lead_days", "10")
    screenshot(admin_page, "admin-rule")
    admin_page.click("input[name=_save]")
    admin_page.wait_for_url(f"{live_server.url}/admin/notifications/reminderrule/")
    assert "was changed successfully" in admin_page.text_content(".messagelist")
    screenshot(admin_page, "admin-rules")

    planning.plan_due(run_date=today)

    sms = Notification.objects.filter(policy__policy_number="AUTO-10", channel="sms")
    to_send = sms.exclude(status=Notification.Status.SKIPPED)  # older, missed reminders
    assert list(to_send.values_list("lead_days", flat=True)) == [10]


def test_an_admin_previews_a_rule_for_a_policy(admin_page, live_server):
    today = timezone.localdate()
    customer = make_customer("luz@mail.example", name="Luz Ortega", language="es")
    make_policy("HOME-3", customer=customer, agent=make_agent(), expiry_date=today + timedelta(30))
    rule = ReminderRule.objects.get(lead_days=30, channel="email", product_line="")

    admin_page.goto(f"{live_server.url}/admin/notifications/reminderrule/{rule.pk}/change/")
    admin_page.click("text=Preview & test")
    admin_page.fill("#id_policy_number", "HOME-3")
    admin_page.click("#preview-form input[type=submit]")

    assert "Su póliza de auto HOME-3 vence dentro de 30 días" in admin_page.text_content(
        ".preview-subject"
    )
    assert "In es: the customer's language, es" in admin_page.text_content(".preview-language")
    html = admin_page.frame_locator("iframe.preview-html")
    assert "Luz Ortega" in html.locator("body").text_content()
    screenshot(admin_page, "admin-preview")
