"""Sending one notification: claim it, check it still stands, render it, hand it to its
channel and record what the provider said. Safe to run any number of times for one id."""

import random
from dataclasses import dataclass

from django.db.models import F
from django.utils import timezone

from notifications import lifecycle, rate_limit, tracking
from notifications.channels import PermanentSendError, TransientSendError, channel_for
from notifications.models import Channel, DeliveryEvent, Notification
from notifications.quiet_hours import next_sms_window
from notifications.rendering import render
from policies.models import Policy

Status = Notification.Status


@dataclass(frozen=True)
class Outcome:
    status: str
    detail: str = ""
    fallback_id: int | None = None  # an email planned in place of a failed SMS, to send next


def send(notification_id: int) -> Outcome:
    """Send the notification unless another process already claimed it. A transient provider
    error puts it back in the queue and is raised for the caller to retry."""
    claimed = lifecycle.move(notification_id, Status.SENDING, attempts=F("attempts") + 1)
    if not claimed:
        return Outcome("not claimed", "already sent, sending, or no longer due")
    notification = Notification.objects.select_related(
        "policy__agent__user", "customer", "rule__template", "rule__fallback_template"
    ).get(pk=notification_id)
    reason = why_not_send(notification)
    if reason:
        lifecycle.move(notification_id, Status.CANCELLED, last_error=reason)
        return Outcome(Status.CANCELLED, reason)
    if notification.channel == Channel.SMS:
        window = next_sms_window(timezone.now(), notification.customer.timezone)
        if window:
            # Wait in the database, not in the broker: a long ETA outlives Redis' visibility
            # timeout and comes back as a duplicate.
            lifecycle.move(
                notification_id,
                Status.DEFERRED,
                send_after=window,
                attempts=F("attempts") - 1,  # nothing was attempted
            )
            return Outcome(Status.DEFERRED, f"quiet hours: waits until {window.isoformat()}")
    try:
        message = render(notification)
        rate_limit.acquire(notification.channel)
        provider_message_id = channel_for(notification.channel).send(message)
    except PermanentSendError as error:
        lifecycle.move(notification_id, Status.FAILED, last_error=str(error))
        tracking.apply_to_customer(
            notification.customer_id, DeliveryEvent.Type.REJECTED, error.code
        )
        return Outcome(Status.FAILED, str(error), fallback_id=plan_fallback(notification))
    except TransientSendError as error:
        lifecycle.move(notification_id, Status.QUEUED, last_error=str(error))
        raise
    sent = {"sent_at": timezone.now(), "provider_message_id": provider_message_id}
    if not lifecycle.move(notification_id, Status.SENT, last_error="", **sent):
        # The provider's callback already moved it on (delivered, say): keep its id all the same.
        Notification.objects.filter(pk=notification_id).update(**sent)
    return Outcome(Status.SENT, provider_message_id)


def plan_fallback(notification: Notification) -> int | None:
    """When a failed SMS's rule says so, plan the same reminder by email; return its id, or
    None when the rule has no fallback, the customer takes no email, or it exists already."""
    customer = notification.customer
    customer.refresh_from_db()  # the failure may just have changed their consent
    if (
        notification.channel != Channel.SMS
        or notification.rule.fallback_template_id is None
        or not (customer.email and customer.email_consent and not customer.email_undeliverable)
    ):
        return None
    fallback, created = Notification.objects.get_or_create(
        policy_id=notification.policy_id,
        expiry_date=notification.expiry_date,
        channel=Channel.EMAIL,
        lead_days=notification.lead_days,
        defaults={
            "customer_id": notification.customer_id,
            "rule_id": notification.rule_id,
            "run_id": notification.run_id,
            "due_on": notification.due_on,
            "status": Status.QUEUED,
            "queued_at": timezone.now(),
            "fallback_for": notification,
        },
    )
    return fallback.pk if created else None


def why_not_send(notification: Notification) -> str:
    """Why a claimed notification must not go out after all, or '' when it may."""
    policy, customer = notification.policy, notification.customer
    if policy.status != Policy.Status.ACTIVE:
        return f"policy is {policy.get_status_display().lower()}"
    if policy.expiry_date != notification.expiry_date:
        return f"policy expiry date changed to {policy.expiry_date}"
    if notification.channel == Channel.EMAIL:
        if not customer.email_consent:
            return "customer opted out of email"
        if not customer.email:
            return "customer has no email address"
        if customer.email_undeliverable:
            return "customer's email address bounced"
    else:
        if not customer.sms_consent:
            return "customer opted out of SMS"
        if not customer.phone:
            return "customer has no phone number"
    return ""


def retry_delay(retries: int, *, base: float = 5.0, cap: float = 600.0) -> float:
    """Seconds before retry number `retries + 1`: exponential backoff with full jitter."""
    return random.uniform(0, min(cap, base * 2**retries))
