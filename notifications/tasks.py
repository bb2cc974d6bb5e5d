"""Thin Celery tasks: each parses its arguments, calls one service and reports the result."""

from datetime import date

from celery import shared_task
from celery.utils.log import get_task_logger
from django.utils import timezone

from notifications import (
    calls,
    dispatch,
    experiments,
    outcomes,
    planning,
    recovery,
    reports,
    retention,
)

logger = get_task_logger(__name__)


@shared_task
def daily_scan(run_date: str | None = None) -> dict:
    """Plan the reminders due on run_date (default: today in TIME_ZONE), fan them out, mark
    lapsed the policies whose expiry and grace period passed without a renewal, count the
    template experiments' results, and recount the retention figures of the expiry days whose
    outcomes changed."""
    day = date.fromisoformat(run_date) if run_date else timezone.localdate()
    run = planning.plan_due(run_date=day)  # committed before any task is sent for it
    lapsed = outcomes.lapse_expired(run_date=day)
    experiments.tally()  # with the day's lapses in
    run.enqueued = fan_out()
    run.save(update_fields=["enqueued"])
    counted = retention.refresh()  # after the fan-out: reminders first
    logger.info(
        "scan %s: %s planned, %s enqueued, %s lapsed, %s expiry days counted",
        *(day, run.planned, run.enqueued, lapsed, counted),
    )
    return {
        "run_id": run.pk,
        "run_date": day.isoformat(),
        "planned": run.planned,
        "skipped": run.skipped,
        "cancelled": run.cancelled,
        "enqueued": run.enqueued,
        "lapsed": lapsed,
        "retention_days_counted": counted,
    }


@shared_task
def release_reminders() -> int:
    """Every minute (a PeriodicTask): reconcile with the provider what dead workers left
    sending, then send what is due again: what quiet hours or a retry deferred, what recovery
    found the provider never got, and what a lost broker dropped."""
    try:
        recovery.recover_abandoned()
    except Exception:  # releasing what waits must not depend on it; what it took is retaken
        logger.exception("recovery failed; releasing the reminders due all the same")
    return fan_out()


def fan_out() -> int:
    """Send every notification due to go as send_batch tasks; returns how many."""
    return planning.fan_out(publish=_publish_batches)


def _publish_batches(batches: list[list[int]]) -> None:
    with send_batch.app.producer_or_acquire() as producer:
        for ids in batches:
            send_batch.apply_async((ids,), producer=producer)


# No stored result: the notifications' own rows record the outcomes. The limits leave room for
# batches queued behind others on a process's send threads while a provider times out.
@shared_task(soft_time_limit=600, time_limit=660, ignore_result=True)
def send_batch(notification_ids: list[int]) -> dict[str, int]:
    outcomes = dispatch.send_many(notification_ids)
    fallbacks = [
        outcome.fallback_id
        for outcome in outcomes.values()
        if isinstance(outcome, dispatch.Outcome) and outcome.fallback_id
    ]
    if fallbacks:  # emails planned in place of failed SMS: they go now, not at the next release
        _publish_batches([fallbacks])
    return dispatch.summary(outcomes)


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
def call_list_emails(day: str | None = None) -> dict:
    """Weekday mornings (a PeriodicTask): each agent's call list by email, none when it is
    empty. Run again the same day, it sends nothing twice."""
    today = date.fromisoformat(day) if day else timezone.localdate()
    emailed = calls.email_call_lists(day=today)
    logger.info("call lists for %s: %s emailed", today, emailed)
    return {"day": today.isoformat(), "emailed": emailed}
