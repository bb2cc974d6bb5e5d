"""The per-channel rate limit, counted in the real Redis that every worker shares."""

import os
import socket
import uuid

import pytest

from notifications import dispatch, rate_limit
from tests.factories import queue_an_email_and_an_sms

pytestmark = pytest.mark.services
REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")


class FakeClock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self, start: float):
        self.now = start
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def limited(settings, require_service):
    settings.REDIS_URL = require_service("Redis", REDIS_TEST_URL)
    # A fresh second far from now, so no other run's counters are in the way.
    return FakeClock(start=4_000_000_000 + uuid.uuid4().int % 1_000_000 * 10 + 0.25)


def test_sends_within_the_limit_go_at_once(settings, limited):
    settings.SEND_RATE_LIMITS = {"sms": 3}
    for _ in range(3):
        rate_limit.acquire("sms", clock=limited, sleep=limited.sleep)
    assert limited.slept == []


def test_a_send_over_the_limit_waits_for_the_next_second(settings, limited):
    settings.SEND_RATE_LIMITS = {"sms": 3}
    for _ in range(7):
        rate_limit.acquire("sms", clock=limited, sleep=limited.sleep)
    # 3 in the first second, 3 in the next, the 7th in the third.
    assert limited.slept == [pytest.approx(0.75), pytest.approx(1.0)]


def test_each_channel_has_its_own_limit(settings, limited):
    settings.SEND_RATE_LIMITS = {"sms": 1, "email": 0}
    rate_limit.acquire("sms", clock=limited, sleep=limited.sleep)
    for _ in range(50):
        rate_limit.acquire("email", clock=limited, sleep=limited.sleep)
    assert limited.slept == []


@pytest.mark.django_db
def test_a_rate_limit_that_cannot_be_counted_defers_the_send_instead_of_failing_it(
    outbox, settings
):
    settings.SEND_RATE_LIMITS = {"email": 5, "sms": 5}
    with socket.socket() as probe:  # a local port nothing listens on
        probe.bind(("127.0.0.1", 0))
        settings.REDIS_URL = f"redis://127.0.0.1:{probe.getsockname()[1]}/0"
    email = queue_an_email_and_an_sms("pat@mail.example", "+14155550100")["email"]

    outcome = dispatch.send(email.pk)

    email.refresh_from_db()
    assert outcome.status == email.status == "deferred"
    assert "the send rate limit cannot be counted" in email.last_error
    assert not (outbox / "email").exists() or not any((outbox / "email").iterdir())
