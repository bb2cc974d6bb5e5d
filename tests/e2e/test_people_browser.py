"""The people's side in a real browser: an agent works through their own notices and renews a
policy; a customer opts out of SMS through the link in their email, and the next scan sends
them none."""

import re
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from notifications import dispatch, planning
from notifications.models import Notification
from policies.services import ensure_agent
from tests.e2e.conftest import screenshot
from tests.factories import make_customer, make_policy

pytestmark = pytest.mark.django_db(transaction=True)
Status = Notification.Status
PASSWORD = "correct-horse-9"


def agent_with_login(username: str, email: str):
    agent = ensure_agent(username=username, email=email, first_name=username.title())
    agent.user.set_password(PASSWORD)
    agent.user.save()
    return agent


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/")  # an anonymous visitor is sent to the login page
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#notices-table")


def rows(page, selector: str = "#notices-table tbody tr") -> list[dict]:
    return page.eval_on_selector_all(
        selector, "trs => trs.map(tr => ({...tr.dataset, text: tr.innerText}))"
    )


@pytest.fixture
def books(seeded_defaults):
    """Rosa's book (two policies) and Omar's (one), each with reminders planned today."""
    today = timezone.localdate()
    rosa = agent_with_login("rosa", "rosa@agency.example")
    omar = agent_with_login("omar", "omar@agency.example")
    for number, agent, days, name in [
        ("AUTO-1", rosa, 7, "Ana Ruiz"),
        ("HOME-2", rosa, 14, "Ben Cole"),
        ("OMAR-9", omar, 7, "Carla Diaz"),
    ]:
        customer = make_customer(f"{number.lower()}@mail.example", name=name)
        make_policy(number, customer=customer, agent=agent, expiry_date=today + timedelta(days))
    planning.plan_due(run_date=today)
    return rosa, omar


def test_an_agent_sees_only_their_notices_filters_them_and_renews_a_policy(
    page, live_server, books
):
    log_in(page, live_server, "rosa")

    assert {row["policy"] for row in rows(page)} == {"AUTO-1", "HOME-2"}
    screenshot(page, "workspace-notices")

    page.select_option("#id_channel", "sms")
    page.click("#filter-submit")
    page.wait_for_url(re.compile(r"channel=sms"))
    sms_rows = rows(page)
    assert sms_rows
    assert all("SMS" in row["text"] for row in sms_rows)

    page.click("#filter-reset")
    page.fill("#id_q", "Ben Cole")
    page.click("#filter-submit")
    page.wait_for_url(re.compile(r"q=Ben"))
    assert {row["policy"] for row in rows(page)} == {"HOME-2"}

    page.click("#notices-table a:text('HOME-2')")
    page.wait_for_selector("#timeline")
    timeline = rows(page, "#timeline .timeline-item")
    pending = [item["notification"] for item in timeline if item["status"] == Status.PLANNED]
    assert pending
    screenshot(page, "policy-timeline")

    renewed_to = timezone.localdate() + timedelta(days=14 + 365)
    page.fill("#id_new_expiry_date", renewed_to.isoformat())
    page.click("#renew-submit")
    page.wait_for_selector(f"#policy-expiry:text('{renewed_to.isoformat()}')")
    timeline = rows(page, "#timeline .timeline-item[data-notification]")
    statuses = {item["notification"]: item["status"] for item in timeline}
    assert {statuses[pk] for pk in pending} == {Status.CANCELLED}
    assert "Renewed to " + renewed_to.isoformat() in page.text_content("#outcomes")

    page.goto(f"{live_server.url}/")
    assert {row["policy"] for row in rows(page)} == {"AUTO-1"}  # HOME-2's reminders are gone
    assert not Notification.objects.filter(
        policy__policy_number="HOME-2", status__in=[Status.PLANNED, Status.QUEUED]
    ).exists()

    omar_policy = Notification.objects.filter(policy__policy_number="OMAR-9").first().policy_id
    response = page.goto(f"{live_server.url}/policies/{omar_policy}/")
    assert response.status == 404  # another agent's policy does not exist for Rosa

    page.goto(f"{live_server.url}/dashboard/")
    page.wait_for_selector("svg")
    screenshot(page, "workspace-dashboard")
    page.goto(f"{live_server.url}/expiries/")
    screenshot(page, "workspace-expiries")


def test_the_workspace_works_on_a_phone(phone_page, live_server, books):
    log_in(phone_page, live_server, "omar")

    assert {row["policy"] for row in rows(phone_page)} == {"OMAR-9"}
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1  # nothing runs off the side of the screen
    screenshot(phone_page, "workspace-notices-phone")


def test_a_customer_opts_out_of_sms_by_the_emailed_link_and_gets_no_sms(
    page, live_server, seeded_defaults, settings
):
    settings.PUBLIC_BASE_URL = live_server.url  # the links in the email point at this server
    today = timezone.localdate()
    customer = make_customer("dana@mail.example", name="Dana Fox", phone="+14155550177")
    agent = ensure_agent(username="lee", email="lee@agency.example")
    make_policy("LIFE-5", customer=customer, agent=agent, expiry_date=today + timedelta(30))

    send_everything_due(today)  # the 30-day email reminder
    (email,) = mail.outbox
    (link,) = re.findall(r"https?://\S+/preferences/\S+/", email.body)

    page.goto(link)
    screenshot(page, "customer-preferences")
    page.uncheck("#id_sms")
    page.click("#preferences-save")
    page.wait_for_selector("#preferences-saved")
    assert "You will not receive renewal reminders by SMS." in page.text_content("#summary-sms")
    assert "You will receive renewal reminders by email." in page.text_content("#summary-email")
    screenshot(page, "customer-preferences-saved")

    send_everything_due(today + timedelta(16))  # 14 days before expiry: SMS and email are due

    customer.refresh_from_db()
    assert (customer.sms_consent, customer.email_consent) == (False, True)
    assert not Notification.objects.filter(
        policy__policy_number="LIFE-5", channel="sms", status__in=[Status.SENT, Status.SENDING]
    ).exists()
    assert [m.to for m in mail.outbox] == [["dana@mail.example"], ["dana@mail.example"]]


def send_everything_due(run_date) -> None:
    """The daily cycle in this process: plan, claim, send each (the broker is tested apart)."""
    planning.plan_due(run_date=run_date)
    for notification_id in planning.claim_for_enqueue(limit=100, stalled_after=timedelta(1)):
        dispatch.send(notification_id)
