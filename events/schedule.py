"""The sweep's PeriodicTask (django-celery-beat), created by migration 0002, edited in the admin."""

SWEEP_NAME = "Deliver events to other systems"
SWEEP_TASK = "events.tasks.deliver_due_events"
