"""The dashboard's renewal rates: an agent's own book, every book with the by-agent table for a
manager, over the period asked for (30, 90 or 365 days of expiries), a bad period answered with
the default and a plain message, never an error."""

from datetime import timedelta

import pytest
from django.urls import reverse

from notifications import retention
from tests.factories import make_agent, make_staff
from tests.notifications.test_retention import TODAY, a_policy, lapse, renew, touch

pytestmark = pytest.mark.django_db


@pytest.fixture
def books():
    """Alice: renewed in time 10 days ago (an email), lapsed 20 days ago, renewed in time 200
    days ago; Bruno: renewed in time 5 days ago (an SMS)."""
    alice, bruno = make_agent("alice", "alice@agency.example"), make_agent("bruno", "b@a.example")
    on_time = a_policy(alice, "A-1", expires_in=-10)
    touch(on_time, "email", 14)
    renew(on_time, days_before_expiry=3)
    lapse(a_policy(alice, "A-2", expires_in=-20, product_line="home"))
    renew(a_policy(alice, "A-3", expires_in=-200), days_before_expiry=1)
    theirs = a_policy(bruno, "B-1", expires_in=-5, product_line="travel")
    touch(theirs, "sms", 7)
    renew(theirs, days_before_expiry=0)
    retention.refresh()
    return alice, bruno


def dashboard(client, user, **query):
    client.force_login(user)
    response = client.get(reverse("workspace:dashboard"), query)
    assert response.status_code == 200
    return response.content.decode()


def test_an_agent_sees_the_renewal_rate_of_their_own_book_only(client, books):
    alice, _ = books

    page = dashboard(client, alice.user)

    assert '<strong id="retention-rate">50%</strong>' in page
    assert "(1 of 2 decided, few)" in page
    assert 'data-row="Home"' in page
    assert 'data-row="Auto"' in page
    assert 'data-row="Travel"' not in page  # Bruno's
    assert 'id="retention-agent"' not in page
    assert 'data-row="Email only"' in page
    assert 'data-row="SMS or WhatsApp only"' not in page


def test_a_manager_sees_every_book_with_a_row_per_agent(client, books):
    manager = make_staff("boss", permissions=["policies.view_all_books"])

    page = dashboard(client, manager)

    assert '<strong id="retention-rate">67%</strong>' in page
    assert 'id="retention-agent"' in page
    assert 'data-row="Alice"' in page
    assert 'data-row="Bruno"' in page
    assert 'data-row="Travel"' in page


def test_a_longer_period_takes_the_older_terms(client, books):
    alice, _ = books

    page = dashboard(client, alice.user, period="365")

    assert "(2 of 3 decided, few)" in page
    assert f"from {(TODAY - timedelta(days=365)).isoformat()}" in page


@pytest.mark.parametrize("period", ["7", "abc", "-30", "90.5", "1" * 40])
def test_an_unknown_period_shows_the_default_with_a_plain_message(client, books, period):
    alice, _ = books

    page = dashboard(client, alice.user, period=period)

    assert 'id="retention-period-error"' in page
    assert "showing the last 90 days of expiries instead" in page
    assert '<option value="90" selected>' in page
    assert f"from {(TODAY - timedelta(days=90)).isoformat()}" in page


def test_no_period_is_the_default_without_a_message(client, books):
    alice, _ = books

    page = dashboard(client, alice.user)

    assert 'id="retention-period-error"' not in page
    assert f"from {(TODAY - timedelta(days=90)).isoformat()}" in page


def test_a_book_with_no_expired_term_says_so(client):
    page = dashboard(client, make_agent("carla", "carla@agency.example").user)

    assert '<strong id="retention-rate">n/a</strong>' in page
    assert "No term expired in this period." in page
