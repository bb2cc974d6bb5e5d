"""Idempotency-Key on every POST (the IETF httpapi-idempotency-key draft, as Stripe implements
it): a retry is answered the first answer and does nothing again; another body with the same
key is 422; a key whose request is still running is 409; keys are forgotten after 24 hours."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from api import idempotency
from api.models import ApiKey, IdempotencyKey
from notifications.models import Notification
from ops.housekeeping import run_housekeeping
from policies.models import Policy
from tests.api.conftest import Caller
from tests.factories import make_api_key, make_customer, make_notification, make_policy, policy_row

pytestmark = pytest.mark.django_db


def bulk(*numbers: str) -> dict:
    return {"rows": [policy_row(number, "agent@agency.example") for number in numbers]}


def test_the_same_key_and_body_answer_the_stored_response_and_change_nothing(integration, agent):
    first = integration.post("policies/bulk", bulk("P-1"), **{"Idempotency-Key": "k-1"})
    Policy.objects.all().delete()  # were the request run again, it would create P-1 again

    again = integration.post("policies/bulk", bulk("P-1"), **{"Idempotency-Key": "k-1"})

    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert first.json()["created"] == 1
    assert again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first
    assert not Policy.objects.exists()


def test_the_same_json_laid_out_differently_is_the_same_request(integration, agent):
    integration.post("policies/bulk", bulk("P-1"), **{"Idempotency-Key": "k-1"})
    spaced = b'{ "rows" : ' + idempotency.json.dumps(bulk("P-1")["rows"], indent=2).encode() + b"}"

    again = integration.post("policies/bulk", raw=spaced, **{"Idempotency-Key": "k-1"})

    assert again["Idempotent-Replayed"] == "true"


def test_the_same_key_with_another_body_is_422(integration, agent):
    integration.post("policies/bulk", bulk("P-1"), **{"Idempotency-Key": "k-1"})

    other = integration.post("policies/bulk", bulk("P-2"), **{"Idempotency-Key": "k-1"})

    assert other.status_code == 422
    assert other["Content-Type"] == "application/problem+json"
    assert "different request" in other.json()["detail"]
    assert not Policy.objects.filter(policy_number="P-2").exists()


def test_the_same_key_on_another_path_is_422(integration, agent):
    policy = make_policy("P-1", customer=make_customer(), agent=agent, expiry_date=date(2027, 1, 1))
    integration.post("policies/P-1/lapse", **{"Idempotency-Key": "k-1"})

    other = integration.post("policies/P-1/cancellation", **{"Idempotency-Key": "k-1"})

    assert other.status_code == 422
    policy.refresh_from_db()
    assert policy.status == "lapsed"


def test_a_key_still_in_flight_is_409(integration, agent):
    body = bulk("P-1")
    key = ApiKey.objects.get()
    IdempotencyKey.objects.create(
        api_key=key,
        key="k-1",
        fingerprint=idempotency.fingerprint("POST", "/api/v1/policies/bulk", body),
        locked_until=timezone.now() + timedelta(minutes=5),
    )

    response = integration.post("policies/bulk", body, **{"Idempotency-Key": "k-1"})

    assert response.status_code == 409
    assert response["Content-Type"] == "application/problem+json"
    assert not Policy.objects.exists()


def test_a_key_whose_request_died_is_taken_over_once_its_lock_lapses(integration, agent):
    body = bulk("P-1")
    IdempotencyKey.objects.create(
        api_key=ApiKey.objects.get(),
        key="k-1",
        fingerprint=idempotency.fingerprint("POST", "/api/v1/policies/bulk", body),
        locked_until=timezone.now() - timedelta(seconds=1),
    )

    response = integration.post("policies/bulk", body, **{"Idempotency-Key": "k-1"})

    assert response.status_code == 200
    assert Policy.objects.filter(policy_number="P-1").exists()
    assert IdempotencyKey.objects.get().state == IdempotencyKey.State.COMPLETED


def test_a_refused_request_stores_nothing_and_its_key_can_be_used_again(integration, agent):
    refused = integration.post("policies/P-9/lapse", **{"Idempotency-Key": "k-1"})
    make_policy("P-9", customer=make_customer(), agent=agent, expiry_date=date(2027, 1, 1))

    retried = integration.post("policies/P-9/lapse", **{"Idempotency-Key": "k-1"})

    assert refused.status_code == 404
    assert retried.status_code == 200
    assert "Idempotent-Replayed" not in retried


def test_a_request_that_fails_rolls_back_its_effects_and_releases_its_key(
    integration, agent, monkeypatch
):
    from notifications import planning

    policy = make_policy("P-1", customer=make_customer(), agent=agent, expiry_date=date(2027, 1, 1))
    waiting = make_notification(policy)

    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(planning, "cancelled_outdated", broken)
    with pytest.raises(RuntimeError):
        integration.post("policies/P-1/lapse", **{"Idempotency-Key": "k-1"})

    policy.refresh_from_db()
    waiting.refresh_from_db()
    assert policy.status == "active"
    assert waiting.status == Notification.Status.PLANNED
    assert not IdempotencyKey.objects.exists()


def test_keys_are_per_api_key(integration, client, agent):
    integration.post("policies/bulk", bulk("P-1"), **{"Idempotency-Key": "k-1"})
    _other, secret = make_api_key("another system")

    other = Caller(client, secret).post("policies/bulk", bulk("P-2"), **{"Idempotency-Key": "k-1"})

    assert other.status_code == 200
    assert "Idempotent-Replayed" not in other


@pytest.mark.parametrize("key", ["", "x" * 256, "line\nbreak"])
def test_an_unusable_key_is_400(integration, key):
    response = integration.post("policies/bulk", bulk("P-1"), **{"Idempotency-Key": key})

    assert response.status_code == 400


def test_housekeeping_forgets_keys_after_24_hours_and_the_key_works_anew(integration, agent):
    integration.post("policies/bulk", bulk("P-1"), **{"Idempotency-Key": "old"})
    integration.post("policies/bulk", bulk("P-2"), **{"Idempotency-Key": "new"})
    IdempotencyKey.objects.filter(key="old").update(created_at=timezone.now() - timedelta(hours=25))

    run = run_housekeeping()

    assert run.idempotency_keys_deleted == 1
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    reused = integration.post("policies/bulk", bulk("P-3"), **{"Idempotency-Key": "old"})
    assert "Idempotent-Replayed" not in reused
    assert reused.json()["created"] == 1


def test_an_expired_key_not_yet_purged_is_not_replayed(integration, agent):
    integration.post("policies/bulk", bulk("P-1"), **{"Idempotency-Key": "k-1"})
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=25))

    again = integration.post("policies/bulk", bulk("P-2"), **{"Idempotency-Key": "k-1"})

    assert again.status_code == 200
    assert again.json()["created"] == 1
