"""The quick check of a policy row (bulk) or body (PUT) agrees with its serializer: the same values
for a valid row, and, for any row it does not vouch for, None (the serializer then answers)."""

import pytest
from rest_framework import serializers

from api.serializers import PlainStrings, PolicyFields, PolicyRowIn, StrictSerializer, StrictString

VALID = {
    "policy_number": "P-1",
    "product_line": "auto",
    "customer_name": "Ana Peña",
    "customer_email": "ana@example.com",
    "customer_phone": "+34 600 000 000",
    "customer_timezone": "Europe/Madrid",
    "customer_language": "es",
    "agent_email": "agent@agency.example",
    "start_date": "2026-01-01",
    "expiry_date": "2027-01-01",
    "status": "active",
}
ROWS = [
    VALID,
    {**VALID, "customer_name": "  padded  ", "status": " "},
    {name: value for name, value in VALID.items() if name != "status"},
    {**VALID, "customer_phone": ""},
    {**VALID, "customer_name": "名前 😀"},
    {**VALID, "customer_name": ""},
    {**VALID, "customer_name": "   "},
    {name: value for name, value in VALID.items() if name != "customer_name"},
    {**VALID, "policy_number": "P" * 65},
    {**VALID, "policy_number": "P" * 64},
    {**VALID, "policy_number": " " + "P" * 64 + " "},
    {**VALID, "customer_name": "a\x00b"},
    {**VALID, "status": "\x00"},
    {**VALID, "customer_phone": " \t "},
    {**VALID, "customer_name": "a\ud800b"},
    {**VALID, "customer_phone": 600000000},
    {**VALID, "status": None},
    {**VALID, "status": True},
    {**VALID, "colour": "red"},
    ["not", "an", "object"],
    "a string",
    None,
    {},
]


def serializer_answer(shape, row):
    serializer = shape(data=row)
    return dict(serializer.validated_data) if serializer.is_valid() else None


@pytest.mark.parametrize("shape", [PolicyRowIn, PolicyFields])
@pytest.mark.parametrize("row", ROWS)
def test_the_quick_check_answers_what_the_serializer_answers_or_leaves_it_to_it(shape, row):
    quick = PlainStrings(shape())(row)

    if quick is not None:
        assert quick == serializer_answer(shape, row)


def test_a_put_body_without_the_number_of_its_path_is_vouched_for():
    body = {name: value for name, value in VALID.items() if name != "policy_number"}

    assert PlainStrings(PolicyFields())(body) == body
    assert PlainStrings(PolicyFields())(VALID) is None  # policy_number is not a body field


def test_the_quick_check_vouches_for_the_usual_rows():
    check = PlainStrings(PolicyRowIn())

    assert check(VALID) == VALID
    assert check({**VALID, "customer_name": "  Ana  "})["customer_name"] == "Ana"
    assert check({**VALID, "customer_name": "名前 😀"})["customer_name"] == "名前 😀"


def test_a_shape_with_a_rule_the_quick_check_does_not_know_is_refused():
    class WithEmail(StrictSerializer):
        name = StrictString()
        email = serializers.EmailField()

    with pytest.raises(TypeError, match=r"WithEmail\.email"):
        PlainStrings(WithEmail())
