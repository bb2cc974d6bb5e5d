"""A worker reads what requests takes from the environment (proxies, NO_PROXY, a CA bundle,
.netrc) once per receiver URL, not at every POST; it still applies it to every POST."""

from urllib.parse import urlsplit

import pytest

from events import delivery
from events.models import EventType
from notifications import lifecycle as notification_lifecycle
from notifications.models import Notification
from tests.events.conftest import subscribe

UNREACHABLE = "http://receiver.renewly.invalid/renewly/events"  # only a proxy knows the way


@pytest.fixture
def environment(monkeypatch):
    """The process's environment, as a worker would start with it: read afresh."""
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    delivery._environment_settings.cache_clear()
    yield monkeypatch
    delivery._environment_settings.cache_clear()


def test_a_proxy_from_the_environment_carries_every_post(reminder, receiver, environment):
    # The receiver stands in for the proxy: it takes the request for the absolute URL.
    environment.setenv("HTTP_PROXY", f"http://{urlsplit(receiver.url).netloc}")
    subscription = subscribe(receiver, EventType.NOTIFICATION_DELIVERED)
    subscription.url = UNREACHABLE
    subscription.save()

    notification_lifecycle.move(reminder.pk, Notification.Status.DELIVERED)

    assert delivery.deliver_due() == {"delivered": 1}
    assert len(receiver.accepted) == 1


def test_no_proxy_from_the_environment_sends_straight_to_the_receiver(
    reminder, receiver, environment
):
    environment.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    environment.setenv("NO_PROXY", "127.0.0.1")
    subscribe(receiver, EventType.NOTIFICATION_DELIVERED)

    notification_lifecycle.move(reminder.pk, Notification.Status.DELIVERED)

    assert delivery.deliver_due() == {"delivered": 1}
    assert len(receiver.accepted) == 1
