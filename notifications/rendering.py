"""Turn a reminder into the words its customer reads: the rule's template, in the customer's
language, filled in with the policy's data. Sending and the admin's preview both come here.

A template sees plain values only (strings, numbers, dates), never a model: an admin who edits
the words cannot reach anything else through them (notifications.templating)."""

import datetime
import functools
from collections.abc import Callable
from urllib.parse import quote

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import formats, timezone, translation

from notifications import preferences, templating, whatsapp
from notifications.channels import OutgoingMessage
from notifications.models import Channel, MessageTemplate, Notification
from policies.models import Customer, Policy


def render(notification: Notification) -> OutgoingMessage:
    return compose(
        notification.rule.template_for(notification.channel),
        policy=notification.policy,
        customer=notification.customer,
        expiry_date=notification.expiry_date,
        lead_days=notification.lead_days,
        notification_id=notification.pk,
    )


# A preview's links are not the customer's: a signed link is their key to their consent.
PREVIEW_TOKEN = "preview"


def preview(template: MessageTemplate, policy: Policy, *, lead_days: int | None = None):
    """What `policy`'s customer would read from `template` today, with links that open no
    customer's page; nothing is saved or sent."""
    today = timezone.localdate(timezone=policy.customer.timezone)
    return compose(
        template,
        policy=policy,
        customer=policy.customer,
        expiry_date=policy.expiry_date,
        lead_days=lead_days if lead_days is not None else (policy.expiry_date - today).days,
        notification_id=0,
        token=lambda: PREVIEW_TOKEN,
    )


def compose(
    template: MessageTemplate,
    *,
    policy: Policy,
    customer: Customer,
    expiry_date: datetime.date,
    lead_days: int,
    notification_id: int,
    token: Callable[[], str] | None = None,
) -> OutgoingMessage:
    """The message `template` makes for this reminder. `token`: the signed token of the
    customer's links (by default, theirs)."""
    text = template.in_language(customer.language)
    is_email = template.channel == Channel.EMAIL
    parts = {
        "subject": templating.compiled(text.subject) if is_email else None,
        "body": templating.compiled(text.body),
        "html_body": templating.compiled(text.html_body) if is_email else None,
    }
    # Signing the customer's links costs more than the rest of the values: once per message,
    # and only when a template or the unsubscribe header asks for one.
    token = token or functools.cache(functools.partial(preferences.token_for, customer))
    names = set().union(*(part.names for part in parts.values() if part))
    # WhatsApp sends its approved content instead, the variables filled from the same values.
    content = None
    if template.channel == Channel.WHATSAPP:
        content = whatsapp.content_for(template, customer.language)
        names |= whatsapp.variable_names(content) if content else set()
    with translation.override(customer.language):
        values = values_for(
            policy,
            customer,
            expiry_date,
            lead_days,
            token=token,
            with_preferences_url="preferences_url" in names,
        )
        filled = {
            name: part.render(values, autoescape=name == "html_body").strip() if part else ""
            for name, part in parts.items()
        }
        variables = whatsapp.fill(content, values) if content else {}
    return OutgoingMessage(
        notification_id=notification_id,
        to=customer.email if is_email else customer.phone,
        subject=" ".join(filled["subject"].split()),  # a subject is one line
        body=filled["body"],
        html_body=filled["html_body"],
        metadata={"notification_id": str(notification_id), "policy": policy.policy_number},
        headers=unsubscribe_headers(customer, token=token()) if is_email else {},
        content_sid=content.content_sid if content else "",
        content_variables=variables,
    )


def values_for(
    policy, customer, expiry_date, lead_days, *, token=None, with_preferences_url=True
) -> dict:
    """The values a template may use (templating.VARIABLES), as plain strings, numbers and
    dates. `token`: a callable returning the customer's signed token, for their link."""
    # "Today" is the customer's today: late evening in Los Angeles is tomorrow in UTC.
    today = timezone.localdate(timezone=customer.timezone)
    agent = policy.agent
    values = {
        "customer": {
            "name": customer.name,
            "email": customer.email,
            "phone": customer.phone,
            "language": customer.language,
        },
        "policy": {
            "policy_number": policy.policy_number,
            "product_line": policy.product_line,
            "start_date": policy.start_date,
            "expiry_date": policy.expiry_date,
        },
        "agent": {"name": agent.name, "email": agent.email, "phone": agent.phone},
        "expiry_date": expiry_date,
        "expiry_date_text": date_text(expiry_date, customer.language),
        "days_left": (expiry_date - today).days,
        "lead_days": lead_days,
        "renew_url": renew_url(policy),
    }
    if with_preferences_url:
        token = token or functools.partial(preferences.token_for, customer)
        values["preferences_url"] = preferences.preferences_url(customer, token())
    return values


@functools.lru_cache(maxsize=1024)
def date_text(day: datetime.date, language: str) -> str:
    """A date written out in a language; a day's reminders share a handful of dates."""
    with translation.override(language):
        return formats.date_format(day, "DATE_FORMAT")


@receiver(setting_changed)
def _forget_date_texts(**kwargs) -> None:
    date_text.cache_clear()  # a test changed a format or a language


def renew_url(policy: Policy) -> str:
    """RENEW_URL_TEMPLATE filled in for this policy: the insurer's renewal portal, or by
    default an email to the policy's agent."""
    return settings.RENEW_URL_TEMPLATE.format(
        policy_number=quote(policy.policy_number),
        agent_email=policy.agent.email,
        product_line=quote(policy.product_line),
    )


def unsubscribe_headers(customer, *, token: str | None = None) -> dict:
    """RFC 8058 one-click unsubscribe: mail clients show an Unsubscribe button that POSTs."""
    return {
        "List-Unsubscribe": f"<{preferences.unsubscribe_url(customer, token)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
