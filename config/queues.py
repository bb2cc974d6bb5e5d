"""Which queue each task waits on. The reminders (the daily scan, the fan-out, send_batch, the
release and recovery, events to other systems) keep the default queue; the long jobs (imports,
feeds, reports, housekeeping) wait on a queue of their own, read by workers of their own, so that
a 100,000-row upload or a Monday's reports never hold a reminder back."""

# Registered names, not the functions: config imports no app of ours.
LONG_JOBS = (
    "policies.tasks.import_policies_file",
    "policies.tasks.run_import_job",
    "policies.tasks.fetch_feed",
    "notifications.tasks.weekly_reports",
    "notifications.tasks.call_list_emails",
    "notifications.tasks.run_housekeeping",  # ops.tasks.run_housekeeping, by its old name
)


def bulk_queue_for(default_queue: str) -> str:
    """The long jobs' queue, named after the installation's default queue so that installations
    sharing a broker keep their long jobs apart too."""
    return f"{default_queue}-bulk"


def task_routes(*, bulk_queue: str) -> dict[str, dict[str, str]]:
    return {name: {"queue": bulk_queue} for name in LONG_JOBS}


def every_queue(default_queue: str) -> list[str]:
    """Every queue of the installation whose default queue this is (CELERY_BULK_QUEUE unset):
    what a worker that runs everything reads, as the demo's does (`--queues=a,b`)."""
    return [default_queue, bulk_queue_for(default_queue)]
