"""The daily clean-up: what is no longer needed after its retention period goes. Celery task
results (RESULTS_RETENTION_DAYS), the files of finished uploads (UPLOADS_RETENTION_DAYS; the
job's record stays) and the raw provider payloads of old delivery events
(PROVIDER_PAYLOAD_RETENTION_DAYS; the event stays). A notification's own record and its delivery
timeline are never removed. The API's idempotency keys go after IDEMPOTENCY_KEY_HOURS, and the
events every subscriber received after EVENTS_RETENTION_DAYS. Each run is recorded as a
HousekeepingRun with what it removed."""

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone
from django_celery_results.models import GroupResult, TaskResult

from api import idempotency
from events import services as events_services
from notifications.models import DeliveryEvent, HousekeepingRun, WorkerLease
from policies.import_jobs import purge_uploaded_files

PAYLOAD_BATCH = 5000  # events per UPDATE: short transactions on a large table
# A dead worker's lease is kept a while for the admin's list of workers, then deleted; by then
# recovery has long taken over whatever it held.
LAPSED_LEASES_KEPT = timedelta(days=7)


def run_housekeeping(*, now: datetime | None = None) -> HousekeepingRun:
    now = now or timezone.now()
    run = HousekeepingRun.objects.create()
    try:
        if cutoff := _cutoff(now, settings.RESULTS_RETENTION_DAYS):
            run.task_results_deleted = delete_task_results(finished_before=cutoff)
            run.save(update_fields=["task_results_deleted"])
        if cutoff := _cutoff(now, settings.UPLOADS_RETENTION_DAYS):
            run.uploads_purged = purge_uploaded_files(finished_before=cutoff)
            run.save(update_fields=["uploads_purged"])
        if cutoff := _cutoff(now, settings.PROVIDER_PAYLOAD_RETENTION_DAYS):
            run.payloads_cleared = clear_provider_payloads(received_before=cutoff)
            run.save(update_fields=["payloads_cleared"])
        run.idempotency_keys_deleted = idempotency.purge_expired(now=now)
        run.save(update_fields=["idempotency_keys_deleted"])
        if cutoff := _cutoff(now, settings.EVENTS_RETENTION_DAYS):
            run.events_deleted = events_services.purge_delivered(before=cutoff)
            run.save(update_fields=["events_deleted"])
        delete_lapsed_leases(lapsed_before=now - LAPSED_LEASES_KEPT)
    except Exception as error:
        # Shown in the admin with what was removed before it; raised for the worker's log.
        run.error = repr(error)
        raise
    finally:
        run.finished_at = timezone.now()
        run.save(update_fields=["finished_at", "error"])
    return run


def _cutoff(now: datetime, days: int) -> datetime | None:
    """The time before which things go; None when the retention is 0 (keep forever)."""
    return now - timedelta(days=days) if days > 0 else None


def delete_task_results(*, finished_before: datetime) -> int:
    deleted, _ = TaskResult.objects.filter(date_done__lt=finished_before).delete()
    GroupResult.objects.filter(date_done__lt=finished_before).delete()
    return deleted


def delete_lapsed_leases(*, lapsed_before: datetime) -> int:
    """The leases of workers gone for good, none still holding a sending notification."""
    lapsed = WorkerLease.objects.filter(expires_at__lt=lapsed_before)
    deleted, _ = lapsed.exclude(held_notifications__isnull=False).delete()
    return deleted


def clear_provider_payloads(*, received_before: datetime) -> int:
    """Blank the raw payload of events received before the cutoff, in batches; the events, and
    so each notification's delivery timeline, stay."""
    old = (
        DeliveryEvent.objects.filter(received_at__lt=received_before)
        .exclude(raw_payload={})
        .order_by("pk")
    )
    cleared, after = 0, 0
    while ids := list(old.filter(pk__gt=after).values_list("pk", flat=True)[:PAYLOAD_BATCH]):
        cleared += DeliveryEvent.objects.filter(pk__in=ids).update(raw_payload={})
        after = ids[-1]
    return cleared
