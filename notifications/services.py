"""Services that people start by hand (the agents' workspace): retrying one notification, and
a renewal with what it means for the reminders."""

from datetime import date

from django.db import transaction
from django.utils import timezone

from notifications import dispatch, lifecycle, planning
from notifications.models import Notification
from notifications.tasks import send_batch
from policies.models import Policy
from policies.services import mark_renewed


class RetryError(Exception):
    """The notification cannot be retried; the message says why, for the agent."""


def retry_failed(*, notification: Notification) -> None:
    """Put a failed notification back in the queue and send it again once that is committed,
    unless sending it no longer makes sense. The move is from failed only (queued -> queued is
    the scan's re-enqueue, not a retry), so two clicks at once send it once."""
    Status = Notification.Status
    notification = Notification.objects.select_related("policy", "customer").get(pk=notification.pk)
    if notification.status != Status.FAILED:
        raise RetryError("Only a failed notice can be retried; this one is no longer failed.")
    if Notification.objects.filter(fallback_for=notification.pk).exists():
        raise RetryError(
            "An email was sent in place of this SMS; a retry would remind the customer twice."
        )
    reason = dispatch.why_not_send(notification)
    if reason:
        raise RetryError(f"This notice cannot be sent any more: {reason}.")
    with transaction.atomic():
        # A retry by hand starts a fresh budget of automatic retries, as before the first try.
        moved = lifecycle.move(
            notification.pk,
            Status.QUEUED,
            only_from={Status.FAILED},
            queued_at=timezone.now(),
            attempts=0,
        )
        if not moved:
            raise RetryError("Only a failed notice can be retried; this one is no longer failed.")
        # The same task the fan-out sends; after commit, so the worker sees "queued".
        transaction.on_commit(lambda: send_batch.delay([notification.pk]))


@transaction.atomic
def renew_policy(*, policy: Policy, new_expiry_date: date) -> int:
    """The customer renewed (policies.services.mark_renewed, which raises RenewalError for a
    renewal the policy cannot take), and the reminders about the old expiry that were not sent
    yet are cancelled by planning's own rule; the next daily scan plans the new term's. Returns
    how many reminders were cancelled."""
    renewed = mark_renewed(policy=policy, new_expiry_date=new_expiry_date)
    return planning.cancel_outdated(policy_id=renewed.pk)
