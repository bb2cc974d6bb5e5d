"""Bad input answers an RFC 9457 problem (application/problem+json) naming what is wrong, with
a JSON pointer to the field; never a traceback, never a 500, and nothing is written."""

import pytest

from policies.models import Agent, Policy

pytestmark = pytest.mark.django_db


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status
    assert response["Content-Type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["type"] == "about:blank"
    assert problem["title"]
    assert problem["detail"]
    return problem


def test_malformed_json_is_400(integration):
    problem = assert_problem(
        integration.put("agents/ana@agency.example", raw=b'{"first_name": "Ana",'), 400
    )

    assert "JSON parse error" in problem["detail"]
    assert not Agent.objects.exists()


def test_a_body_that_is_not_an_object_is_400(integration):
    problem = assert_problem(integration.put("agents/ana@agency.example", ["Ana"]), 400)

    assert problem["errors"] == [{"pointer": "", "detail": "Must be a JSON object."}]


def test_wrong_types_are_400_pointing_at_each_field(integration):
    problem = assert_problem(
        integration.put("agents/ana@agency.example", {"first_name": 7, "active": "yes"}), 400
    )

    assert sorted((e["pointer"], e["detail"]) for e in problem["errors"]) == [
        ("/active", "Must be true or false."),
        ("/first_name", "Must be a string."),
    ]


def test_unknown_fields_are_400_not_silently_dropped(integration, agent):
    problem = assert_problem(
        integration.put("customers/1/consent", {"email": True, "whatsapp": True}), 404
    )
    assert problem["detail"] == "No customer 1."

    problem = assert_problem(
        integration.put("agents/ana@agency.example", {"first_name": "Ana", "nickname": "A"}), 400
    )
    assert problem["errors"] == [{"pointer": "/nickname", "detail": "Unknown field."}]
    assert not Agent.objects.filter(email="ana@agency.example").exists()


def test_an_oversized_body_is_413_and_nothing_is_read_or_written(integration, settings, agent):
    settings.API_MAX_BODY_BYTES = 1000
    rows = [{"policy_number": f"P-{n}", "product_line": "auto"} for n in range(100)]

    problem = assert_problem(integration.post("policies/bulk", {"rows": rows}), 413)

    assert problem["detail"] == "The body is larger than 1000 bytes."
    assert not Policy.objects.exists()


def test_a_body_that_is_not_json_is_415(integration):
    response = integration.client.put(
        "/api/v1/agents/ana@agency.example",
        "first_name=Ana",
        content_type="application/x-www-form-urlencoded",
        headers={"Authorization": f"Api-Key {integration.secret}"},
    )

    assert_problem(response, 415)


def test_an_unknown_endpoint_is_a_404_problem(integration):
    problem = assert_problem(integration.get("policy/P-1"), 404)

    assert problem["detail"] == "There is no API endpoint at /api/v1/policy/P-1."


def test_a_method_an_endpoint_does_not_take_is_405(integration):
    assert_problem(integration.call("DELETE", "policies/P-1"), 405)


def test_an_invalid_agent_email_in_the_path_is_404(integration):
    assert_problem(integration.get("agents/not-an-email"), 404)
    assert_problem(integration.put("agents/not-an-email", {}), 404)


def test_an_invalid_agent_phone_is_400_pointing_at_it(integration):
    problem = assert_problem(integration.put("agents/ana@agency.example", {"phone": "12"}), 400)

    assert problem["errors"][0]["pointer"] == "/phone"
    assert not Agent.objects.exists()


def test_a_nul_byte_in_a_policy_number_is_refused_not_a_500(integration, agent):
    response = integration.get("policies/P%001")

    assert response.status_code == 404
