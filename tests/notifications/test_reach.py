"""The reach rule's two forms agree: `why_unreachable` on one customer (dispatch, the Python
planner) and `reachable_filter` in SQL (the set-based planner, the selectors), on every
combination of consent, address, bounce and wrong number."""

import itertools

import pytest

from notifications import reach
from notifications.models import Channel
from policies.models import Customer, Policy
from tests.factories import make_agent

pytestmark = pytest.mark.django_db

PHONE, OTHER_PHONE = "+14155550123", "+14155550999"


@pytest.fixture
def every_kind_of_customer() -> list[Customer]:
    """A customer for each combination of the fields the rule reads."""
    combinations = itertools.product(
        (True, False),  # email_consent
        ("address", ""),  # email
        (True, False),  # email_undeliverable
        (True, False),  # sms_consent
        (True, False),  # whatsapp_consent
        (PHONE, ""),  # phone
        ("", PHONE, OTHER_PHONE),  # wrong_phone
    )
    return Customer.objects.bulk_create(
        Customer(
            name=f"Case {number}",
            email=f"case{number}@mail.example" if email else "",
            email_consent=email_consent,
            email_undeliverable=undeliverable,
            sms_consent=sms_consent,
            whatsapp_consent=whatsapp_consent,
            phone=phone,
            wrong_phone=wrong_phone,
            timezone="UTC",
        )
        for number, (
            email_consent,
            email,
            undeliverable,
            sms_consent,
            whatsapp_consent,
            phone,
            wrong_phone,
        ) in enumerate(combinations)
    )


@pytest.mark.parametrize("channel", Channel.values)
def test_the_sql_filter_reaches_exactly_the_customers_the_python_rule_reaches(
    every_kind_of_customer, channel
):
    reachable = {c.pk for c in every_kind_of_customer if reach.reachable_by(channel, c)}

    filtered = Customer.objects.filter(reach.reachable_filter(channel))

    assert set(filtered.values_list("pk", flat=True)) == reachable
    assert reachable, "the table of customers should hold some the channel reaches"
    assert len(reachable) < len(every_kind_of_customer)


@pytest.mark.parametrize("channel", Channel.values)
def test_the_sql_filter_through_a_policy_reaches_the_same_customers(
    every_kind_of_customer, channel
):
    agent = make_agent()
    Policy.objects.bulk_create(
        Policy(
            policy_number=f"R-{customer.pk}",
            product_line="auto",
            customer=customer,
            agent=agent,
            start_date="2026-01-01",
            expiry_date="2027-01-01",
        )
        for customer in every_kind_of_customer
    )
    reachable = {c.pk for c in every_kind_of_customer if reach.reachable_by(channel, c)}

    through_policy = Policy.objects.filter(reach.reachable_filter(channel, customer="customer__"))

    assert set(through_policy.values_list("customer_id", flat=True)) == reachable
