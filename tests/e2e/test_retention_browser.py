"""The dashboard's renewal rates in a real browser: an agent reads their book's rate, picks a
longer period, and reads the same on a phone."""

import pytest

from notifications import retention
from tests.e2e.conftest import screenshot
from tests.e2e.test_people_browser import PASSWORD, agent_with_login
from tests.notifications.test_retention import a_policy, lapse, renew, touch

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def book():
    """Rosa's terms: one renewed in time after an email and an SMS, one lapsed, and one renewed
    in time 200 days ago."""
    rosa = agent_with_login("rosa", "rosa@agency.example")
    in_time = a_policy(rosa, "AUTO-1", expires_in=-10)
    touch(in_time, "email", 14)
    touch(in_time, "sms", 7)
    renew(in_time, days_before_expiry=2)
    lapse(a_policy(rosa, "HOME-2", expires_in=-20, product_line="home"))
    renew(a_policy(rosa, "LIFE-3", expires_in=-200, product_line="life"), days_before_expiry=5)
    retention.refresh()
    return rosa


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/dashboard/")  # the login page first, then back here
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#retention")


def table(page, name: str) -> dict[str, str]:
    """Each row's first cell and its rate cell, from a retention table."""
    return dict(
        page.eval_on_selector_all(
            f"#retention-{name} tbody tr",
            "trs => trs.map(tr => [tr.dataset.row, tr.cells[3].innerText])",
        )
    )


def test_an_agent_reads_the_renewal_rate_and_picks_a_longer_period(page, live_server, book):
    log_in(page, live_server, "rosa")

    assert page.text_content("#retention-rate") == "50%"
    assert table(page, "product-line") == {"Auto": "100% (few)", "Home": "0% (few)"}
    channels = table(page, "channels")
    assert channels == {"Email and phone": "100% (few)", "None delivered": "0% (few)"}
    screenshot(page, "workspace-retention")

    assert page.input_value("#id_period") == "90"  # the default period
    page.select_option("#id_period", "365")
    page.click("#retention-period-submit")
    page.wait_for_url("**/dashboard/?period=365")

    assert page.text_content("#retention-rate") == "67%"
    assert "Life" in table(page, "product-line")


def test_the_renewal_rates_read_on_a_phone(phone_page, live_server, book):
    log_in(phone_page, live_server, "rosa")
    phone_page.goto(f"{live_server.url}/dashboard/?period=365")

    assert phone_page.text_content("#retention-rate") == "67%"
    assert phone_page.is_visible("#retention-lead-days")
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1  # nothing runs off the side of the screen
    screenshot(phone_page, "workspace-retention-phone")
