"""Small builders for test data; each writes real rows through the real models."""

from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from notifications import planning
from notifications.models import MessageTemplate, Notification, ReminderRule
from policies.models import Agent, Customer, Policy
from policies.services import ensure_agent


def make_agent(username: str = "agent", email: str = "agent@agency.example") -> Agent:
    return ensure_agent(username=username, email=email, first_name=username.title())


def make_staff(username: str, *, roles=(), permissions=(), password=None, **fields):
    """A staff login with the role groups and "app_label.codename" permissions named."""
    user = get_user_model().objects.create_user(
        username, f"{username}@insurer.example", password, is_staff=True, **fields
    )
    user.groups.set(Group.objects.filter(name__in=roles))
    for permission in permissions:
        app_label, codename = permission.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


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


def make_template(channel: str = "email", name: str | None = None) -> MessageTemplate:
    return MessageTemplate.objects.create(
        name=name or f"test {channel} template",
        channel=channel,
        subject="Policy {{ policy.policy_number }} expires {{ expiry_date|date:'Y-m-d' }}",
        body="Dear {{ customer.name }}, {{ policy.policy_number }} expires in {{ days_left }}d.",
    )


def make_rule(
    lead_days: int, channel: str = "email", product_line: str = "", **fields
) -> ReminderRule:
    template = MessageTemplate.objects.filter(channel=channel).first() or make_template(channel)
    return ReminderRule.objects.create(
        lead_days=lead_days, channel=channel, product_line=product_line, template=template, **fields
    )


def queue_an_email_and_an_sms(email: str, phone: str) -> dict[str, Notification]:
    """Exactly two rules (email and SMS, 7 days), one customer's policy due under both, planned
    and queued as the fan-out leaves them: {channel: Notification}."""
    ReminderRule.objects.all().delete()
    make_rule(7, "email")
    make_rule(7, "sms")
    today = timezone.localdate()
    customer = make_customer(email, phone=phone)
    make_policy("P-7", customer=customer, agent=make_agent(), expiry_date=today + timedelta(7))
    planning.plan_due(run_date=today)
    planning.claim_for_enqueue(limit=10, stalled_after=timedelta(hours=1))
    return {n.channel: n for n in Notification.objects.all()}
