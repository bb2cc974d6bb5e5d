"""Turn a reminder into the words its customer reads: the rule's template, in the customer's
language, filled in with the policy's data. Sending and the admin's preview both come here."""

import datetime
import functools
from urllib.parse import quote

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.template import Context, Template
from django.utils import formats, timezone, translation

from notifications import preferences
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


def preview(template: MessageTemplate, policy: Policy, *, lead_days: int | None = None):
    """What `policy`'s customer would read from `template` today; nothing is saved or sent."""
    today = timezone.localdate(timezone=policy.customer.timezone)
    return compose(
        template,
        policy=policy,
        customer=policy.customer,
        expiry_date=policy.expiry_date,
        lead_days=lead_days if lead_days is not None else (policy.expiry_date - today).days,
        notification_id=0,
    )


def compose(
    template: MessageTemplate,
    *,
    policy: Policy,
    customer: Customer,
    expiry_date: datetime.date,
    lead_days: int,
    notification_id: int,
) -> OutgoingMessage:
    text = template.in_language(customer.language)
    is_email = template.channel == Channel.EMAIL
    # Signing the customer's links costs more than the rest of the context: once per message,
    # and only when a template or the unsubscribe header asks for one.
    token = functools.cache(functools.partial(preferences.token_for, customer))
    with translation.override(customer.language):
        values = context_for(policy, customer, expiry_date, lead_days, token=token)
        subject = fill(text.subject, values) if is_email else ""
        body = fill(text.body, values)
        html_body = fill(text.html_body, values, html=True) if is_email else ""
    return OutgoingMessage(
        notification_id=notification_id,
        to=customer.email if is_email else customer.phone,
        subject=" ".join(subject.split()),  # a subject is one line
        body=body,
        html_body=html_body,
        metadata={"notification_id": str(notification_id), "policy": policy.policy_number},
        headers=unsubscribe_headers(customer, token=token()) if is_email else {},
    )


def context_for(policy, customer, expiry_date, lead_days, *, token=None) -> dict:
    """The values a template may use. `token`: a callable returning the customer's signed
    token, for their links; "preferences_url" is a callable too, as templates take them."""
    # "Today" is the customer's today: late evening in Los Angeles is tomorrow in UTC.
    today = timezone.localdate(timezone=customer.timezone)
    token = token or functools.partial(preferences.token_for, customer)
    return {
        "customer": customer,
        "policy": policy,
        "agent": policy.agent,
        "expiry_date": expiry_date,
        "expiry_date_text": date_text(expiry_date, customer.language),
        "days_left": (expiry_date - today).days,
        "lead_days": lead_days,
        "renew_url": renew_url(policy),
        # A callable: a template calls it when it shows the link (an SMS's rarely does).
        "preferences_url": functools.cache(lambda: preferences.preferences_url(customer, token())),
    }


@functools.lru_cache(maxsize=1024)
def date_text(day: datetime.date, language: str) -> str:
    """A date written out in a language; a day's reminders share a handful of dates."""
    with translation.override(language):
        return formats.date_format(day, "DATE_FORMAT")


@receiver(setting_changed)
def _forget_date_texts(**kwargs) -> None:
    date_text.cache_clear()  # a test changed a format or a language


def fill(source: str, values: dict, *, html: bool = False) -> str:
    if not source:
        return ""
    # Plain text must not be HTML-escaped ("O&#x27;Brien"); the HTML body must be.
    return compiled(source).render(Context(values, autoescape=html)).strip()


@functools.lru_cache(maxsize=256)
def compiled(source: str) -> Template:
    """Parse each template source once per process; the same few serve every reminder."""
    return Template(source)


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
