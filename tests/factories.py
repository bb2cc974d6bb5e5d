"""Small builders for test data; each writes real rows through the real models."""

from datetime import date, timedelta

from policies.models import Agent, Customer, Policy
from policies.services import ensure_agent


def make_agent(username: str = "agent", email: str = "agent@agency.example") -> Agent:
    return ensure_agent(username=username, email=email, first_name=username.title())


def make_customer(email: str = "pat@mail.example", **fields) -> Customer:
    defaults = {"name": "Pat Doe", "phone": "+14155550123", "timezone": "Europe/Madrid"}
    return Customer.objects.create(email=email, **{**defaults, **fields})


def make_policy(
    policy_number: str = "P-1",
    *,
    customer: Customer,
    agent: Agent,
    expiry_date: date,
    **fields,
) -> Policy:
    defaults = {
        "product_line": "auto",
        "start_date": expiry_date - timedelta(days=365),
        "status": Policy.Status.ACTIVE,
    }
    return Policy.objects.create(
        policy_number=policy_number,
        customer=customer,
        agent=agent,
        expiry_date=expiry_date,
        **{**defaults, **fields},
    )
