"""Every reminder email carries RFC 8058 one-click unsubscribe, to Renewly's signed endpoint."""

import email
import time
from datetime import timedelta

import pytest
from django.core import signing
from django.utils import timezone

from notifications import dispatch, planning, preferences
from notifications.models import Notification, ReminderRule
from tests.factories import make_agent, make_customer, make_policy, make_rule

pytestmark = pytest.mark.django_db


@pytest.fixture
def customer():
    return make_customer("pat@mail.example")


def path_of(url: str) -> str:
    return url.removeprefix("http://127.0.0.1:8000")


def test_a_reminder_email_carries_one_click_unsubscribe(settings, tmp_path, customer):
    settings.OUTBOX_DIR = tmp_path
    settings.EMAIL_BACKEND = "notifications.channels.outbox.EmailBackend"
    ReminderRule.objects.all().delete()
    make_rule(7, "email")
    today = timezone.localdate()
    make_policy("P-1", customer=customer, agent=make_agent(), expiry_date=today + timedelta(7))
    planning.plan_due(run_date=today)
    (notification_id,) = planning.claim_for_enqueue(limit=5, stalled_after=timedelta(hours=1))
    dispatch.send(notification_id)

    message = email.message_from_bytes(
        (tmp_path / "email" / f"notification-{notification_id}.eml").read_bytes()
    )
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = "".join(message["List-Unsubscribe"].split()).strip("<>")  # unfold the header
    assert url.startswith("http://127.0.0.1:8000/unsubscribe/")
    assert preferences.customer_from(url.rstrip("/").rsplit("/", 1)[1]) == customer
    assert Notification.objects.get(pk=notification_id).status == Notification.Status.SENT


def test_one_click_post_unsubscribes_from_email_only(client, customer):
    response = client.post(
        path_of(preferences.unsubscribe_url(customer)), {"List-Unsubscribe": "One-Click"}
    )

    assert response.status_code == 200
    assert b"You will not receive renewal reminders by email." in response.content
    customer.refresh_from_db()
    assert (customer.email_consent, customer.sms_consent) == (False, True)


def test_opening_the_link_only_leads_to_the_preferences_page(client, customer, monkeypatch):
    # Both links signed in the same second, or the two signatures differ.
    signed_now = signing.b62_encode(int(time.time()))
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: signed_now)
    response = client.get(path_of(preferences.unsubscribe_url(customer)), follow=True)

    assert response.status_code == 200
    assert response.redirect_chain[0][0] == path_of(preferences.preferences_url(customer))
    assert b'id="preferences-form"' in response.content
    customer.refresh_from_db()
    assert customer.email_consent is True


def test_a_tampered_link_gets_a_clear_error_and_changes_nothing(client, customer):
    url = path_of(preferences.unsubscribe_url(customer))
    tampered = url[:-3] + ("A" if url[-3] != "A" else "B") + url[-2:]

    response = client.post(tampered)

    assert response.status_code == 400
    assert b"not valid" in response.content
    customer.refresh_from_db()
    assert customer.email_consent is True


def test_an_expired_link_says_so_and_changes_nothing(client, customer, settings, monkeypatch):
    settings.PREFERENCES_LINK_MAX_AGE_DAYS = 180
    signed_181_days_ago = signing.b62_encode(int(time.time()) - 181 * 86400)
    monkeypatch.setattr(signing.TimestampSigner, "timestamp", lambda self: signed_181_days_ago)
    token = preferences.token_for(customer)
    monkeypatch.undo()

    response = client.post(f"/unsubscribe/{token}/")

    assert response.status_code == 400
    assert b"expired" in response.content
    customer.refresh_from_db()
    assert customer.email_consent is True


def test_one_click_unsubscribe_leaves_sms_as_it_stands_now(customer):
    """A STOP reply may land between loading the customer and unsubscribing: it stands."""
    loaded_before_the_stop = preferences.customer_from(preferences.token_for(customer))
    customer.__class__.objects.filter(pk=customer.pk).update(sms_consent=False)

    preferences.unsubscribe_from_email(loaded_before_the_stop)

    customer.refresh_from_db()
    assert (customer.email_consent, customer.sms_consent) == (False, False)
    assert [c.channel for c in customer.consent_changes.all()] == ["email"]


def test_a_mail_scanners_head_request_unsubscribes_no_one(client, customer):
    response = client.head(path_of(preferences.unsubscribe_url(customer)))

    assert response.status_code == 302  # as a GET: on to the preferences page
    customer.refresh_from_db()
    assert (customer.email_consent, customer.sms_consent) == (True, True)
    assert not customer.consent_changes.exists()


@pytest.mark.parametrize("method", ["head", "get", "post"])
def test_no_unsubscribe_answer_may_be_cached(client, customer, method):
    response = getattr(client, method)(path_of(preferences.unsubscribe_url(customer)))

    assert "no-store" in response["Cache-Control"]
