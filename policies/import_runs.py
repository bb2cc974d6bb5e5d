"""Running an uploaded policy file's import job, on a worker: the CSV importer on the stored
file, its progress and outcome written to the ImportJob the upload page polls (the uploads'
other half, storing and enqueueing, is policies.import_jobs)."""

from pathlib import Path

from django.conf import settings
from django.utils import timezone

from policies.importers import ImportFileError, import_policies
from policies.models import ImportJob

Status = ImportJob.Status


def upload_path(job: ImportJob) -> Path:
    return Path(settings.UPLOADS_DIR) / job.stored_name


def run_import(*, job_id: int, attempt: int) -> ImportJob | None:
    """Import the job's file, recording progress and the outcome. Returns None when this run
    is not the job's current attempt (a re-run superseded it) or the job already succeeded."""
    now = timezone.now()
    # A broker redelivery of the same attempt (its worker died) claims the job again: safe, as
    # the importer upserts.
    claimed = (
        ImportJob.objects.filter(pk=job_id, attempt=attempt)
        .exclude(status=Status.SUCCEEDED)
        .update(status=Status.RUNNING, started_at=now, heartbeat_at=now, rows_done=0, error="")
    )
    if not claimed:
        return None
    job = ImportJob.objects.select_related("agent").get(pk=job_id)
    this_run = ImportJob.objects.filter(pk=job_id, attempt=attempt)

    def record_progress(done: int, total: int) -> None:
        this_run.update(rows_done=done, rows_total=total, heartbeat_at=timezone.now())

    try:
        summary = import_policies(
            upload_path(job),
            progress=record_progress,
            only_agent_id=job.agent_id,
        )
    except FileNotFoundError:
        _fail(this_run, "The uploaded file is gone; upload it again.")
    except ImportFileError as error:
        _fail(this_run, f"The file was refused, nothing was imported: {error}.")
    except Exception as error:
        # Recorded for the uploader, then raised for the worker's log.
        _fail(this_run, f"The import stopped on an unexpected error: {error!r}")
        raise
    else:
        this_run.update(
            status=Status.SUCCEEDED,
            rows_total=summary.total,
            rows_done=summary.total,
            created=summary.created,
            updated=summary.updated,
            unchanged=summary.unchanged,
            rejected=len(summary.rejected),
            rejected_rows=[
                {"line": row.line, "policy_number": row.policy_number, "reason": row.reason}
                for row in sorted(summary.rejected, key=lambda row: row.line)
            ],
            heartbeat_at=timezone.now(),
            finished_at=timezone.now(),
        )
    job.refresh_from_db()
    return job


def _fail(this_run, reason: str) -> None:
    now = timezone.now()
    this_run.update(status=Status.FAILED, error=reason, heartbeat_at=now, finished_at=now)
