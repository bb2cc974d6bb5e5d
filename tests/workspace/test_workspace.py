"""The agents' workspace: what an agent sees of their book, and what they can do with it."""

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from notifications import tasks
from notifications.explanations import explain_error, explain_event
from notifications.models import DeliveryEvent, Notification
from policies.models import Policy
from tests.factories import (
    PASSWORD,
    make_customer,
    make_event,
    make_notification,
    make_policy,
    two_books,
)

Status = Notification.Status
TODAY = timezone.localdate()


@pytest.fixture
def books(db):
    return two_books(TODAY)


@pytest.fixture
def alice(client, books):
    client.login(username="alice", password=PASSWORD)
    return books.mine


@pytest.fixture
def enqueued(monkeypatch):
    """The ids handed to the send task, instead of a broker."""
    sent = []
    monkeypatch.setattr(tasks.send_batch, "delay", sent.extend)
    return sent


def rows_of(response) -> list[str]:
    """The policy numbers of the table's rows, in order."""
    content = response.content.decode()
    return [part.split('"', 1)[0] for part in content.split('data-policy="')[1:]]


def notices_page(client, **query):
    return client.get(reverse("workspace:notices"), query)


def a_policy(alice, number: str, *, days: int = 30, name: str = "Pat Doe", **fields) -> Policy:
    return make_policy(
        number,
        customer=make_customer(f"{number.lower()}@mail.example", name=name),
        agent=alice,
        expiry_date=TODAY + timedelta(days=days),
        **fields,
    )


# --- Logging in -----------------------------------------------------------------------------


def test_login_page_has_the_fields_a_browser_test_needs(client, db):
    content = client.get(reverse("login")).content.decode()
    for marker in (
        'id="login-form"',
        'id="id_username"',
        'id="id_password"',
        "csrfmiddlewaretoken",
    ):
        assert marker in content


def test_an_agent_logs_in_and_lands_on_their_workspace(client, books):
    response = client.post(reverse("login"), {"username": "alice", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == reverse("workspace:notices")
    page = client.get(response["Location"])
    assert "ALICE-1" in rows_of(page)
    assert 'id="nav-logout"' in page.content.decode()


def test_the_home_page_sends_an_anonymous_visitor_to_log_in(client, db):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('login')}?next=/"


def test_logging_out_ends_the_session(client, alice):
    client.post(reverse("logout"))
    assert client.get("/").status_code == 302


# --- Pending notices ------------------------------------------------------------------------


def test_pending_notices_are_the_unsent_and_the_failed(client, alice):
    for number, status in [
        ("P-PLANNED", Status.PLANNED),
        ("P-QUEUED", Status.QUEUED),
        ("P-SENDING", Status.SENDING),
        ("P-DEFERRED", Status.DEFERRED),
        ("P-SENT", Status.SENT),
        ("P-DELIVERED", Status.DELIVERED),
        ("P-CANCELLED", Status.CANCELLED),
        ("P-SKIPPED", Status.SKIPPED),
        ("P-BOUNCED", Status.BOUNCED),
    ]:
        make_notification(a_policy(alice, number), status=status)
    shown = set(rows_of(notices_page(client)))
    assert shown == {"ALICE-1", "P-PLANNED", "P-QUEUED", "P-SENDING", "P-DEFERRED"}


def test_notices_come_soonest_due_first(client, alice):
    make_notification(a_policy(alice, "P-LATE", days=60), lead_days=7)
    make_notification(a_policy(alice, "P-SOON", days=10), lead_days=7)
    assert rows_of(notices_page(client)) == ["P-SOON", "ALICE-1", "P-LATE"]


def test_filters_narrow_the_notices(client, alice):
    home = a_policy(alice, "P-HOME", days=40, product_line="home")
    make_notification(home, channel="sms", lead_days=14, status=Status.DEFERRED)
    make_notification(home, channel="email", lead_days=30)
    make_notification(a_policy(alice, "P-FAR", days=200), channel="email", lead_days=30)

    assert rows_of(notices_page(client, channel="sms")) == ["P-HOME"]
    assert rows_of(notices_page(client, status="deferred")) == ["P-HOME"]
    assert rows_of(notices_page(client, status="failed")) == ["ALICE-1"]
    assert rows_of(notices_page(client, product_line="home")) == ["P-HOME", "P-HOME"]
    due_by = (TODAY + timedelta(days=60)).isoformat()
    assert set(rows_of(notices_page(client, due_to=due_by))) == {"ALICE-1", "P-HOME"}
    due_from = (TODAY + timedelta(days=100)).isoformat()
    assert rows_of(notices_page(client, due_from=due_from)) == ["P-FAR"]
    assert rows_of(notices_page(client, channel="email", product_line="home")) == ["P-HOME"]


def test_a_filter_that_does_not_parse_narrows_nothing(client, alice):
    response = notices_page(client, due_from="not a date", channel="fax")
    assert response.status_code == 200
    assert rows_of(response) == ["ALICE-1"]


def test_search_finds_a_policy_number_or_a_customer_name(client, alice):
    make_notification(a_policy(alice, "HX-77", name="Maria Lopez"))
    make_notification(a_policy(alice, "HX-78", name="John Smith"))
    assert rows_of(notices_page(client, q="hx-77")) == ["HX-77"]
    assert rows_of(notices_page(client, q="lopez")) == ["HX-77"]
    assert sorted(rows_of(notices_page(client, q="HX-7"))) == ["HX-77", "HX-78"]
    assert rows_of(notices_page(client, q="nobody")) == []


def test_pages_walk_forward_and_back_without_gaps_or_repeats(
    client, alice, django_assert_max_num_queries
):
    for number in range(119):
        make_notification(a_policy(alice, f"PG-{number:03d}", days=30 + number % 7))
    seen, cursors = [], []
    response = notices_page(client, channel="email")
    while True:
        seen.append(rows_of(response))
        page = response.context["page"]
        if not page.next_cursor:
            break
        cursors.append(page.next_cursor)
        with django_assert_max_num_queries(8):  # a deep page costs what the first does
            response = notices_page(client, channel="email", after=page.next_cursor)
    assert [len(rows) for rows in seen] == [50, 50, 20]
    flat = [number for rows in seen for number in rows]
    assert len(flat) == len(set(flat)) == 120
    # ... and back from the last page to the second, by its "previous" cursor.
    back = notices_page(client, channel="email", before=response.context["page"].previous_cursor)
    assert rows_of(back) == seen[1]
    assert 'id="page-next"' in back.content.decode()
    # The pager's links keep the filters.
    assert "channel=email" in back.content.decode().split('id="page-next"')[0].rsplit("href", 1)[1]


# --- Upcoming expiries ----------------------------------------------------------------------


def test_upcoming_expiries_show_the_next_90_days_with_what_was_sent(client, alice):
    soon = a_policy(alice, "P-SOON", days=5)
    make_notification(soon, channel="sms", lead_days=7, status=Status.DELIVERED)
    a_policy(alice, "P-LATER", days=120)
    a_policy(alice, "P-GONE", days=10, status=Policy.Status.CANCELLED)
    response = client.get(reverse("workspace:expiries"))
    assert rows_of(response) == ["P-SOON", "ALICE-1"]
    assert "SMS 7d · Delivered" in response.content.decode()
    assert rows_of(client.get(reverse("workspace:expiries"), {"q": "soon"})) == ["P-SOON"]


# --- A policy's timeline --------------------------------------------------------------------


def test_the_timeline_lists_each_notice_with_its_events_in_order(client, alice):
    policy = a_policy(alice, "P-TL", days=30)
    early = make_notification(policy, channel="email", lead_days=30, status=Status.DELIVERED)
    late = make_notification(policy, channel="sms", lead_days=7, status=Status.FAILED)
    make_event(late, DeliveryEvent.Type.FAILED, minutes=30, error_code="30006")
    make_event(late, DeliveryEvent.Type.SENT, minutes=10)
    make_event(early, DeliveryEvent.Type.DELIVERED, minutes=5)
    make_event(early, DeliveryEvent.Type.SENT, minutes=1)

    response = client.get(reverse("workspace:policy", kwargs={"policy_id": policy.pk}))
    timeline = response.context["timeline"]
    assert [notice.pk for notice in timeline] == [early.pk, late.pk]
    assert [event.event_type for event in timeline[0].events.all()] == ["sent", "delivered"]
    assert [event.event_type for event in timeline[1].events.all()] == ["sent", "failed"]
    content = response.content.decode()
    assert "The number is a landline or cannot receive SMS." in content
    assert f'id="retry-{late.pk}"' in content
    assert f'id="retry-{early.pk}"' not in content
    assert 'id="renew-form"' in content


def test_provider_errors_read_as_sentences():
    def event(**fields):
        return DeliveryEvent(provider="twilio", event_type="failed", **fields)

    assert explain_event(event(error_code="21610")) == "The customer replied STOP to this number."
    assert explain_event(event(error_code="21211")) == "The phone number is not valid."
    bounce = DeliveryEvent(provider="postmark", event_type="bounced", error_code="invalid")
    assert explain_event(bounce).startswith("The customer's mail server refused the message")
    assert "(the address is not valid)" in explain_event(bounce)
    complaint = DeliveryEvent(provider="postmark", event_type="complained")
    assert "marked the email as spam" in explain_event(complaint)
    assert explain_event(DeliveryEvent(provider="twilio", event_type="delivered")) == ""
    assert explain_error("Twilio error 21614: not a mobile") == "The number is not a mobile number."
    assert explain_error("twilio: x (error 30007)") == "The carrier filtered the message as spam."
    assert explain_error("gave up after 6 attempts") == "Gave up after 6 attempts."


# --- Actions --------------------------------------------------------------------------------


def test_marking_renewed_moves_the_expiry_and_cancels_its_pending_reminders(client, alice):
    policy = a_policy(alice, "P-RN", days=20)
    pending = [
        make_notification(policy, channel="email", lead_days=30, status=Status.PLANNED),
        make_notification(policy, channel="sms", lead_days=14, status=Status.DEFERRED),
        make_notification(policy, channel="email", lead_days=14, status=Status.QUEUED),
    ]
    sent = make_notification(policy, channel="sms", lead_days=30, status=Status.SENT)
    other = make_notification(a_policy(alice, "P-OTHER", days=20))
    Policy.objects.filter(pk=other.policy_id).update(expiry_date=TODAY + timedelta(days=21))
    new_expiry = policy.expiry_date + timedelta(days=365)

    response = client.post(
        reverse("workspace:renew", kwargs={"policy_id": policy.pk}),
        {"new_expiry_date": new_expiry.isoformat()},
        follow=True,
    )
    assert "3 pending reminder(s) about the old expiry cancelled" in response.content.decode()
    policy.refresh_from_db()
    assert (policy.expiry_date, policy.status) == (new_expiry, Policy.Status.ACTIVE)
    for notice in pending:
        notice.refresh_from_db()
        assert notice.status == Status.CANCELLED
        assert notice.last_error == "policy expiry date changed"
    sent.refresh_from_db()
    assert sent.status == Status.SENT
    other.refresh_from_db()
    assert other.status == Status.PLANNED  # another policy's outdated reminder: not this renewal's


def test_a_renewal_must_move_the_expiry_forward(client, alice):
    policy = alice.policies.get()
    old_expiry = policy.expiry_date
    response = client.post(
        reverse("workspace:renew", kwargs={"policy_id": policy.pk}),
        {"new_expiry_date": (old_expiry - timedelta(days=1)).isoformat()},
        follow=True,
    )
    assert "must come after the current one" in response.content.decode()
    policy.refresh_from_db()
    assert policy.expiry_date == old_expiry


def test_retry_puts_a_failed_notice_back_in_the_queue_and_sends_it_after_commit(
    client, books, alice, enqueued, django_capture_on_commit_callbacks
):
    notice = books.my_notice
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = client.post(reverse("workspace:retry", kwargs={"notification_id": notice.pk}))
        notice.refresh_from_db()
        assert notice.status == Status.QUEUED
        assert notice.queued_at is not None
        assert enqueued == []  # nothing goes to the broker before the commit
    for callback in callbacks:
        callback()
    assert enqueued == [notice.pk]
    assert response["Location"] == reverse(
        "workspace:policy", kwargs={"policy_id": notice.policy_id}
    )


def test_retrying_twice_sends_once(
    client, books, alice, enqueued, django_capture_on_commit_callbacks
):
    url = reverse("workspace:retry", kwargs={"notification_id": books.my_notice.pk})
    with django_capture_on_commit_callbacks(execute=True):
        client.post(url)
        response = client.post(url, {"next": reverse("workspace:notices")}, follow=True)
    assert enqueued == [books.my_notice.pk]
    assert "Only a failed notice can be retried" in response.content.decode()
    assert response.redirect_chain[-1][0] == reverse("workspace:notices")


def test_retry_ignores_a_next_address_on_another_site(client, books, alice, enqueued):
    response = client.post(
        reverse("workspace:retry", kwargs={"notification_id": books.my_notice.pk}),
        {"next": "https://evil.example/"},
    )
    assert response["Location"] == reverse(
        "workspace:policy", kwargs={"policy_id": books.my_policy.pk}
    )


def test_actions_need_the_csrf_token(books):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    strict.login(username="alice", password=PASSWORD)
    response = strict.post(
        reverse("workspace:retry", kwargs={"notification_id": books.my_notice.pk})
    )
    assert response.status_code == 403
    books.my_notice.refresh_from_db()
    assert books.my_notice.status == Status.FAILED


# --- CSV export -----------------------------------------------------------------------------


def test_the_csv_export_holds_the_filtered_notices(client, alice):
    policy = a_policy(alice, "=CMD-1", name="Eve Formula", product_line="home")
    make_notification(policy, channel="sms", lead_days=7, status=Status.DEFERRED)
    make_notification(a_policy(alice, "P-EMAIL"), channel="email")
    response = client.get(reverse("workspace:notices-csv"), {"channel": "sms"})
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1
    row = rows[0]
    assert row["policy_number"] == "'=CMD-1"  # a spreadsheet must not run it as a formula
    assert row["customer"] == "Eve Formula"
    assert (row["channel"], row["lead_days"], row["status"]) == ("sms", "7", "deferred")
    assert row["product_line"] == "home"
    assert row["agent"] == "alice@agency.example"


def test_the_csv_export_explains_failures(client, books, alice):
    Notification.objects.filter(pk=books.my_notice.pk).update(
        last_error="Twilio error 21211: Invalid 'To' Phone Number"
    )
    response = client.get(reverse("workspace:notices-csv"), {"status": "failed"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["error"] for row in rows] == ["The phone number is not valid."]


# --- Dashboard ------------------------------------------------------------------------------


def test_the_dashboard_counts_and_draws_the_weeks(client, alice):
    this_week = TODAY - timedelta(days=TODAY.weekday())
    due = a_policy(alice, "P-DUE", days=0)
    Policy.objects.filter(pk=due.pk).update(expiry_date=this_week + timedelta(days=6))
    # Expires next week; its reminders fell due in the last 30 days.
    recent = a_policy(alice, "P-RECENT", days=0)
    Policy.objects.filter(pk=recent.pk).update(expiry_date=this_week + timedelta(days=8))
    recent.refresh_from_db()
    make_notification(recent, channel="email", lead_days=14, status=Status.DELIVERED)
    make_notification(recent, channel="sms", lead_days=21, status=Status.SENT)
    make_notification(recent, channel="email", lead_days=28, status=Status.BOUNCED)
    response = client.get(reverse("workspace:dashboard"))
    summary = response.context["summary"]
    assert summary.due_this_week == 1
    assert (summary.sent, summary.delivered, summary.failed) == (2, 1, 1)
    assert len(summary.weeks) == 17
    # ... and ALICE-1's failed notice, due in a few days.
    assert sum(week.delivered + week.sent + week.failed for week in summary.weeks) == 4
    content = response.content.decode()
    assert "<svg" in content
    assert 'class="bar-delivered"' in content
    assert 'class="bar-expiries"' in content
