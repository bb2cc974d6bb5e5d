"""The test suite's one set of builders: each writes real rows through the real models.
Fixtures (conftest.py files) call these; tests call them for anything more."""

import csv
import io
from dataclasses import dataclass
from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from api.models import ApiKey
from events.models import Subscription
from notifications import planning
from notifications.models import (
    Channel,
    DeliveryEvent,
    MessageTemplate,
    Notification,
    ReminderRule,
    ReminderRun,
    TemplateExperiment,
    TemplateVariant,
)
from policies import feeds
from policies.importers import COLUMNS
from policies.models import Agent, Customer, Feed, ImportJob, Policy
from policies.services import ensure_agent

PASSWORD = "renewly-test-password"
# A subject and body whose rendering a test can predict without knowing today's date.
SUBJECT = "Policy {{ policy.policy_number }} expires {{ expiry_date|date:'Y-m-d' }}"
BODY = "Dear {{ customer.name }}, {{ policy.policy_number }} expires on {{ expiry_date }}."


def make_agent(username: str = "agent", email: str = "agent@agency.example") -> Agent:
    return ensure_agent(username=username, email=email, first_name=username.title())


def with_password(agent: Agent) -> Agent:
    """The agent, able to log in with PASSWORD (as a browser would, not force_login)."""
    agent.user.set_password(PASSWORD)
    agent.user.save(update_fields=["password"])
    return agent


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


def template_for(channel: str, name: str = "") -> MessageTemplate:
    """The template named `name` (one per channel by default), made once, with SUBJECT and BODY."""
    template, _ = MessageTemplate.objects.get_or_create(
        name=name or f"test reminder ({channel})",
        defaults={
            "channel": channel,
            "subject": SUBJECT if channel == Channel.EMAIL else "",
            "body": BODY,
        },
    )
    return template


def make_rule(
    lead_days: int,
    channel: str = "email",
    product_line: str = "",
    *,
    template: MessageTemplate | None = None,
    **fields,
) -> ReminderRule:
    """A rule; without `template`, any of the channel's templates (or a new one)."""
    template = (
        template
        or MessageTemplate.objects.filter(channel=channel, kind="reminder").first()
        or make_template(channel)
    )
    return ReminderRule.objects.create(
        lead_days=lead_days, channel=channel, product_line=product_line, template=template, **fields
    )


def rule_for(channel: str, lead_days: int) -> ReminderRule:
    """The rule for every product line with this channel and lead time, made if missing."""
    return ReminderRule.objects.filter(
        channel=channel, lead_days=lead_days, product_line=""
    ).first() or make_rule(lead_days, channel)


def make_experiment(
    rule: ReminderRule, *templates: MessageTemplate, weights=(), name: str = "Wording trial"
) -> TemplateExperiment:
    """A running experiment on `rule`, one variant per template labelled A, B, C..., weighted
    by `weights` (1 each by default)."""
    experiment = TemplateExperiment.objects.create(rule=rule, name=name)
    for index, template in enumerate(templates):
        TemplateVariant.objects.create(
            experiment=experiment,
            label="ABCDEFGH"[index],
            template=template,
            weight=weights[index] if weights else 1,
        )
    return experiment


def make_notification(
    policy: Policy,
    *,
    channel: str = "email",
    lead_days: int = 30,
    status: str = Notification.Status.PLANNED,
    **fields,
) -> Notification:
    """A notification about the policy's current expiry, as planning would have made it."""
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


def make_event(
    notification: Notification, event_type: str, *, minutes: int, **fields
) -> DeliveryEvent:
    """A provider's delivery event, `minutes` after the same time yesterday."""
    return DeliveryEvent.objects.create(
        notification=notification,
        provider=fields.pop("provider", "twilio" if notification.channel == "sms" else "postmark"),
        event_type=event_type,
        provider_event_id=f"{notification.pk}:{event_type}:{minutes}",
        occurred_at=timezone.now() - timedelta(days=1) + timedelta(minutes=minutes),
        **fields,
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


@dataclass
class Books:
    mine: Agent
    theirs: Agent
    my_policy: Policy
    their_policy: Policy
    my_notice: Notification
    their_notice: Notification


def two_books(today: date) -> Books:
    """Agent "alice" and agent "bruno" (each logs in with PASSWORD), one policy and one failed
    notice each."""
    alice = with_password(make_agent("alice", "alice@agency.example"))
    bruno = with_password(make_agent("bruno", "bruno@agency.example"))
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


# --- Policy files and their import jobs -----------------------------------------------------

ROW_EXPIRY = date(2027, 3, 1)


def policy_row(number: str, agent_email: str, **fields) -> dict:
    """One row of a policy CSV in the importer's columns, expiring on ROW_EXPIRY."""
    return {
        "policy_number": number,
        "product_line": "auto",
        "customer_name": f"Customer {number}",
        "customer_email": f"{number.lower()}@mail.example",
        "customer_phone": "+14155550100",
        "customer_timezone": "Europe/Madrid",
        "customer_language": "en",
        "agent_email": agent_email,
        "start_date": (ROW_EXPIRY - timedelta(days=365)).isoformat(),
        "expiry_date": ROW_EXPIRY.isoformat(),
        "status": "active",
        **fields,
    }


def policy_csv(rows: list[dict], name: str = "policies.csv") -> SimpleUploadedFile:
    """The rows as an uploaded policy CSV, header first."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return SimpleUploadedFile(name, out.getvalue().encode(), content_type="text/csv")


def policy_file(rows: list[dict]) -> bytes:
    """The rows as the bytes of a policy CSV, header first (what a feed serves)."""
    return policy_csv(rows).read()


def make_feed(
    name: str = "Nightly extract",
    *,
    cron: str = "",
    every_minutes: int | None = None,
    secret: str | None = None,
    **fields,
) -> Feed:
    """A feed saved as the admin saves one, with its PeriodicTask (nightly unless told)."""
    defaults = {"kind": Feed.Kind.HTTPS, "url": "https://pas.example/extract.csv"}
    return feeds.save_feed(
        Feed(name=name, **{**defaults, **fields}),
        cron=cron,
        every_minutes=every_minutes,
        secret=secret,
    )


def make_import_job(agent: Agent | None = None, **fields) -> ImportJob:
    """An upload's job row, its file not stored (queued, unless `status` says otherwise)."""
    defaults = {"original_name": "book.csv", "stored_name": "2026/01/x.csv"}
    return ImportJob.objects.create(agent=agent, **{**defaults, **fields})


# --- Events out ---------------------------------------------------------------------------------


def make_subscription(url: str, *event_types: str, **fields) -> Subscription:
    """An active subscription of the insurer's system at `url` to these event types."""
    return Subscription.objects.create(
        name=fields.pop("name", f"insurer {Subscription.objects.count() + 1}"),
        url=url,
        event_types=list(event_types),
        **fields,
    )


def make_api_key(name: str = "policy admin", *, agent: Agent | None = None, read_only=False):
    """An integration's API key: (the key's row, the secret to send)."""
    return ApiKey.objects.create_key(name=name, agent=agent, read_only=read_only)
