"""Thin Celery tasks: each calls one service and reports the result."""

from celery import shared_task

from notifications.schedule import HOUSEKEEPING_TASK
from ops import housekeeping


# Registered under the name it had in notifications.tasks: the "Housekeeping" PeriodicTask rows
# of existing databases and any message already queued name it so.
@shared_task(name=HOUSEKEEPING_TASK)
def run_housekeeping() -> dict:
    """Daily (a PeriodicTask): remove what is past its retention period; the run is recorded."""
    run = housekeeping.run_housekeeping()
    return {
        "run_id": run.pk,
        "task_results_deleted": run.task_results_deleted,
        "uploads_purged": run.uploads_purged,
        "payloads_cleared": run.payloads_cleared,
        "idempotency_keys_deleted": run.idempotency_keys_deleted,
        "events_deleted": run.events_deleted,
    }
