"""One rule for phone numbers (policies/phones.py), where they are stored and wherever they come
in: the admin's customer and agent forms, the importer, the preview's test send."""

import re

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse

from policies import phones
from policies.importers import RowError, normalise_phone
from policies.models import Customer
from tests.factories import make_agent, make_customer

BAD_NUMBER = "+1 555"
MESSAGE = (
    "&#x27;+1 555&#x27; is not a phone number Renewly can send to: not a valid number "
    "(write it as +14155550100)."
)


def customer_form(customer: Customer, phone: str) -> dict:
    return {
        "name": customer.name,
        "email": customer.email,
        "phone": phone,
        "language": customer.language,
        "timezone": str(customer.timezone),
        "email_consent": "on",
        "sms_consent": "on",
        "consent_changes-TOTAL_FORMS": "0",
        "consent_changes-INITIAL_FORMS": "0",
    }


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("+1 (415) 555-2671", "+14155552671"),
        ("+34 612 34 56 78", "+34612345678"),
        ("+442079460958", "+442079460958"),
    ],
)
def test_a_number_with_its_country_code_is_kept_in_e164(typed, stored):
    assert phones.to_e164(typed) == stored


@pytest.mark.parametrize(
    ("typed", "reason"),
    [
        ("+1 555", "not a valid number"),
        ("(415) 555-2671", "start it with + and the country code"),
        ("+99 123", "Could not interpret numbers after plus-sign."),
    ],
)
def test_a_number_that_cannot_be_sent_to_is_refused_saying_why(typed, reason):
    with pytest.raises(phones.InvalidPhoneNumber, match=rf"^{re.escape(reason)}$"):
        phones.to_e164(typed)


def test_the_admin_refuses_an_invalid_customer_number_with_the_reason(admin_client, db):
    customer = make_customer("kai@mail.example", name="Kai Ng")
    change = reverse("admin:policies_customer_change", args=[customer.pk])

    response = admin_client.post(change, customer_form(customer, BAD_NUMBER))

    assert response.status_code == 200  # the form again, with its error
    assert MESSAGE in response.content.decode()
    customer.refresh_from_db()
    assert customer.phone == "+14155550123"


def test_the_admin_saves_a_customer_number_typed_with_spaces_in_e164(admin_client, db):
    customer = make_customer("kai@mail.example", name="Kai Ng")
    change = reverse("admin:policies_customer_change", args=[customer.pk])

    response = admin_client.post(change, customer_form(customer, " +34 612 34 56 78 "))

    assert response.status_code == 302
    customer.refresh_from_db()
    assert customer.phone == "+34612345678"


def test_the_admin_refuses_an_invalid_agent_number_and_saves_a_valid_one_in_e164(admin_client, db):
    agent = make_agent()
    change = reverse("admin:policies_agent_change", args=[agent.pk])
    form = {"user": agent.user.pk, "email": agent.email}

    refused = admin_client.post(change, {**form, "phone": BAD_NUMBER})
    saved = admin_client.post(change, {**form, "phone": "+1 (415) 555-2671"})

    assert MESSAGE in refused.content.decode()
    assert saved.status_code == 302
    agent.refresh_from_db()
    assert agent.phone == "+14155552671"


def test_the_importer_refuses_the_same_number_with_its_own_message():
    with pytest.raises(RowError, match=r"^invalid customer_phone '\+1 555': not a valid number$"):
        normalise_phone(BAD_NUMBER)


def test_a_number_stored_other_than_in_e164_fails_the_models_validation(db):
    customer = make_customer("kai@mail.example", phone="+1 415 555 2671")

    with pytest.raises(ValidationError, match=r"Store the number in E.164: \+14155552671"):
        customer.full_clean()
