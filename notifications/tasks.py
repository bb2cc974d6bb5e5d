"""Thin Celery tasks: each parses its arguments, calls one service and reports the result."""

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
    """Send one send_notification task per notification that is due to go (newly planned,
    released from quiet hours, or stalled), in chunks."""
    stalled_after = timedelta(minutes=settings.REMINDER_REQUEUE_AFTER_MINUTES)
    total = 0
    while ids := planning.claim_for_enqueue(
        limit=settings.REMINDER_FANOUT_CHUNK, stalled_after=stalled_after
    ):
        with send_notification.app.producer_or_acquire() as producer:
            for notification_id in ids:
                send_notification.apply_async((notification_id,), producer=producer)
        total += len(ids)
    return total


# No stored result: the notification's own row records the outcome.
@shared_task(bind=True, soft_time_limit=60, time_limit=90, ignore_result=True)
def send_notification(self, notification_id: int) -> str:
    try:
        outcome = dispatch.send(notification_id)
    except TransientSendError as error:
        if self.request.retries >= settings.REMINDER_SEND_MAX_RETRIES:
            lifecycle.move(
                notification_id,
                Notification.Status.FAILED,
                last_error=f"gave up after {self.request.retries + 1} attempts: {error}",
            )
            return Notification.Status.FAILED
        # Exponential backoff with full jitter, capped well below Redis' visibility timeout.
        countdown = dispatch.retry_delay(self.request.retries)
        raise self.retry(exc=error, countdown=countdown) from error
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
