from celery import shared_task

from policies import feeds, import_runs
from policies.importers import import_policies


@shared_task
def import_policies_file(path: str) -> dict:
    """Import a policy CSV that is already on the shared disk; return the summary counts."""
    summary = import_policies(path)
    return {
        **summary.as_dict(),
        "rejected_rows": [
            {"line": row.line, "reason": row.reason, "policy_number": row.policy_number}
            for row in summary.rejected
        ],
    }


# No stored result: the ImportJob row records progress and outcome. Acknowledged after it ran
# (acks_late), so a job whose worker died is delivered again; the importer's upsert makes the
# re-run safe.
@shared_task(acks_late=True, ignore_result=True)
def run_import_job(job_id: int, attempt: int) -> str:
    """Import an uploaded policy CSV, reporting progress on its ImportJob."""
    job = import_runs.run_import(job_id=job_id, attempt=attempt)
    return job.status if job else "superseded"


@shared_task(ignore_result=True)
def fetch_feed(feed_id: int) -> str:
    """Fetch a policy feed: on its own PeriodicTask ("feed: <name>"), or an admin's "Fetch now".
    The FeedRun records the outcome; a run already under way makes this one do nothing."""
    run = feeds.fetch_feed(feed_id=feed_id)
    return run.outcome if run else "skipped"
