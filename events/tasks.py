"""Thin Celery tasks: each calls one service and reports the result."""

from celery import shared_task

from events import delivery


# No stored result: the deliveries' own rows record the outcomes. The limits leave room for a
# batch of slow receivers (each POST bounded by EVENTS_TIMEOUT_SECONDS).
@shared_task(soft_time_limit=600, time_limit=660, ignore_result=True)
def deliver_events(delivery_ids: list[int]) -> dict[str, int]:
    """Right after the transaction that wrote them commits: deliver these, if still due."""
    return delivery.deliver(delivery_ids)


@shared_task(soft_time_limit=3000, time_limit=3060)
def deliver_due_events() -> dict[str, int]:
    """Every minute (a PeriodicTask): deliver what is due: a retry whose wait is over, what a
    dead worker left claimed, an event whose task the broker lost."""
    return delivery.deliver_due()
