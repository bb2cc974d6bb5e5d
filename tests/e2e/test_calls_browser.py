"""The call list in a real browser: an agent sees who to call and why, taps the phone number,
records a call's outcome with one click and finds it in the policy's timeline; on a phone too."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import CallOutcome, Notification
from tests.e2e.conftest import screenshot
from tests.e2e.test_people_browser import agent_with_login, log_in
from tests.factories import make_customer, make_notification, make_policy

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def call_book(db):
    """Rosa's book: one policy whose reminder failed, one whose customer opted out of
    everything, one whose reminder was delivered (not to call), one expiring later."""
    today = timezone.localdate()
    rosa = agent_with_login("rosa", "rosa@agency.example")
    failed = make_policy(
        "AUTO-1",
        customer=make_customer("ana@mail.example", name="Ana Ruiz", phone="+14155550101"),
        agent=rosa,
        expiry_date=today + timedelta(days=2),
    )
    make_notification(
        failed,
        channel="sms",
        lead_days=7,
        status=Notification.Status.FAILED,
        last_error="Twilio error 30003: Unreachable destination handset",
    )
    make_policy(
        "HOME-2",
        customer=make_customer(
            "ben@mail.example", name="Ben Cole", email_consent=False, sms_consent=False
        ),
        agent=rosa,
        expiry_date=today + timedelta(days=5),
    )
    reached = make_policy(
        "LIFE-3",
        customer=make_customer("cy@mail.example", name="Cy Dunn"),
        agent=rosa,
        expiry_date=today + timedelta(days=4),
    )
    make_notification(reached, lead_days=7, status=Notification.Status.DELIVERED)
    make_policy(
        "AUTO-9",
        customer=make_customer("dee@mail.example", name="Dee Fox"),
        agent=rosa,
        expiry_date=today + timedelta(days=30),
    )
    return rosa


def call_rows(page) -> list[dict]:
    return page.eval_on_selector_all(
        "#call-list > li", "lis => lis.map(li => ({...li.dataset, text: li.innerText}))"
    )


def test_an_agent_calls_the_first_on_the_list_and_records_the_outcome_in_one_click(
    page, live_server, call_book
):
    log_in(page, live_server, "rosa")
    page.click("#nav-calls")
    page.wait_for_selector("#call-list")

    listed = call_rows(page)
    assert [row["policy"] for row in listed] == ["AUTO-1", "HOME-2"]
    assert "Last reminder failed: The handset is unreachable" in listed[0]["text"]
    assert "Can't be reached: customer opted out of email" in listed[1]["text"]
    assert page.get_attribute('li[data-policy="AUTO-1"] a.call-phone', "href") == (
        "tel:+14155550101"
    )
    screenshot(page, "calls-list")

    page.click('li[data-policy="AUTO-1"] button[value="will_renew"]')
    page.wait_for_selector("#messages")
    assert "AUTO-1: will renew recorded." in page.text_content("#messages")
    assert CallOutcome.objects.get().outcome == "will_renew"

    page.click('li[data-policy="AUTO-1"] a[href*="/policies/"]')
    page.wait_for_selector("#calls")
    assert "Call: Will renew" in page.text_content("#calls")
    screenshot(page, "calls-policy-timeline")

    page.click('#record-call button[value="declined"]')
    page.wait_for_selector("#messages")
    page.click("#nav-calls")
    page.wait_for_selector("#call-list")
    assert [row["policy"] for row in call_rows(page)] == ["HOME-2"]


def test_the_call_list_works_on_a_phone(phone_page, live_server, call_book):
    log_in(phone_page, live_server, "rosa")
    phone_page.click("#nav-calls")
    phone_page.wait_for_selector("#call-list")

    assert [row["policy"] for row in call_rows(phone_page)] == ["AUTO-1", "HOME-2"]
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1  # nothing runs off the side of the screen
    screenshot(phone_page, "calls-list-phone")

    phone_page.click('li[data-policy="HOME-2"] button[value="no_answer"]')
    phone_page.wait_for_selector("#messages")
    assert "HOME-2: no answer recorded." in phone_page.text_content("#messages")
    screenshot(phone_page, "calls-outcome-phone")
