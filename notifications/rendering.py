"""Turn a notification into the words its customer reads, from its rule's template."""

from django.template import Context, Template
from django.utils import timezone, translation

from notifications import preferences
from notifications.channels import OutgoingMessage
from notifications.models import Channel, Notification


def render(notification: Notification) -> OutgoingMessage:
    policy = notification.policy
    customer = notification.customer
    template = notification.rule.template_for(notification.channel)
    today = timezone.localdate(timezone=customer.timezone)
    context = Context(
        {
            "customer": customer,
            "policy": policy,
            "agent": policy.agent,
            "expiry_date": notification.expiry_date,
            "days_left": (notification.expiry_date - today).days,
            "lead_days": notification.lead_days,
        },
        autoescape=False,  # plain text; the HTML body escapes its own values
    )
    with translation.override(customer.language):
        subject = Template(template.subject).render(context).strip()
        body = Template(template.body).render(context).strip()
    is_email = notification.channel == Channel.EMAIL
    return OutgoingMessage(
        notification_id=notification.pk,
        to=customer.email if is_email else customer.phone,
        subject=" ".join(subject.split()) if is_email else "",  # a subject is one line
        body=body,
        metadata={"notification_id": str(notification.pk), "policy": policy.policy_number},
        headers=unsubscribe_headers(customer) if is_email else {},
    )


def unsubscribe_headers(customer) -> dict:
    """RFC 8058 one-click unsubscribe: mail clients show an Unsubscribe button that POSTs."""
    return {
        "List-Unsubscribe": f"<{preferences.unsubscribe_url(customer)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
