"""How long a reminder keeps trying through transient provider errors, in one place. It is tried
again until its channel's budget (EMAIL_RETRY_FOR_HOURS, SMS_RETRY_FOR_HOURS) has passed since
its first such error, waiting `retry_backoff(attempts)` between tries; a provider outage lasts
hours, not minutes. Whatever the budget, a reminder that is no longer useful is not sent at all:
its policy has expired, or a more urgent reminder of the same policy and channel is due (the
customer gets that one instead)."""

import random
from collections import defaultdict
from collections.abc import Iterable
from datetime import date, datetime, timedelta

from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from notifications.models import Notification

Status = Notification.Status


def budget_hours(channel: str) -> int:
    return settings.REMINDER_RETRY_FOR_HOURS[channel]


def out_of_time(notification: Notification, now: datetime) -> bool:
    """Whether a notification whose try just failed transiently has spent its retry budget,
    counted from its first transient error (this one, when it is the first)."""
    failing_since = notification.failing_since or now
    return now - failing_since >= timedelta(hours=budget_hours(notification.channel))


def gave_up(notification: Notification, error: Exception) -> str:
    """The last error of a notification that spent its retry budget."""
    return f"gave up after {budget_hours(notification.channel)} h of provider errors: {error}"


def retry_backoff(attempts: int) -> int:
    """Seconds a notification waits after its `attempts`-th try failed transiently
    (REMINDER_RETRY_BACKOFF_SECONDS, doubling with each try, at most
    REMINDER_RETRY_BACKOFF_MAX_SECONDS; see `jittered_backoff`)."""
    return jittered_backoff(
        attempts,
        first=settings.REMINDER_RETRY_BACKOFF_SECONDS,
        most=settings.REMINDER_RETRY_BACKOFF_MAX_SECONDS,
    )


def jittered_backoff(attempts: int, *, first: int, most: int) -> int:
    """Seconds to wait after the `attempts`-th failed try: Celery's exponential backoff (`first`,
    doubling with each try, at most `most`), the second half of it at random, so that the many
    tries one outage failed do not all come back at once. Reminders and events both wait so."""
    backoff = get_exponential_backoff_interval(
        factor=first, retries=max(attempts - 1, 0), maximum=most, full_jitter=False
    )
    return backoff // 2 + random.randint(0, backoff - backoff // 2)


def no_longer_useful(notifications: Iterable[Notification], *, today: date) -> dict[int, str]:
    """Why each of these notifications is no longer worth sending, by id (one absent still is):
    its policy expired, or a more urgent reminder of the same policy and channel (a shorter
    lead time, the same expiry) is due. A reminder on its due day is always useful: only late
    ones, which waited out an outage or a retry, cost the one query."""
    late = [notification for notification in notifications if notification.due_on < today]
    reasons = {
        notification.pk: f"the policy expired on {notification.expiry_date}"
        for notification in late
        if notification.expiry_date < today
    }
    late = [notification for notification in late if notification.pk not in reasons]
    if not late:
        return reasons
    due_leads = defaultdict(list)
    rows = (
        Notification.objects.filter(
            policy_id__in={notification.policy_id for notification in late}, due_on__lte=today
        )
        .exclude(status__in=[Status.CANCELLED, Status.SKIPPED])
        .values_list("policy_id", "expiry_date", "channel", "lead_days")
    )
    for policy_id, expiry_date, channel, lead_days in rows:
        due_leads[policy_id, expiry_date, channel].append(lead_days)
    for notification in late:
        key = notification.policy_id, notification.expiry_date, notification.channel
        if sooner := [lead for lead in due_leads[key] if lead < notification.lead_days]:
            reasons[notification.pk] = f"the {max(sooner)}-day reminder is due now"
    return reasons
