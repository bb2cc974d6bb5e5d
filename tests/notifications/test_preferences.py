"""The customer's preferences page, reached by the signed link in every reminder: no login, a
tampered or expired link changes nothing, and a channel turned off gets nothing more."""

import time
from datetime import timedelta

import pytest
from django.core import signing
from django.test import Client
from django.utils import timezone

from notifications import dispatch, planning, preferences
from notifications.models import Channel, ConsentChange, Notification
from tests.factories import make_agent, make_customer, make_policy

pytestmark = pytest.mark.django_db
Status = Notification.Status


@pytest.fixture
def customer():
    return make_customer("pat@mail.example", phone="+14155550123")


def page(customer) -> str:
    return preferences.preferences_url(customer).removeprefix("http://127.0.0.1:8000")


def issued(days_ago: float, customer, monkeypatch) -> str:
    """A token signed `days_ago` days ago: signing stamps it with this time instead of now."""
    stamp = signing.b62_encode(int(time.time() - days_ago * 86400))
    with monkeypatch.context() as patch:
        patch.setattr(signing.TimestampSigner, "timestamp", lambda self: stamp)
        return preferences.token_for(customer)


def consent(customer) -> tuple[bool, bool]:
    customer.refresh_from_db()
    return customer.email_consent, customer.sms_consent


def test_a_valid_link_shows_the_current_choices(client, customer):
    customer.sms_consent = False
    customer.save()

    response = client.get(page(customer))

    assert response.status_code == 200
    html = response.content.decode()
    assert 'id="preferences-form"' in html
    assert 'type="checkbox" name="email" id="id_email" checked' in html
    assert 'type="checkbox" name="sms" id="id_sms">' in html
    assert '<label for="id_sms">' in html
    assert "p•••@mail.example" in html
    assert "pat@mail.example" not in html  # the address is shown masked


def test_saving_changes_consent_and_confirms_what_they_will_get(client, customer):
    before = customer.updated_at

    response = client.post(page(customer), {"email": "on"})

    assert response.status_code == 200
    assert consent(customer) == (True, False)
    assert customer.updated_at > before
    html = response.content.decode()
    assert "You will receive renewal reminders by email." in html
    assert "You will not receive renewal reminders by SMS." in html


def test_turning_every_channel_off_warns_that_nothing_will_come(client, customer):
    response = client.post(page(customer), {})

    assert consent(customer) == (False, False)
    assert 'id="summary-none"' in response.content.decode()


def test_the_form_is_csrf_protected(customer):
    browser = Client(enforce_csrf_checks=True)

    assert browser.post(page(customer), {"email": "on"}).status_code == 403
    assert consent(customer) == (True, True)
    form = browser.get(page(customer))
    token = form.context["csrf_token"]
    response = browser.post(page(customer), {"email": "on", "csrfmiddlewaretoken": token})
    assert response.status_code == 200
    assert consent(customer) == (True, False)


def test_a_spanish_customer_reads_the_page_in_spanish(client, customer):
    customer.language = "es"
    customer.save()

    html = client.get(page(customer)).content.decode()
    saved = client.post(page(customer), {"sms": "on"}).content.decode()

    assert '<html lang="es">' in html
    assert "¿Cómo quiere que le avisemos?" in html
    assert "Avisos por SMS" in html
    assert "No recibirá avisos de renovación por correo electrónico." in saved


def test_a_tampered_link_gets_an_error_page_and_changes_nothing(client, customer):
    url = page(customer)
    tampered = url[:-3] + ("A" if url[-3] != "A" else "B") + url[-2:]

    response = client.post(tampered, {})

    assert response.status_code == 400
    assert b"This link is not valid" in response.content
    assert b"Nothing was changed" in response.content
    assert consent(customer) == (True, True)


def test_an_expired_link_says_so_and_changes_nothing(client, customer, settings, monkeypatch):
    settings.PREFERENCES_LINK_MAX_AGE_DAYS = 180
    token = issued(181, customer, monkeypatch)

    response = client.post(f"/preferences/{token}/", {})

    assert response.status_code == 400
    assert b"This link has expired" in response.content
    assert consent(customer) == (True, True)


def test_a_link_within_its_lifetime_still_works(client, customer, settings, monkeypatch):
    settings.PREFERENCES_LINK_MAX_AGE_DAYS = 180
    token = issued(179, customer, monkeypatch)

    assert client.get(f"/preferences/{token}/").status_code == 200


def test_a_link_to_a_deleted_customer_is_an_error(client, customer):
    url = page(customer)
    customer.delete()

    response = client.get(url)

    assert response.status_code == 400
    assert b"does not match any customer" in response.content


def test_the_error_page_speaks_the_browsers_language(client):
    response = client.get("/preferences/nonsense/", headers={"accept-language": "es"})

    assert response.status_code == 400
    assert "Este enlace no es válido" in response.content.decode()


def test_opening_the_unsubscribe_link_leads_to_the_preferences_page(client, customer):
    url = preferences.unsubscribe_url(customer).removeprefix("http://127.0.0.1:8000")

    response = client.get(url, follow=True)

    ((target, status),) = response.redirect_chain
    assert status == 302
    # The same customer's page; its token is signed anew, stamped with the second it was.
    token = target.rstrip("/").rsplit("/", 1)[-1]
    assert target == preferences.preferences_url(customer, token).removeprefix(
        "http://127.0.0.1:8000"
    )
    assert preferences.customer_from(token) == customer
    assert 'id="preferences-form"' in response.content.decode()
    assert consent(customer) == (True, True)


def test_opting_out_of_sms_means_no_sms_is_sent(client, customer, rules, outbox):
    rules(7, Channel.EMAIL)
    rules(7, Channel.SMS)
    rules(1, Channel.SMS)
    today = timezone.localdate()
    make_policy("P-1", customer=customer, agent=make_agent(), expiry_date=today + timedelta(7))
    planning.plan_due(run_date=today - timedelta(days=1))  # the previous day's scan
    planning.plan_due(run_date=today)
    queued = planning.claim_for_enqueue(limit=10, stalled_after=timedelta(hours=1))
    assert len(queued) == 2  # the 7-day email and SMS

    client.post(page(customer), {"email": "on"})
    for notification_id in queued:
        dispatch.send(notification_id)
    planning.plan_due(run_date=today + timedelta(days=6))  # the 1-day SMS falls due

    sms = Notification.objects.filter(channel=Channel.SMS)
    assert {(n.lead_days, n.status) for n in sms} == {(7, Status.CANCELLED)}
    assert sms.get().last_error == "customer opted out of SMS"
    assert Notification.objects.get(channel=Channel.EMAIL).status == Status.SENT
    assert not (outbox / "sms").exists() or not any((outbox / "sms").iterdir())


def changes(customer) -> list[tuple[str, bool, str]]:
    return [(c.channel, c.accepted, c.source) for c in customer.consent_changes.order_by("id")]


def test_each_changed_choice_is_recorded_with_when_and_how(client, customer):
    client.post(page(customer), {"email": "on"})  # SMS off
    client.post(page(customer), {"email": "on"})  # the same again: nothing changed
    client.post(page(customer), {"sms": "on"})  # email off, SMS back on

    assert changes(customer) == [
        ("sms", False, "preferences_page"),
        ("email", False, "preferences_page"),
        ("sms", True, "preferences_page"),
    ]
    assert customer.consent_changes.first().changed_at <= timezone.now()


def test_one_click_unsubscribe_is_recorded_as_such(client, customer):
    url = preferences.unsubscribe_url(customer).removeprefix("http://127.0.0.1:8000")

    client.post(url, {"List-Unsubscribe": "One-Click"})

    assert changes(customer) == [("email", False, ConsentChange.Source.ONE_CLICK)]


def test_an_invalid_link_records_no_change(client, customer):
    client.post(page(customer)[:-3] + "AAA/", {})

    assert changes(customer) == []


def test_a_head_request_answers_like_a_get_and_changes_nothing(client, customer):
    response = client.head(page(customer), {"email": "", "sms": ""})

    assert response.status_code == 200
    assert consent(customer) == (True, True)
    assert not ConsentChange.objects.exists()


@pytest.mark.parametrize("method", ["head", "get", "post"])
def test_no_preferences_page_may_be_cached(client, customer, method):
    response = getattr(client, method)(page(customer))

    assert "no-store" in response["Cache-Control"]


def test_not_even_the_invalid_link_page_may_be_cached(client):
    response = client.get("/preferences/not-a-token/")

    assert response.status_code == 400
    assert "no-store" in response["Cache-Control"]
