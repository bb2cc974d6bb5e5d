"""A reminder sent in place of one that cannot go on its own channel, by its rule's fallback
(ReminderRule.fallback_template): an SMS that failed for good goes by email; a WhatsApp reminder
that failed for good, or whose customer WhatsApp cannot reach when it is due to go, by SMS or
email. Dispatch calls this on a refusal at send time, tracking on a provider's failure report:
WhatsApp's permanent failures (not a WhatsApp user, outside the 24-hour window, content refused)
come only in its status callback."""

from django.utils import timezone

from notifications import reach
from notifications.models import Channel, Notification
from policies.models import Customer

Status = Notification.Status


def plan_fallback(notification: Notification, *, status: str = Status.QUEUED) -> int | None:
    """Plan the same reminder on the rule's fallback channel and return its id, or None when
    the rule has none, the notification is itself a fallback, the customer cannot be reached
    on the fallback's channel, or a reminder on that channel exists already for this policy,
    expiry and lead time (it was planned, sent or replaced once: never twice). `status`: QUEUED
    for a caller that sends it at once (a send_batch task), PLANNED for one that leaves it to
    the next release (every minute)."""
    rule = notification.rule
    if rule.fallback_template_id is None or notification.channel != rule.channel:
        return None
    # The failure may just have changed their consent (a STOP, a bounce).
    customer = Customer.objects.get(pk=notification.customer_id)
    channel = rule.fallback_channel
    if reach.why_unreachable(channel, customer):
        return None
    fallback, created = Notification.objects.get_or_create(
        policy_id=notification.policy_id,
        expiry_date=notification.expiry_date,
        channel=channel,
        lead_days=notification.lead_days,
        defaults={
            "customer_id": notification.customer_id,
            "rule_id": notification.rule_id,
            "run_id": notification.run_id,
            "due_on": notification.due_on,
            "status": status,
            "queued_at": timezone.now() if status == Status.QUEUED else None,
            "fallback_for": notification,
        },
    )
    return fallback.pk if created else None


def falls_back_on_failure_report(notification: Notification) -> bool:
    """Whether a provider's report that the message failed (a status callback) sends the
    fallback. WhatsApp only: its permanent failures arrive only that way, where Twilio refuses
    a bad SMS number at once; SMS keeps falling back on that refusal alone, as it did."""
    return notification.channel == Channel.WHATSAPP
