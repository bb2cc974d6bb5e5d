"""Thin Celery tasks: each parses its arguments, calls one service and reports the result."""

from collections import Counter
from datetime import date, timedelta

from celery import shared_task
from celery.utils.log import get_task_logger
from django.conf import settings
from django.utils import timezone

from notifications import dispatch, housekeeping, lifecycle, planning, reports
from notifications.channels import TransientSendError
from notifications.models import Notification

logger = get_task_logger(__name__)


@shared_task
def daily_scan(run_date: str | None = None) -> dict:
    """Plan the reminders due on run_date (default: today in TIME_ZONE), then fan them out."""
    day = date.fromisoformat(run_date) if run_date else timezone.localdate()
    run = planning.plan_due(run_date=day)  # committed before any task is sent for it
    run.enqueued = fan_out()
    run.save(update_fields=["enqueued"])
    logger.info("scan %s: %s planned, %s enqueued", day, run.planned, run.enqueued)
    return {
        "run_id": run.pk,
        "run_date": day.isoformat(),
        "planned": run.planned,
        "skipped": run.skipped,
        "cancelled": run.cancelled,
        "enqueued": run.enqueued,
    }


@shared_task
def release_reminders() -> int:
    """Every few minutes (a PeriodicTask): send what quiet hours deferred and what stalled."""
    return fan_out()


def fan_out() -> int:
    """Send every notification that is due to go (newly planned, released from quiet hours, or
    stalled) as send_batch tasks of REMINDER_SEND_BATCH_SIZE, claimed in chunks."""
    stalled_after = timedelta(minutes=settings.REMINDER_REQUEUE_AFTER_MINUTES)
    size = settings.REMINDER_SEND_BATCH_SIZE
    total = 0
    while ids := planning.claim_for_enqueue(
        limit=settings.REMINDER_FANOUT_CHUNK, stalled_after=stalled_after
    ):
        with send_batch.app.producer_or_acquire() as producer:
            for start in range(0, len(ids), size):
                send_batch.apply_async((ids[start : start + size],), producer=producer)
        total += len(ids)
    return total


# No stored result: the notifications' own rows record the outcomes. The limits leave room for
# batches queued behind others on a process's send threads while a provider times out.
@shared_task(soft_time_limit=600, time_limit=660, ignore_result=True)
def send_batch(notification_ids: list[int]) -> dict[str, int]:
    outcomes = dispatch.send_many(notification_ids)
    with send_notification.app.producer_or_acquire() as producer:
        for notification_id, outcome in outcomes.items():
            if outcome.status == Notification.Status.QUEUED:  # a transient error: retry it alone
                send_notification.apply_async(
                    (notification_id,),
                    countdown=dispatch.retry_delay(outcome.attempts - 1),
                    retries=outcome.attempts,  # its retries so far, counted by send_notification
                    producer=producer,
                )
            if outcome.fallback_id:
                send_notification.apply_async((outcome.fallback_id,), producer=producer)
    return dict(Counter(outcome.status for outcome in outcomes.values()))


# No stored result: the notification's own row records the outcome.
@shared_task(bind=True, soft_time_limit=60, time_limit=90, ignore_result=True)
def send_notification(self, notification_id: int) -> str:
    try:
        outcome = dispatch.send(notification_id)
    except TransientSendError as error:
        attempts = self.request.retries + 1
        if dispatch.out_of_retries(attempts):
            lifecycle.move(
                notification_id,
                Notification.Status.FAILED,
                last_error=dispatch.gave_up(attempts, error),
            )
            return Notification.Status.FAILED
        # Exponential backoff with full jitter, capped well below Redis' visibility timeout.
        countdown = dispatch.retry_delay(self.request.retries)
        raise self.retry(
            exc=error,
            countdown=countdown,
            max_retries=settings.REMINDER_SEND_MAX_RETRIES,  # Celery's own default is 3
        ) from error
    if outcome.fallback_id:
        send_notification.delay(outcome.fallback_id)
    return outcome.status


@shared_task
def weekly_reports(week_start: str | None = None) -> dict:
    """Every Monday (a PeriodicTask): store and email last week's report of each agent, and of
    all agents. Run again for the same week, it stores and sends nothing twice."""
    if week_start:
        monday = date.fromisoformat(week_start)
    else:
        monday = reports.last_week(timezone.localdate())
    stored = reports.build_weekly_reports(week_start=monday)
    emailed = reports.email_weekly_reports(week_start=monday)
    logger.info("weekly reports for %s: %s stored, %s emailed", monday, len(stored), emailed)
    return {"week_start": monday.isoformat(), "reports": len(stored), "emailed": emailed}


@shared_task
def run_housekeeping() -> dict:
    """Daily (a PeriodicTask): remove what is past its retention period; the run is recorded."""
    run = housekeeping.run_housekeeping()
    return {
        "run_id": run.pk,
        "task_results_deleted": run.task_results_deleted,
        "uploads_purged": run.uploads_purged,
        "payloads_cleared": run.payloads_cleared,
    }
