"""The "Needs a call" page: an agent's policies about to expire that no reminder reached, the
customer's phone to tap, and a call's outcome recorded with one click."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from notifications.models import CallOutcome, Notification
from policies.models import Customer, Policy
from tests.factories import PASSWORD, make_customer, make_notification, make_policy, two_books

TODAY = timezone.localdate()


@pytest.fixture
def alice(client, db):
    books = two_books(TODAY)
    client.login(username="alice", password=PASSWORD)
    return books.mine


def calls_page(client) -> str:
    response = client.get(reverse("workspace:calls"))
    assert response.status_code == 200
    return response.content.decode()


def test_the_page_lists_the_policies_to_call_with_the_reason_and_a_phone_link(client, alice):
    policy = make_policy(
        "CALL-1",
        customer=make_customer("cal@mail.example", name="Cal Caller", phone="+14155550111"),
        agent=alice,
        expiry_date=TODAY + timedelta(days=2),
    )
    make_notification(policy, lead_days=7, status=Notification.Status.SENT)

    html = calls_page(client)

    assert 'data-policy="CALL-1"' in html
    assert 'href="tel:+14155550111"' in html
    assert "No reminder delivered yet" in html
    assert "ALICE-1" not in html  # expires in 20 days: outside the 7-day window
    assert "BRUNO-1" not in html


def test_nobody_to_call_says_so(client, alice):
    assert 'id="no-calls"' in calls_page(client)


def test_one_click_records_the_outcome_and_the_timeline_shows_it(client, alice):
    policy = make_policy(
        "CALL-2", customer=make_customer(), agent=alice, expiry_date=TODAY + timedelta(days=3)
    )
    response = client.post(
        reverse("workspace:record-call", kwargs={"policy_id": policy.pk}),
        {"outcome": "voicemail", "next": reverse("workspace:calls")},
        follow=True,
    )
    assert "CALL-2: left a voicemail recorded." in response.content.decode()
    call = CallOutcome.objects.get(policy=policy)
    assert (call.outcome, call.expiry_date, call.called_by) == (
        "voicemail",
        policy.expiry_date,
        alice.user,
    )
    detail = client.get(reverse("workspace:policy", kwargs={"policy_id": policy.pk}))
    assert 'data-call="voicemail"' in detail.content.decode()
    assert "Call: Left a voicemail" in detail.content.decode()


def test_declined_takes_the_policy_off_the_list(client, alice):
    policy = make_policy(
        "CALL-3", customer=make_customer(), agent=alice, expiry_date=TODAY + timedelta(days=3)
    )
    assert 'data-policy="CALL-3"' in calls_page(client)
    client.post(
        reverse("workspace:record-call", kwargs={"policy_id": policy.pk}), {"outcome": "declined"}
    )
    assert 'data-policy="CALL-3"' not in calls_page(client)


def test_wrong_number_is_marked_on_the_customer(client, alice):
    policy = make_policy(
        "CALL-4",
        customer=make_customer(email="", phone="+14155550112"),
        agent=alice,
        expiry_date=TODAY + timedelta(days=3),
    )
    client.post(
        reverse("workspace:record-call", kwargs={"policy_id": policy.pk}),
        {"outcome": "wrong_number"},
    )
    assert Customer.objects.get(pk=policy.customer_id).wrong_phone == "+14155550112"
    html = calls_page(client)
    assert "wrong number" in html
    assert "customer&#x27;s phone number is wrong" in html


def test_wrong_number_marks_the_number_called_not_one_imported_since(client, alice):
    policy = make_policy(
        "CALL-6",
        customer=make_customer(email="", phone="+14155550112"),
        agent=alice,
        expiry_date=TODAY + timedelta(days=3),
    )
    assert 'name="phone" value="+14155550112"' in calls_page(client)  # the number to tap
    # While the agent dials, an import brings the customer's new number.
    Customer.objects.filter(pk=policy.customer_id).update(phone="+14155550199")

    client.post(
        reverse("workspace:record-call", kwargs={"policy_id": policy.pk}),
        {"outcome": "wrong_number", "phone": "+14155550112"},
    )

    customer = Customer.objects.get(pk=policy.customer_id)
    assert not customer.phone_is_wrong  # the new number is still to be tried
    assert CallOutcome.objects.get().phone == "+14155550112"


def test_declined_on_a_page_loaded_before_a_renewal_does_not_decline_the_new_term(client, alice):
    policy = make_policy(
        "CALL-7", customer=make_customer(), agent=alice, expiry_date=TODAY + timedelta(days=3)
    )
    shown = (TODAY + timedelta(days=3)).isoformat()
    assert f'name="expiry_date" value="{shown}"' in calls_page(client)
    # Meanwhile the nightly import renews it.
    Policy.objects.filter(pk=policy.pk).update(expiry_date=TODAY + timedelta(days=368))

    response = client.post(
        reverse("workspace:record-call", kwargs={"policy_id": policy.pk}),
        {"outcome": "declined", "expiry_date": shown},
        follow=True,
    )

    assert response.status_code == 200
    assert "renewed since" in response.content.decode()
    assert not Policy.objects.get(pk=policy.pk).renewal_declined


def test_a_malformed_term_gets_the_current_one_not_an_error(client, alice):
    policy = make_policy(
        "CALL-8", customer=make_customer(), agent=alice, expiry_date=TODAY + timedelta(days=3)
    )
    for bad in ("2026-02-30", "soon"):
        response = client.post(
            reverse("workspace:record-call", kwargs={"policy_id": policy.pk}),
            {"outcome": "reached", "expiry_date": bad},
        )
        assert response.status_code == 302
    assert set(CallOutcome.objects.values_list("expiry_date", flat=True)) == {policy.expiry_date}


@pytest.mark.parametrize("outcome", ["", "maybe", "<script>"])
def test_an_unknown_outcome_gets_a_message_not_an_error(client, alice, outcome):
    policy = make_policy(
        "CALL-5", customer=make_customer(), agent=alice, expiry_date=TODAY + timedelta(days=3)
    )
    response = client.post(
        reverse("workspace:record-call", kwargs={"policy_id": policy.pk}),
        {"outcome": outcome},
        follow=True,
    )
    assert response.status_code == 200
    assert "Unknown call outcome" in response.content.decode()
    assert not CallOutcome.objects.exists()


def test_a_policy_outside_the_book_is_not_found(client, alice):
    other = make_policy(
        "THEIRS",
        customer=make_customer("t@mail.example"),
        agent=alice.__class__.objects.get(email="bruno@agency.example"),
        expiry_date=TODAY + timedelta(days=2),
    )
    response = client.post(
        reverse("workspace:record-call", kwargs={"policy_id": other.pk}), {"outcome": "reached"}
    )
    assert response.status_code == 404
    assert not CallOutcome.objects.exists()


def test_the_call_list_is_in_the_navigation(client, alice):
    assert 'id="nav-calls"' in calls_page(client)


def test_staff_record_calls_on_any_book_only_with_the_permission(client, db, staff_roles):
    from tests.factories import make_staff

    books = two_books(TODAY)
    url = reverse("workspace:record-call", kwargs={"policy_id": books.my_policy.pk})
    make_staff("sue", roles=["Support (read-only)"], password=PASSWORD)
    make_staff("ria", roles=["Renewal admins"], password=PASSWORD)

    client.login(username="sue", password=PASSWORD)
    assert client.post(url, {"outcome": "reached"}).status_code == 403
    assert not CallOutcome.objects.exists()

    client.login(username="ria", password=PASSWORD)
    assert client.post(url, {"outcome": "reached"}).status_code == 302
    assert CallOutcome.objects.get().outcome == "reached"
