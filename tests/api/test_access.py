"""Who may call the API: keys that are sent, valid and not revoked; their book and their access;
their rate limit; and the command and admin that make and revoke them."""

import io
from datetime import date, timedelta

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.utils import timezone

from api.models import ApiKey
from tests.api.conftest import Caller
from tests.factories import (
    make_api_key,
    make_customer,
    make_notification,
    make_policy,
    make_staff,
)

pytestmark = pytest.mark.django_db


def test_a_request_without_a_key_is_401_naming_the_scheme(client):
    response = client.get("/api/v1/policies")

    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Api-Key"
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "Send an API key: 'Authorization: Api-Key <key>'."


@pytest.mark.parametrize(
    "header",
    ["Api-Key nope.nope", "Api-Key", "Api-Key a b", "Api-Key ünïcode", "Api-Key nodot"],
)
def test_a_malformed_or_unknown_key_is_401(client, db, header):
    response = client.get("/api/v1/policies", headers={"Authorization": header})

    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"


def test_a_key_with_the_right_prefix_and_a_wrong_secret_is_401(client, db):
    key, _secret = make_api_key()
    forged = f"{key.prefix}.{'x' * 32}"

    response = client.get("/api/v1/policies", headers={"Authorization": f"Api-Key {forged}"})

    assert response.status_code == 401
    assert response.json()["detail"] == "This API key is not valid."


def test_a_revoked_key_is_401_saying_so(client, db):
    key, secret = make_api_key()
    key.revoked = True
    key.save()

    response = Caller(client, secret).get("policies")

    assert response.status_code == 401
    assert response.json()["detail"] == "This API key was revoked."


def test_an_expired_key_is_401(client, db):
    key, secret = make_api_key()
    ApiKey.objects.filter(pk=key.pk).update(expiry_date=timezone.now() - timedelta(minutes=1))

    response = Caller(client, secret).get("policies")

    assert response.status_code == 401
    assert response.json()["detail"] == "This API key has expired."


def test_only_the_hash_of_a_key_is_stored(db):
    key, secret = make_api_key()

    stored = ApiKey.objects.filter(pk=key.pk).values().get()

    assert secret not in str(stored)
    assert secret.startswith(key.prefix + ".")


def test_a_read_only_key_reads_but_cannot_write(client, agent):
    _key, secret = make_api_key(read_only=True)
    caller = Caller(client, secret)

    assert caller.get("policies").status_code == 200
    refused = caller.put("agents/new@agency.example", {})
    assert refused.status_code == 403
    assert refused.json()["detail"] == "This API key is read-only."
    assert caller.post("policies/bulk", {"rows": []}).status_code == 403


def test_a_book_limited_key_cannot_manage_agents(agents_integration):
    response = agents_integration.put("agents/new@agency.example", {"first_name": "N"})

    assert response.status_code == 403


def test_another_books_policy_customer_and_notifications_are_404_never_403(
    agents_integration, other_agent
):
    customer = make_customer("bruno.customer@mail.example")
    policy = make_policy("B-1", customer=customer, agent=other_agent, expiry_date=date(2027, 1, 1))
    make_notification(policy)

    answers = [
        agents_integration.get("policies/B-1"),
        agents_integration.post("policies/B-1/lapse"),
        agents_integration.post("policies/B-1/renewal", {"expiry_date": "2028-01-01"}),
        agents_integration.get(f"customers/{customer.pk}/consent"),
        agents_integration.put(f"customers/{customer.pk}/consent", {"sms": False}),
    ]

    assert [a.status_code for a in answers] == [404] * 5
    assert agents_integration.get("notifications").json()["results"] == []
    policy.refresh_from_db()
    assert policy.status == "active"


def test_requests_beyond_the_keys_rate_limit_are_429_with_retry_after(client, db, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 3
    cache.clear()
    _key, secret = make_api_key()
    _other, other_secret = make_api_key("another system")
    caller = Caller(client, secret)

    answers = [caller.get("policies").status_code for _ in range(4)]
    limited = caller.get("policies")

    assert answers == [200, 200, 200, 429]
    assert limited["Content-Type"] == "application/problem+json"
    assert 0 < int(limited["Retry-After"]) <= 60
    # Each key has its own count.
    assert Caller(Client(), other_secret).get("policies").status_code == 200


def run_command(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("create_api_key", *args, stdout=out, stderr=err)
    return out.getvalue().strip(), err.getvalue()


def test_create_api_key_prints_a_working_key_once(client, agent):
    secret, note = run_command("agency system", "--agent", "AGENT@agency.example", "--read-only")

    key = ApiKey.objects.get()
    assert (key.name, key.agent, key.read_only) == ("agency system", agent, True)
    assert "read-only, agent@agency.example's book" in note
    assert Caller(client, secret).get("policies").status_code == 200
    assert Caller(client, secret).post("policies/bulk", {"rows": []}).status_code == 403


def test_create_api_key_refuses_an_unknown_agent_and_an_empty_name(db):
    with pytest.raises(CommandError, match=r"No agent has the email 'ghost@agency\.example'"):
        run_command("x", "--agent", "ghost@agency.example")
    with pytest.raises(CommandError, match="Give the key a name"):
        run_command("  ")
    assert not ApiKey.objects.exists()


def test_the_admin_lists_keys_and_revokes_one(admin_client, db):
    key, secret = make_api_key("policy admin system")

    listing = admin_client.get("/admin/api/apikey/")
    change = admin_client.post(
        f"/admin/api/apikey/{key.pk}/change/",
        {"name": key.name, "read_only": "", "revoked": "on", "expiry_date_0": "", "agent": ""},
    )

    assert b"policy admin system" in listing.content
    assert secret.encode() not in listing.content
    assert change.status_code == 302
    assert Caller(Client(), secret).get("policies").json()["detail"] == "This API key was revoked."


def test_the_admin_shows_a_new_key_once(admin_client, db):
    response = admin_client.post(
        "/admin/api/apikey/add/", {"name": "warehouse", "read_only": "on"}, follow=True
    )

    key = ApiKey.objects.get()
    message = next(str(m) for m in response.context["messages"])
    secret = message.split("is: ")[1].split(". ")[0]
    assert key.read_only
    assert Caller(Client(), secret).get("policies").status_code == 200


def test_renewal_admins_manage_keys_and_support_only_reads_them(client, staff_roles):
    key, _secret = make_api_key("warehouse")
    admin = make_staff("admin", roles=["Renewal admins"])
    support = make_staff("support", roles=["Support (read-only)"])

    client.force_login(admin)
    admin_add = client.get("/admin/api/apikey/add/").status_code
    client.force_login(support)
    support_view = client.get(f"/admin/api/apikey/{key.pk}/change/")
    support_add = client.get("/admin/api/apikey/add/").status_code

    assert admin_add == 200
    assert support_view.status_code == 200
    assert b"warehouse" in support_view.content
    assert support_add == 403
