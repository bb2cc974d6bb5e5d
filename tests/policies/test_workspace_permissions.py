"""Every URL of the agents' workspace, tried as an outsider: another agent gets 404 for what is
not theirs (and sees none of it in lists, filters, searches and exports), an anonymous visitor
is sent to log in, and a user who is neither an agent nor staff gets 403 and no data. The URLs
come from the URLconf, so a new page cannot be left out."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import URLResolver, get_resolver, reverse
from django.utils import timezone

from notifications import tasks
from notifications.models import Notification
from tests.policies.workspace_data import PASSWORD, two_books


def workspace_patterns():
    for entry in get_resolver().url_patterns:
        if isinstance(entry, URLResolver) and entry.namespace == "workspace":
            return entry.url_patterns
    raise AssertionError("the workspace URLs are not included in config/urls.py")


def workspace_urls(objects: dict[str, int]) -> list[str]:
    """Every workspace URL, with each id in it naming the object of `objects`."""
    urls = []
    for pattern in workspace_patterns():
        names = list(pattern.pattern.converters)
        missing = [name for name in names if name not in objects]
        assert not missing, f"{pattern.name}: teach this test which object {missing} names"
        urls.append(reverse(f"workspace:{pattern.name}", kwargs={n: objects[n] for n in names}))
    return urls


def fetch(client, url: str, **data):
    """GET the URL; an action that only takes POST is POSTed instead."""
    response = client.get(url, data)
    if response.status_code == 405:
        response = client.post(url, data)
    return response


def body(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


@pytest.fixture
def books(db):
    return two_books(timezone.localdate())


@pytest.fixture
def no_sending(monkeypatch):
    sent = []
    monkeypatch.setattr(tasks.send_notification, "delay", sent.append)
    return sent


def objects_of(books, *, whose: str) -> dict[str, int]:
    policy = books.their_policy if whose == "theirs" else books.my_policy
    notice = books.their_notice if whose == "theirs" else books.my_notice
    return {"policy_id": policy.pk, "notification_id": notice.pk}


def test_the_workspace_has_the_pages_this_test_knows(books):
    names = {pattern.name for pattern in workspace_patterns()}
    assert {"notices", "notices-csv", "expiries", "dashboard", "policy", "renew", "retry"} <= names


def test_another_agents_objects_answer_404_on_every_url(client, books, no_sending):
    client.login(username="alice", password=PASSWORD)
    their_urls = [
        url
        for url, pattern in zip(
            workspace_urls(objects_of(books, whose="theirs")), workspace_patterns(), strict=True
        )
        if pattern.pattern.converters
    ]
    assert their_urls, "no URL names an object"
    for url in their_urls:
        response = fetch(client, url, new_expiry_date="2099-01-01")
        assert response.status_code == 404, url
    their_notice = Notification.objects.get(pk=books.their_notice.pk)
    assert their_notice.status == Notification.Status.FAILED
    books.their_policy.refresh_from_db()
    assert books.their_policy.expiry_date == timezone.localdate() + timedelta(days=25)
    assert no_sending == []


def test_an_agents_own_objects_answer_on_every_url(client, books, no_sending):
    """The other side of the 404s above: the same URLs work for their owner."""
    client.login(username="alice", password=PASSWORD)
    for url in workspace_urls(objects_of(books, whose="mine")):
        response = fetch(client, url)
        assert response.status_code in (200, 302), url


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"q": "BRUNO-1"},
        {"q": "Zimmer"},
        {"status": "failed"},
        {"channel": "email", "product_line": "auto"},
        {"due_from": "2000-01-01", "due_to": "2100-01-01"},
    ],
)
def test_lists_filters_searches_and_exports_show_none_of_another_agents_book(client, books, query):
    client.login(username="alice", password=PASSWORD)
    for url, pattern in zip(
        workspace_urls(objects_of(books, whose="mine")), workspace_patterns(), strict=True
    ):
        if pattern.pattern.converters:
            continue
        response = fetch(client, url, **query)
        assert response.status_code == 200, url
        content = body(response)
        # The search box echoes what was typed; a row, a link or a CSV line would be a leak.
        their_policy_url = reverse("workspace:policy", args=[books.their_policy.pk])
        for leak in (
            'data-policy="BRUNO-1"',
            ">BRUNO-1<",
            "BRUNO-1,",
            "Zed Zimmer",
            their_policy_url,
        ):
            assert leak not in content, (url, leak)


def test_anonymous_visitors_are_sent_to_log_in_from_every_url(client, books, no_sending):
    login = reverse("login")
    for url in workspace_urls(objects_of(books, whose="mine")):
        for response in (client.get(url), client.post(url)):
            assert response.status_code == 302, url
            assert response["Location"].startswith(f"{login}?next="), url
    assert no_sending == []


def test_a_user_who_is_no_agent_gets_403_and_no_data_on_every_url(client, books, no_sending):
    get_user_model().objects.create_user("visitor", password=PASSWORD)
    client.login(username="visitor", password=PASSWORD)
    for url in workspace_urls(objects_of(books, whose="mine")):
        for response in (client.get(url), client.post(url)):
            assert response.status_code == 403, url
            content = body(response)
            for secret in ("ALICE-1", "BRUNO-1", "Ann Alder", "Zed Zimmer"):
                assert secret not in content, url
    assert no_sending == []


def test_staff_see_every_agents_book(client, books):
    get_user_model().objects.create_user("boss", password=PASSWORD, is_staff=True)
    client.login(username="boss", password=PASSWORD)
    content = client.get(reverse("workspace:notices")).content.decode()
    assert "ALICE-1" in content
    assert "BRUNO-1" in content
    for policy in (books.my_policy, books.their_policy):
        response = client.get(reverse("workspace:policy", kwargs={"policy_id": policy.pk}))
        assert response.status_code == 200
