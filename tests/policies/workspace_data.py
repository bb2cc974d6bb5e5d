"""Books of business for the workspace tests: two agents, their policies and notifications."""

from dataclasses import dataclass
from datetime import date, timedelta

from django.utils import timezone

from notifications.models import DeliveryEvent, Notification, ReminderRule, ReminderRun
from policies.models import Agent, Policy
from tests.factories import make_agent, make_customer, make_policy, make_rule

PASSWORD = "renewly-test-password"


def login_user(agent: Agent) -> Agent:
    agent.user.set_password(PASSWORD)
    agent.user.save(update_fields=["password"])
    return agent


def rule_for(channel: str, lead_days: int) -> ReminderRule:
    return ReminderRule.objects.filter(
        channel=channel, lead_days=lead_days, product_line=""
    ).first() or make_rule(lead_days, channel)


def make_notification(
    policy: Policy,
    *,
    channel: str = "email",
    lead_days: int = 30,
    status: str = Notification.Status.PLANNED,
    **fields,
) -> Notification:
    run = ReminderRun.objects.first() or ReminderRun.objects.create(run_date=date.today())
    return Notification.objects.create(
        policy=policy,
        customer=policy.customer,
        rule=rule_for(channel, lead_days),
        run=run,
        channel=channel,
        expiry_date=policy.expiry_date,
        lead_days=lead_days,
        due_on=policy.expiry_date - timedelta(days=lead_days),
        status=status,
        **fields,
    )


def make_event(notification: Notification, event_type: str, *, minutes: int, **fields):
    return DeliveryEvent.objects.create(
        notification=notification,
        provider=fields.pop("provider", "twilio" if notification.channel == "sms" else "postmark"),
        event_type=event_type,
        provider_event_id=f"{notification.pk}:{event_type}:{minutes}",
        occurred_at=timezone.now() - timedelta(days=1) + timedelta(minutes=minutes),
        **fields,
    )


@dataclass
class Books:
    mine: Agent
    theirs: Agent
    my_policy: Policy
    their_policy: Policy
    my_notice: Notification
    their_notice: Notification


def two_books(today: date) -> Books:
    """Agent "alice" and agent "bruno", one policy and one failed notice each."""
    alice = login_user(make_agent("alice", "alice@agency.example"))
    bruno = login_user(make_agent("bruno", "bruno@agency.example"))
    my_policy = make_policy(
        "ALICE-1",
        customer=make_customer("ann@mail.example", name="Ann Alder"),
        agent=alice,
        expiry_date=today + timedelta(days=20),
    )
    their_policy = make_policy(
        "BRUNO-1",
        customer=make_customer("zed@mail.example", name="Zed Zimmer"),
        agent=bruno,
        expiry_date=today + timedelta(days=25),
    )
    return Books(
        mine=alice,
        theirs=bruno,
        my_policy=my_policy,
        their_policy=their_policy,
        my_notice=make_notification(my_policy, status=Notification.Status.FAILED, lead_days=14),
        their_notice=make_notification(
            their_policy, status=Notification.Status.FAILED, lead_days=14
        ),
    )
