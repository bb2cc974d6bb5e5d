"""Policies through the API: upserts one at a time and in bulk with the CSV importer's own rule,
a policy's timeline, pages of what changed, and renewals, cancellations and lapses that cancel
their reminders in the same transaction."""

from datetime import date, timedelta

import pytest
from django.utils import timezone

from notifications.models import Notification
from policies.importers import COLUMNS, import_policies
from policies.models import Agent, Customer, Policy
from tests.factories import (
    make_customer,
    make_event,
    make_notification,
    make_policy,
    policy_csv,
    policy_row,
)

pytestmark = pytest.mark.django_db
Status = Notification.Status


def body(number: str = "P-1", **fields) -> dict:
    """A PUT body: a CSV row's fields but the number, which is in the path."""
    row = {**policy_row(number, "agent@agency.example"), **fields}
    del row["policy_number"]
    return row


# --- PUT /policies/{number} -----------------------------------------------------------------


def test_a_put_creates_the_policy_and_its_customer(integration, agent):
    response = integration.put("policies/P-1", body(customer_phone="+1 (415) 555-2671"))

    assert response.status_code == 201
    assert response.json()["outcome"] == "created"
    policy = Policy.objects.get(policy_number="P-1")
    assert policy.agent == agent
    assert policy.customer.phone == "+14155552671"
    answered = response.json()["policy"]
    assert answered["policy_number"] == "P-1"
    assert answered["customer"]["email"] == "p-1@mail.example"
    assert answered["customer"]["consent"] == {
        "email": True,
        "sms": True,
        "whatsapp": False,
        "email_undeliverable": False,
    }


def test_a_puts_answer_shows_the_policy_as_a_get_does_without_its_reminders(integration, agent):
    integration.put(
        "policies/P-1",
        body(customer_timezone="Europe/Madrid", customer_language="es", customer_phone=""),
    )
    Customer.objects.update(sms_consent=False, email_undeliverable=True)

    answered = integration.put("policies/P-1", body(product_line="home")).json()["policy"]

    shown = integration.get("policies/P-1").json()
    del shown["reminders"]
    assert answered == shown
    assert answered["customer"]["timezone"] == "Europe/Madrid"
    assert answered["customer"]["consent"] == {
        "email": True,
        "sms": False,
        "whatsapp": False,
        "email_undeliverable": True,
    }


def test_the_same_put_again_changes_nothing_and_says_so(integration, agent):
    integration.put("policies/P-1", body())
    stamp = Policy.objects.get().updated_at

    response = integration.put("policies/P-1", body())

    assert response.status_code == 200
    assert response.json()["outcome"] == "unchanged"
    assert Policy.objects.get().updated_at == stamp


def test_a_put_with_a_new_expiry_updates_the_policy(integration, agent):
    integration.put("policies/P-1", body())

    response = integration.put("policies/P-1", body(expiry_date="2027-06-01"))

    assert response.status_code == 200
    assert response.json()["outcome"] == "updated"
    assert Policy.objects.get().expiry_date == date(2027, 6, 1)


BAD_CELLS = [
    {"customer_email": "not-an-address"},
    {"expiry_date": "2026-02-30"},
    {"expiry_date": "2025-01-01"},
    {"customer_phone": "12"},
    {"customer_timezone": "Mars/Olympus"},
    {"customer_language": "tlh"},
    {"status": "pending"},
    {"agent_email": "nobody@agency.example"},
    {"customer_name": ""},
]


@pytest.mark.parametrize("cells", BAD_CELLS)
def test_a_bad_value_is_refused_with_the_csv_importers_own_reason(integration, agent, cells):
    from_csv = import_policies(policy_csv([{**policy_row("P-1", agent.email), **cells}]).file)

    response = integration.put("policies/P-1", body(**cells))

    assert response.status_code == 422
    assert response["Content-Type"] == "application/problem+json"
    (rejected,) = from_csv.rejected
    problem = response.json()
    assert problem["detail"] == rejected.reason
    (error,) = problem["errors"]
    assert error["detail"] == rejected.reason
    assert error["pointer"] == "/" + next(iter(cells))
    assert not Policy.objects.exists()


def test_an_unknown_agent_is_created_only_when_the_request_says_so(integration, db):
    refused = integration.put("policies/P-1", body(agent_email="new@agency.example"))
    created = integration.put(
        "policies/P-1?unknown_agents=create", body(agent_email="new@agency.example")
    )

    assert refused.status_code == 422
    assert "unknown agent_email 'new@agency.example'" in refused.json()["detail"]
    assert created.status_code == 201
    assert created.json()["agents_created"] == ["new@agency.example"]
    new = Agent.objects.get(email="new@agency.example")
    assert not new.user.has_usable_password()


def test_a_book_limited_key_writes_its_own_agents_policies_without_naming_the_agent(
    agents_integration, agent
):
    fields = body()
    del fields["agent_email"]

    response = agents_integration.put("policies/P-1", fields)

    assert response.status_code == 201
    assert Policy.objects.get().agent == agent


def test_a_book_limited_key_finds_no_policy_of_another_book_even_to_overwrite(
    agents_integration, agent, other_agent
):
    brunos = make_policy(
        "B-1", customer=make_customer(), agent=other_agent, expiry_date=date(2027, 1, 1)
    )

    got = agents_integration.get("policies/B-1")
    put = agents_integration.put("policies/B-1", body())

    assert got.status_code == put.status_code == 404
    assert got.json()["detail"] == put.json()["detail"] == "No policy 'B-1'."
    brunos.refresh_from_db()
    assert brunos.agent == other_agent


# --- POST /policies/bulk --------------------------------------------------------------------


def row(number: str, **fields) -> dict:
    return policy_row(number, "agent@agency.example", **fields)


def test_bulk_answers_each_row_and_applies_the_good_ones(integration, agent):
    integration.put("policies/P-2", body("P-2"))
    integration.put("policies/P-3", body("P-3"))
    rows = [
        row("P-1"),
        row("P-2"),
        row("P-3", expiry_date="2027-09-01"),
        row("P-4", customer_email="nope"),
        "not a row",
        {**row("P-5"), "colour": "red"},
        row("P-6", customer_phone=4155550100),
        row("P-1"),
    ]

    response = integration.post("policies/bulk", {"rows": rows})

    assert response.status_code == 200
    answer = response.json()
    assert [(r["index"], r["policy_number"], r["outcome"]) for r in answer["rows"]] == [
        (0, "P-1", "created"),
        (1, "P-2", "unchanged"),
        (2, "P-3", "updated"),
        (3, "P-4", "rejected"),
        (4, "", "rejected"),
        (5, "P-5", "rejected"),
        (6, "P-6", "rejected"),
        (7, "P-1", "rejected"),
    ]
    reasons = {r["index"]: r.get("reason") for r in answer["rows"]}
    assert reasons[3] == "invalid customer_email 'nope'"
    assert reasons[4] == "Must be a JSON object."
    assert reasons[5] == "colour: Unknown field."
    assert reasons[6] == "customer_phone: Must be a string."
    assert reasons[7] == "policy_number 'P-1' repeats row 0 of this request"
    assert (answer["created"], answer["updated"], answer["unchanged"], answer["rejected"]) == (
        1,
        1,
        1,
        5,
    )
    assert set(Policy.objects.values_list("policy_number", flat=True)) == {"P-1", "P-2", "P-3"}


def test_bulk_takes_at_most_the_configured_number_of_rows(integration, agent, settings):
    settings.API_BULK_MAX_ROWS = 3

    response = integration.post("policies/bulk", {"rows": [row(f"P-{n}") for n in range(4)]})

    assert response.status_code == 413
    assert response.json()["errors"] == [{"pointer": "/rows", "detail": "at most 3 rows"}]
    assert not Policy.objects.exists()


def test_bulk_with_unknown_agents_create_creates_each_agent_once(integration, db):
    rows = [
        policy_row("P-1", "new@agency.example"),
        policy_row("P-2", "NEW@agency.example"),
    ]

    answer = integration.post("policies/bulk", {"rows": rows, "unknown_agents": "create"}).json()

    assert answer["agents_created"] == ["new@agency.example"]
    assert answer["created"] == 2


def test_bulk_rows_use_the_importers_columns():
    from api.serializers import PolicyRowIn

    assert set(PolicyRowIn().fields) == set(COLUMNS)


# --- GET /policies/{number} and /policies ---------------------------------------------------


def test_a_policy_is_answered_with_its_consent_and_reminder_timeline(integration, agent):
    customer = make_customer(sms_consent=False)
    policy = make_policy("P-1", customer=customer, agent=agent, expiry_date=date(2027, 1, 1))
    email = make_notification(policy, status=Status.DELIVERED, provider_message_id="pm-1")
    make_event(email, "sent", minutes=0, reason="")
    make_event(email, "delivered", minutes=5)
    make_notification(policy, lead_days=7, status=Status.PLANNED)

    answer = integration.get("policies/P-1").json()

    assert answer["customer"]["consent"]["sms"] is False
    assert [(r["lead_days"], r["status"]) for r in answer["reminders"]] == [
        (30, "delivered"),
        (7, "planned"),
    ]
    assert [e["type"] for e in answer["reminders"][0]["events"]] == ["sent", "delivered"]
    assert answer["reminders"][0]["provider_message_id"] == "pm-1"


def test_an_unknown_policy_is_a_404_problem(integration):
    response = integration.get("policies/NOPE")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "No policy 'NOPE'."


def test_policies_page_by_cursor_in_the_order_they_changed_without_repeats(integration, agent):
    customer = make_customer()
    for n in range(7):
        make_policy(f"P-{n}", customer=customer, agent=agent, expiry_date=date(2027, 1, 1))
    # Several rows with the same updated_at: the cursor still neither repeats nor skips one.
    same = timezone.now()
    Policy.objects.filter(policy_number__in=["P-2", "P-3", "P-4"]).update(updated_at=same)

    seen, cursor, pages = [], "", 0
    while True:
        answer = integration.get(f"policies?limit=3&cursor={cursor}").json()
        seen += [policy["policy_number"] for policy in answer["results"]]
        pages += 1
        if not (cursor := answer["next_cursor"]):
            break

    assert sorted(seen) == [f"P-{n}" for n in range(7)]
    assert len(seen) == 7
    assert pages == 3


def test_policies_changed_since_a_time_and_of_a_status(integration, agent):
    customer = make_customer()
    old = make_policy("OLD", customer=customer, agent=agent, expiry_date=date(2027, 1, 1))
    Policy.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=2))
    make_policy("NEW", customer=customer, agent=agent, expiry_date=date(2027, 1, 1))
    make_policy(
        "GONE", customer=customer, agent=agent, expiry_date=date(2027, 1, 1), status="lapsed"
    )
    since = (timezone.now() - timedelta(days=1)).isoformat().replace("+00:00", "Z")

    recent = integration.get(f"policies?updated_since={since}").json()["results"]
    lapsed = integration.get("policies?status=lapsed").json()["results"]

    assert {p["policy_number"] for p in recent} == {"NEW", "GONE"}
    assert [p["policy_number"] for p in lapsed] == ["GONE"]


@pytest.mark.parametrize(
    ("query", "parameter"),
    [
        ("status=pending", "status"),
        ("updated_since=yesterday", "updated_since"),
        ("limit=0", "limit"),
        ("limit=many", "limit"),
        ("cursor=not-ours", "cursor"),
    ],
)
def test_a_bad_query_parameter_is_a_400_naming_it(integration, query, parameter):
    response = integration.get(f"policies?{query}")

    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert parameter in response.json()["detail"]


def test_a_book_limited_key_lists_only_its_books_policies(agents_integration, agent, other_agent):
    customer = make_customer()
    make_policy("MINE", customer=customer, agent=agent, expiry_date=date(2027, 1, 1))
    make_policy("BRUNOS", customer=customer, agent=other_agent, expiry_date=date(2027, 1, 1))

    answer = agents_integration.get("policies").json()

    assert [p["policy_number"] for p in answer["results"]] == ["MINE"]


# --- Renewal, cancellation, lapse ------------------------------------------------------------


@pytest.fixture
def policy_with_reminders(agent):
    expiry = timezone.localdate() + timedelta(days=40)
    policy = make_policy("P-1", customer=make_customer(), agent=agent, expiry_date=expiry)
    return {
        "policy": policy,
        "planned": make_notification(policy, lead_days=7),
        "deferred": make_notification(policy, channel="sms", lead_days=7, status=Status.DEFERRED),
        "sent": make_notification(policy, lead_days=30, status=Status.SENT),
    }


def test_a_renewal_moves_the_expiry_and_cancels_the_waiting_reminders_it_lists(
    integration, policy_with_reminders
):
    new_expiry = policy_with_reminders["policy"].expiry_date + timedelta(days=365)

    response = integration.post("policies/P-1/renewal", {"expiry_date": new_expiry.isoformat()})

    assert response.status_code == 200
    answer = response.json()
    assert answer["policy"]["expiry_date"] == new_expiry.isoformat()
    cancelled = {r["id"] for r in answer["cancelled_reminders"]}
    assert cancelled == {policy_with_reminders["planned"].pk, policy_with_reminders["deferred"].pk}
    assert all(r["status"] == "cancelled" for r in answer["cancelled_reminders"])
    policy_with_reminders["sent"].refresh_from_db()
    assert policy_with_reminders["sent"].status == Status.SENT


@pytest.mark.parametrize(("path", "status"), [("cancellation", "cancelled"), ("lapse", "lapsed")])
def test_a_cancellation_or_lapse_ends_the_policy_and_its_waiting_reminders(
    integration, policy_with_reminders, path, status
):
    response = integration.post(f"policies/P-1/{path}")

    assert response.status_code == 200
    assert response.json()["policy"]["status"] == status
    assert len(response.json()["cancelled_reminders"]) == 2
    assert Notification.objects.filter(status=Status.CANCELLED).count() == 2


def test_a_change_the_policy_cannot_take_is_422_and_changes_nothing(
    integration, policy_with_reminders
):
    integration.post("policies/P-1/cancellation")

    lapse = integration.post("policies/P-1/lapse")
    renewal = integration.post("policies/P-1/renewal", {"expiry_date": "2099-01-01"})

    assert lapse.status_code == renewal.status_code == 422
    assert lapse.json()["detail"] == "Only an active policy can lapse; this one is cancelled."
    assert renewal.json()["detail"] == (
        "A cancelled policy cannot be renewed; create a new policy instead."
    )
    assert Policy.objects.get().status == "cancelled"


def test_a_renewal_that_fails_half_way_cancels_no_reminder(
    integration, policy_with_reminders, monkeypatch
):
    from notifications import planning

    def broken(**kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(planning, "cancelled_outdated", broken)
    new_expiry = policy_with_reminders["policy"].expiry_date + timedelta(days=365)

    with pytest.raises(RuntimeError):
        integration.post("policies/P-1/renewal", {"expiry_date": new_expiry.isoformat()})

    policy_with_reminders["policy"].refresh_from_db()
    assert policy_with_reminders["policy"].expiry_date != new_expiry
    assert not Notification.objects.filter(status=Status.CANCELLED).exists()


def test_a_renewal_needs_a_valid_date(integration, policy_with_reminders):
    missing = integration.post("policies/P-1/renewal", {})
    wrong = integration.post("policies/P-1/renewal", {"expiry_date": "next year"})

    assert missing.status_code == wrong.status_code == 400
    assert missing.json()["errors"] == [
        {"pointer": "/expiry_date", "detail": "This field is required."}
    ]
    assert wrong.json()["errors"][0]["pointer"] == "/expiry_date"


def test_customers_are_found_by_email_across_api_writes(integration, agent):
    integration.put("policies/P-1", body(customer_email="pat@mail.example"))
    integration.put("policies/P-2", body("P-2", customer_email="PAT@mail.example"))

    assert Customer.objects.count() == 1


def test_a_row_rejected_for_another_reason_creates_no_agent(integration, db):
    response = integration.put(
        "policies/P-1?unknown_agents=create",
        body(agent_email="new@agency.example", start_date="2026-13-01"),
    )

    assert response.status_code == 422
    assert not Agent.objects.filter(email="new@agency.example").exists()


def test_a_lone_surrogate_in_a_bulk_row_rejects_that_row_only(integration, agent):
    answer = integration.post(
        "policies/bulk",
        raw=b'{"rows": [' + json_row("P-1") + b", " + json_row("P-2", "Pat \\ud800") + b"]}",
    ).json()

    assert [r["outcome"] for r in answer["rows"]] == ["created", "rejected"]
    assert "Surrogate characters are not allowed" in answer["rows"][1]["reason"]


def json_row(number: str, customer_name: str = "Pat") -> bytes:
    import json

    fields = {**row(number), "customer_name": "NAME"}
    return json.dumps(fields).replace('"NAME"', f'"{customer_name}"').encode()


def test_an_agents_import_never_takes_over_a_policy_another_agent_got_meanwhile(
    agent, other_agent, monkeypatch
):
    from policies import importers

    # Another agent's import commits P-1 after this import's book check looked.
    make_policy("P-1", customer=make_customer(), agent=other_agent, expiry_date=date(2027, 1, 1))
    monkeypatch.setattr(importers, "_rows_of_own_book", lambda store, rows, *args: rows)

    summary = importers.import_rows(
        [(0, {**row("P-1"), "customer_email": "other@mail.example"})], only_agent_id=agent.pk
    )

    assert [r.reason for r in summary.rejected] == ["policy_number belongs to another agent"]
    assert Policy.objects.get(policy_number="P-1").agent == other_agent


def test_a_renewal_date_follows_the_importers_date_rule(integration, policy_with_reminders):
    response = integration.post("policies/P-1/renewal", {"expiry_date": "20280101"})

    assert response.status_code == 400
    assert response.json()["detail"] == "invalid expiry_date '20280101' (expected YYYY-MM-DD)"
