"""Logins are throttled by django-axes: after AXES_FAILURE_LIMIT failures an account name is
locked out whatever the address, and an address whatever the account name, on both login pages,
until AXES_COOLOFF_TIME has passed. Driven through the real login forms."""

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.test import Client

from tests.factories import make_agent

pytestmark = pytest.mark.django_db

PASSWORD = "right-horse-battery"
LOGIN_PAGES = ["/accounts/login/", "/admin/login/"]


@pytest.fixture
def alice(db):
    agent = make_agent("alice", "alice@agency.example")
    agent.user.set_password(PASSWORD)
    agent.user.is_staff = True  # so that /admin/login/ would let her in too
    agent.user.save()
    return agent.user


def log_in(client, username: str, password: str, page: str = "/accounts/login/"):
    return client.post(page, {"username": username, "password": password})


def logged_in(client) -> bool:
    return "_auth_user_id" in client.session


def assert_locked_out(response):
    assert response.status_code == 429
    assert response["Retry-After"] == "3600"
    text = " ".join(response.content.decode().split())
    assert "Logging in is paused" in text
    assert "Please try again in 1 hour." in text


@pytest.mark.parametrize("page", LOGIN_PAGES)
def test_the_right_password_after_ten_wrong_ones_is_refused_with_a_plain_page(client, alice, page):
    for attempt in range(9):
        response = log_in(client, "alice", f"guess-{attempt}", page)
        assert response.status_code == 200  # the form again, with its error

    assert_locked_out(log_in(client, "alice", "guess-9", page))
    assert_locked_out(log_in(client, "alice", PASSWORD, page))
    assert not logged_in(client)


def test_a_locked_account_is_locked_from_every_address_and_on_both_pages(alice):
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for attempt in range(10):
        log_in(attacker, "alice", f"guess-{attempt}")

    elsewhere = Client(REMOTE_ADDR="198.51.100.20")
    assert_locked_out(log_in(elsewhere, "alice", PASSWORD, "/admin/login/"))
    assert not logged_in(elsewhere)


def test_a_locked_address_is_locked_for_every_account(alice):
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for attempt in range(10):
        log_in(attacker, f"someone-{attempt}", "guess")  # never the same name twice

    assert_locked_out(log_in(attacker, "alice", PASSWORD))
    assert not logged_in(attacker)
    # Another address is not locked: alice logs in from it.
    colleague = Client(REMOTE_ADDR="198.51.100.20")
    assert log_in(colleague, "alice", PASSWORD).status_code == 302
    assert logged_in(colleague)


def test_logging_in_works_again_once_the_cool_off_has_passed(client, alice):
    for attempt in range(10):
        log_in(client, "alice", f"guess-{attempt}")
    assert_locked_out(log_in(client, "alice", PASSWORD))

    an_hour_ago = AccessAttempt.objects.get().attempt_time - timedelta(hours=1, minutes=1)
    AccessAttempt.objects.update(attempt_time=an_hour_ago)

    assert log_in(client, "alice", PASSWORD).status_code == 302
    assert logged_in(client)


def test_the_failure_limit_comes_from_settings(client, alice, settings):
    settings.AXES_FAILURE_LIMIT = 3
    for attempt in range(2):
        assert log_in(client, "alice", f"guess-{attempt}").status_code == 200

    assert_locked_out(log_in(client, "alice", "guess-2"))


def test_lockouts_are_listed_in_the_admin(client, alice):
    attacker = Client(REMOTE_ADDR="203.0.113.9")
    for attempt in range(10):
        log_in(attacker, "alice", f"guess-{attempt}")
    get_user_model().objects.create_superuser("boss", "boss@insurer.example", PASSWORD)
    client.force_login(get_user_model().objects.get(username="boss"))

    response = client.get("/admin/axes/accessattempt/")

    assert response.status_code == 200
    text = response.content.decode()
    assert "alice" in text
    assert "203.0.113.9" in text


def test_behind_the_trusted_proxy_the_client_is_the_address_the_proxy_added(alice, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    # Every request comes from the proxy; the attacker writes a header of its own in front.
    proxy = {"REMOTE_ADDR": "10.0.0.2", "HTTP_X_FORWARDED_PROTO": "https"}
    attacker = Client(**proxy)
    for attempt in range(10):
        forged = f"192.0.2.{attempt}, 203.0.113.9"  # the proxy appended the real address
        attacker.post(
            "/accounts/login/",
            {"username": f"someone-{attempt}", "password": "guess"},
            headers={"x-forwarded-for": forged},
        )

    locked = attacker.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD},
        headers={"x-forwarded-for": "192.0.2.77, 203.0.113.9"},
    )
    assert_locked_out(locked)
    # The proxy's own address is not what was locked: another client behind it logs in.
    colleague = Client(**proxy)
    response = colleague.post(
        "/accounts/login/",
        {"username": "alice", "password": PASSWORD},
        headers={"x-forwarded-for": "198.51.100.20"},
    )
    assert response.status_code == 302


@pytest.mark.parametrize("forwarded", ["", "not-an-address", "203.0.113.9, <script>"])
def test_a_malformed_forwarded_address_counts_the_proxys_own_and_breaks_nothing(
    alice, settings, forwarded
):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    client = Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_PROTO="https")

    response = client.post(
        "/accounts/login/",
        {"username": "alice", "password": "guess"},
        headers={"x-forwarded-for": forwarded},
    )

    assert response.status_code == 200
    assert AccessAttempt.objects.get().ip_address == "10.0.0.2"
