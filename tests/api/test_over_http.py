"""The README's walk-through, over real HTTP: a policy administration system creates an agent,
feeds policies in bulk, renews one with an Idempotency-Key and retries it, and the insurer's
CRM hears of a customer's opt-out, signed, at its own webhook receiver."""

import uuid
from datetime import timedelta

import pytest
import requests
from django.utils import timezone

from events import delivery
from events.models import EventType, new_secret
from notifications.models import Notification
from policies.models import Policy
from tests.factories import make_api_key, make_notification, make_subscription, policy_row
from tests.webhook_receiver import WebhookReceiver

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api(live_server):
    _key, secret = make_api_key("policy admin system")
    session = requests.Session()
    session.headers["Authorization"] = f"Api-Key {secret}"
    base = f"{live_server.url}/api/v1/"

    def call(method: str, path: str, **kwargs) -> requests.Response:
        return session.request(method, base + path, timeout=30, **kwargs)

    return call


def test_an_integration_feeds_renews_and_hears_back_over_http(api):
    agent = api("PUT", "agents/ana@agency.example", json={"first_name": "Ana"})
    expiry = timezone.localdate() + timedelta(days=20)
    rows = [
        policy_row(
            f"P-{n}",
            "ana@agency.example",
            start_date=(expiry - timedelta(days=365)).isoformat(),
            expiry_date=expiry.isoformat(),
        )
        for n in range(3)
    ]
    fed = api("POST", "policies/bulk", json={"rows": rows})

    assert agent.status_code == 201
    assert fed.status_code == 200
    assert fed.json()["created"] == 3

    policy = Policy.objects.get(policy_number="P-0")
    waiting = make_notification(policy, lead_days=7)
    renewal = {"expiry_date": (expiry + timedelta(days=365)).isoformat()}
    key = {"Idempotency-Key": str(uuid.uuid4())}
    renewed = api("POST", "policies/P-0/renewal", json=renewal, headers=key)
    retried = api("POST", "policies/P-0/renewal", json=renewal, headers=key)

    assert renewed.status_code == retried.status_code == 200
    assert [r["id"] for r in renewed.json()["cancelled_reminders"]] == [waiting.pk]
    assert retried.json() == renewed.json()
    assert retried.headers["Idempotent-Replayed"] == "true"
    waiting.refresh_from_db()
    assert waiting.status == Notification.Status.CANCELLED

    with WebhookReceiver(new_secret()) as crm:
        make_subscription(crm.url, EventType.CUSTOMER_OPTED_OUT, secret=crm.secret)
        customer_id = Policy.objects.get(policy_number="P-1").customer_id
        opted_out = api("PUT", f"customers/{customer_id}/consent", json={"email": False})
        delivery.deliver_due()

        assert opted_out.status_code == 200
        (payload,) = crm.accepted.values()
        assert payload["type"] == "customer.opted_out"
        assert payload["data"]["customer_id"] == customer_id
        assert payload["data"]["source"] == "api"
        assert payload["data"]["changed_by"] == "policy admin system"
        assert crm.rejected == 0


def test_the_schema_and_its_docs_are_served_over_http(live_server):
    schema = requests.get(f"{live_server.url}/api/v1/schema/?format=json", timeout=30)
    docs = requests.get(f"{live_server.url}/api/v1/docs/", timeout=30)

    assert schema.status_code == 200
    assert schema.json()["openapi"].startswith("3.")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text
