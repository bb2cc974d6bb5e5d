"""What an admin sees before a rule goes live: its reminders rendered for a real policy, and a
test reminder sent through the real channel to an address of the admin's own (or one the site
lists in PREVIEW_TEST_RECIPIENTS): a test send must never become a way to mail anyone."""

import copy
import dataclasses
import zoneinfo
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils import timezone

from notifications import rendering, templating
from notifications.channels import OutgoingMessage, SendError, channel_for, sms
from notifications.channels.sms import sms_segments
from notifications.models import Channel, MessageTemplate, ReminderRule
from policies import phones
from policies.models import Agent, Customer, Policy


class PreviewError(Exception):
    """Nothing to preview with, or nowhere to send: the message says what to change."""


@dataclasses.dataclass(frozen=True)
class SmsLength:
    """An SMS's segments both ways it may go. Without link shortening it leaves the renew link
    out; with Twilio's Link Shortening it carries it, and every link is a short one."""

    without_shortening: int
    with_shortening: int
    with_full_links: int  # the same text with its links at full length: what shortening saves
    short_link_length: int
    links_shortened: bool  # the way the current settings send
    characters: int  # as sent now, short links counted at their length

    @property
    def segments(self) -> int:
        return self.with_shortening if self.links_shortened else self.without_shortening


@dataclasses.dataclass(frozen=True)
class Preview:
    template: MessageTemplate
    language: str  # the language of the words chosen for the customer
    why: str  # why those (MessageTemplate.in_language)
    message: OutgoingMessage
    sms_length: SmsLength | None = None

    @property
    def sms_segments(self) -> int | None:
        return self.sms_length.segments if self.sms_length else None


def policy_for_preview(
    policy_number: str = "", *, rule: ReminderRule | None = None, may_see_customers: bool = True
) -> Policy:
    """The policy named, or else the next active one to expire in the rule's scope; for a user
    who may not see customers (a template editor), always a made-up sample."""
    if not may_see_customers:
        return sample_policy(rule)
    policies = Policy.objects.select_related("customer", "agent__user")
    if policy_number:
        policy = policies.filter(policy_number=policy_number.strip()).first()
        if policy is None:
            raise PreviewError(f"No policy numbered {policy_number.strip()!r}.")
        return policy
    policies = policies.filter(status=Policy.Status.ACTIVE).order_by("expiry_date")
    if rule and rule.product_line:
        policies = policies.filter(product_line=rule.product_line)
    policy = policies.first()
    if policy is None:
        raise PreviewError("There is no active policy to fill the template with; import some.")
    return policy


def sample_policy(rule: ReminderRule | None = None) -> Policy:
    """A policy, customer and agent made up for the preview, never saved."""
    lead_days = rule.lead_days if rule else 30
    expiry = timezone.localdate() + timedelta(days=lead_days)
    agent_login = get_user_model()(username="sample-agent", first_name="Sam", last_name="Agent")
    return Policy(
        policy_number="SAMPLE-0001",
        product_line=(rule.product_line if rule else "") or "auto",
        start_date=expiry - timedelta(days=365),
        expiry_date=expiry,
        customer=Customer(
            name="Alex Sample",
            email="alex.sample@renewly.example",
            phone="+14155550100",
            language=settings.LANGUAGE_CODE,
            timezone=zoneinfo.ZoneInfo(settings.TIME_ZONE),
        ),
        agent=Agent(user=agent_login, email="sam.agent@renewly.example", phone="+14155550101"),
    )


def preview(template: MessageTemplate, policy: Policy, *, language: str = "", lead_days=None):
    """`template` rendered for `policy`, in `language` or else in its customer's language."""
    if language:
        # Copies, so that a preview in another language never touches the records.
        customer = copy.copy(policy.customer)
        customer.language = language
        policy = copy.copy(policy)
        policy.customer = customer
    words = template.in_language(policy.customer.language)
    language, why = words.language, words.why
    others = others_in_digest(policy) if template.kind == MessageTemplate.Kind.DIGEST else []
    try:
        if template.channel != Channel.SMS:
            message = rendering.preview(template, policy, lead_days=lead_days, others=others)
            return Preview(template=template, language=language, why=why, message=message)
        both_ways = {
            shortened: rendering.preview(
                template, policy, lead_days=lead_days, links_shortened=shortened, others=others
            )
            for shortened in (False, True)
        }
    except templating.TemplateProblem as problem:
        raise PreviewError(f"{template.name} cannot be rendered. {problem}") from None
    links_shortened = sms.shortens_links()
    unshortened, shortened = both_ways[False].body, sms.with_short_links(both_ways[True].body)
    sms_length = SmsLength(
        without_shortening=sms_segments(unshortened),
        with_shortening=sms_segments(shortened),
        with_full_links=sms_segments(both_ways[True].body),
        short_link_length=len(sms.short_link_placeholder()),
        links_shortened=links_shortened,
        characters=len(shortened if links_shortened else unshortened),
    )
    # The message keeps its full links: a test send hands them to Twilio to shorten.
    message = both_ways[links_shortened]
    return Preview(
        template=template, language=language, why=why, message=message, sms_length=sms_length
    )


# A digest's preview lists the customer's other policies expiring this close to the one shown.
DIGEST_PREVIEW_DAYS = 14


def others_in_digest(policy: Policy) -> list[Policy]:
    """What a digest previewed for `policy` lists besides it: the customer's other active
    policies expiring within DIGEST_PREVIEW_DAYS of it, or else a made-up second one."""
    others = []
    if policy.pk:
        window = timedelta(days=DIGEST_PREVIEW_DAYS)
        others = list(
            Policy.objects.select_related("agent__user")
            .filter(
                customer_id=policy.customer_id,
                status=Policy.Status.ACTIVE,
                expiry_date__range=(policy.expiry_date - window, policy.expiry_date + window),
            )
            .exclude(pk=policy.pk)
            .order_by("expiry_date", "policy_number")[:5]
        )
    return others or [
        Policy(
            policy_number="SAMPLE-0002",
            product_line="home" if policy.product_line != "home" else "auto",
            start_date=policy.start_date,
            expiry_date=policy.expiry_date + timedelta(days=3),
            customer=policy.customer,
            agent=policy.agent,
        )
    ]


def previews_for_rule(rule: ReminderRule, policy: Policy, *, language: str = "") -> list[Preview]:
    """The rule's reminder, and the email it falls back to, as `policy`'s customer reads them."""
    templates = [rule.template] + ([rule.fallback_template] if rule.fallback_template else [])
    return [preview(t, policy, language=language, lead_days=rule.lead_days) for t in templates]


def send_test_reminder(template: MessageTemplate, policy: Policy, *, to: str, sender) -> str:
    """Send `template`, filled in for `policy`, to `to` through the real channel; return the
    provider's message id. `to` must be one of `sender`'s own addresses or listed in
    PREVIEW_TEST_RECIPIENTS. No notification is recorded and the customer gets nothing."""
    to = _checked_address(template.channel, to)
    allowed = test_recipients_for(sender, template.channel)
    if to not in allowed:
        raise PreviewError(
            f"A test reminder goes only to your own {_address_kind(template.channel)} or to "
            f"one listed in PREVIEW_TEST_RECIPIENTS ({', '.join(sorted(allowed)) or 'none'}); "
            f"{to} is neither."
        )
    message = preview(template, policy).message
    message = dataclasses.replace(
        message,
        to=to,
        subject=f"[Test] {message.subject}" if message.subject else "",
        metadata={"test": "true", "policy": policy.policy_number},
        headers={},  # no one-click unsubscribe: pressed by the tester, it would be nobody's
    )
    try:
        return channel_for(template.channel).send(message)
    except SendError as error:
        raise PreviewError(f"The provider did not accept the test reminder: {error}") from error


def test_recipients_for(user, channel: str) -> set[str]:
    """Where `user` may send a test on `channel`: their own email (and, for an agent, their
    agent address and phone), and the site's PREVIEW_TEST_RECIPIENTS."""
    own = [user.email]
    agent = getattr(user, "agent", None)
    if agent is not None:
        own += [agent.email, agent.phone]
    allowed = set()
    for address in [*own, *settings.PREVIEW_TEST_RECIPIENTS]:
        try:
            allowed.add(_checked_address(channel, address))
        except PreviewError:
            continue  # an address of the other channel, or none
    return allowed


def _address_kind(channel: str) -> str:
    return "email address" if channel == Channel.EMAIL else "phone number"


def _checked_address(channel: str, to: str) -> str:
    to = to.strip()
    if channel == Channel.EMAIL:
        try:
            validate_email(to)
        except ValidationError:
            raise PreviewError(f"{to!r} is not an email address.") from None
        return to.lower()
    try:
        return phones.to_e164(to)
    except phones.InvalidPhoneNumber:
        raise PreviewError(f"{to!r} is not a phone number; write it as {phones.EXAMPLE}.") from None
