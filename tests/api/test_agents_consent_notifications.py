"""Agents, customers' consent and notifications through the API."""

from datetime import date, timedelta

import pytest
from django.test import Client

from notifications.models import ConsentChange, Notification
from policies.models import Agent
from tests.factories import make_customer, make_notification, make_policy, with_password

pytestmark = pytest.mark.django_db
Status = Notification.Status


# --- Agents ---------------------------------------------------------------------------------


def test_a_new_agent_gets_a_login_with_no_usable_password(integration):
    response = integration.put(
        "agents/Ana@Agency.example",
        {"first_name": "Ana", "last_name": "Ruiz", "phone": "+34 612 34 56 78"},
    )

    assert response.status_code == 201
    assert response.json() == {
        "email": "ana@agency.example",
        "first_name": "Ana",
        "last_name": "Ruiz",
        "phone": "+34612345678",
        "active": True,
        "invited": False,
    }
    agent = Agent.objects.get(email="ana@agency.example")
    assert agent.name == "Ana Ruiz"
    assert not agent.user.has_usable_password()
    assert not Client().login(username="ana@agency.example", password="")


def test_putting_an_agent_again_updates_them_and_keeps_their_password(integration, agent):
    with_password(agent)

    response = integration.put(f"agents/{agent.email}", {"first_name": "Alex", "phone": ""})

    assert response.status_code == 200
    assert response.json()["invited"] is True
    agent.refresh_from_db()
    assert agent.user.first_name == "Alex"
    assert agent.user.has_usable_password()


def test_deactivating_an_agent_stops_their_login_and_keeps_their_book(integration, agent):
    policy = make_policy("P-1", customer=make_customer(), agent=agent, expiry_date=date(2027, 1, 1))

    response = integration.put(f"agents/{agent.email}", {"active": False})

    assert response.json()["active"] is False
    agent.user.refresh_from_db()
    assert not agent.user.is_active
    policy.refresh_from_db()
    assert policy.agent == agent
    assert integration.get(f"agents/{agent.email}").json()["active"] is False


def test_an_unknown_agent_is_404(integration):
    assert integration.get("agents/ghost@agency.example").status_code == 404


# --- Consent --------------------------------------------------------------------------------


@pytest.fixture
def customer(agent):
    customer = make_customer()
    make_policy("P-1", customer=customer, agent=agent, expiry_date=date(2027, 1, 1))
    return customer


def test_consent_is_recorded_with_source_api_and_the_keys_name(integration, customer):
    response = integration.put(f"customers/{customer.pk}/consent", {"sms": False})

    assert response.status_code == 200
    answer = response.json()
    assert (answer["email"], answer["sms"]) == (True, False)
    (change,) = answer["history"]
    assert change["channel"] == "sms"
    assert change["accepted"] is False
    assert change["source"] == "api"
    assert change["changed_by"] == "policy admin"
    stored = ConsentChange.objects.get()
    assert (stored.source, stored.changed_by) == ("api", "policy admin")
    customer.refresh_from_db()
    assert customer.sms_consent is False
    assert customer.email_consent is True


def test_a_whatsapp_opt_in_is_recorded_with_source_api_and_the_keys_name(integration, customer):
    response = integration.put(f"customers/{customer.pk}/consent", {"whatsapp": True})

    assert response.status_code == 200
    assert response.json()["whatsapp"] is True
    assert response.json()["history"][0]["channel"] == "whatsapp"
    customer.refresh_from_db()
    assert customer.whatsapp_consent is True
    change = ConsentChange.objects.get()
    assert (change.channel, change.accepted, change.source) == ("whatsapp", True, "api")


def test_consent_that_does_not_change_records_nothing(integration, customer):
    integration.put(f"customers/{customer.pk}/consent", {"email": True, "sms": True})

    assert not ConsentChange.objects.exists()


def test_consent_needs_at_least_one_channel_and_real_booleans(integration, customer):
    empty = integration.put(f"customers/{customer.pk}/consent", {})
    wrong = integration.put(f"customers/{customer.pk}/consent", {"sms": "no"})

    assert empty.status_code == wrong.status_code == 400
    assert wrong.json()["errors"] == [{"pointer": "/sms", "detail": "Must be true or false."}]


def test_a_book_limited_key_reads_its_own_customers_consent(agents_integration, customer):
    response = agents_integration.get(f"customers/{customer.pk}/consent")

    assert response.status_code == 200
    assert response.json()["customer_id"] == customer.pk


# --- Notifications --------------------------------------------------------------------------


def test_notifications_filter_by_status_channel_and_due_date_and_page(integration, agent):
    expiry = date(2027, 1, 31)
    policy = make_policy("P-1", customer=make_customer(), agent=agent, expiry_date=expiry)
    early = make_notification(policy, lead_days=30, status=Status.DELIVERED)
    middle = make_notification(policy, lead_days=14, status=Status.DELIVERED)
    late = make_notification(policy, lead_days=7, status=Status.DELIVERED)
    make_notification(policy, channel="sms", lead_days=7, status=Status.DELIVERED)
    make_notification(policy, lead_days=3, status=Status.PLANNED)
    due_from = (expiry - timedelta(days=20)).isoformat()

    first = integration.get(
        f"notifications?status=delivered&channel=email&due_from={due_from}&limit=1"
    ).json()
    second = integration.get(
        f"notifications?status=delivered&channel=email&due_from={due_from}&limit=1"
        f"&cursor={first['next_cursor']}"
    ).json()
    everything = integration.get("notifications?channel=email&status=delivered").json()

    assert [n["id"] for n in first["results"]] == [middle.pk]
    assert [n["id"] for n in second["results"]] == [late.pk]
    assert second["next_cursor"] is None
    assert [n["id"] for n in everything["results"]] == [early.pk, middle.pk, late.pk]
    assert everything["results"][0]["policy_number"] == "P-1"


@pytest.mark.parametrize("query", ["channel=fax", "due_from=soon", "status=lost"])
def test_a_bad_notification_filter_is_400(integration, query):
    assert integration.get(f"notifications?{query}").status_code == 400


def test_an_agent_email_no_login_can_have_is_422_not_a_500(integration):
    long_email = "a" * 140 + "@agency.example"

    response = integration.put(f"agents/{long_email}", {"first_name": "A"})

    assert response.status_code == 422
    assert "at most 150 characters" in response.json()["detail"]


def test_a_login_that_is_not_an_agents_is_not_taken_over(integration, db):
    from tests.factories import make_staff

    make_staff("boss@insurer.example")

    response = integration.put("agents/boss@insurer.example", {"first_name": "B"})

    assert response.status_code == 422
    assert not Agent.objects.exists()


def test_a_staff_agent_is_not_deactivated_through_the_api(integration, agent):
    agent.user.is_staff = True
    agent.user.save()

    response = integration.put(f"agents/{agent.email}", {"active": False})

    assert response.status_code == 422
    agent.user.refresh_from_db()
    assert agent.user.is_active


def test_a_book_limited_key_cannot_change_a_customer_another_book_shares(
    agents_integration, customer, other_agent
):
    make_policy("B-1", customer=customer, agent=other_agent, expiry_date=date(2027, 1, 1))

    response = agents_integration.put(f"customers/{customer.pk}/consent", {"sms": False})

    assert response.status_code == 403
    customer.refresh_from_db()
    assert customer.sms_consent is True
