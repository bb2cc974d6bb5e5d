"""Policy uploads from the browser. The web request only stores the file and enqueues a job; a
worker runs the CSV importer on it (policies.import_runs) and writes its progress (rows done of
the total, at chunk granularity) and its outcome to the ImportJob the upload page polls.
Running a job again is safe: the importer upserts by policy number."""

import csv
import io
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.files import File
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from policies import tasks
from policies.import_runs import upload_path
from policies.models import Agent, ImportJob
from policies.spreadsheets import spreadsheet_safe

Status = ImportJob.Status
REJECTED_COLUMNS = ("line", "policy_number", "reason")


class ImportJobError(Exception):
    """The job cannot do what was asked; the message says why, for the uploader."""


class UploadTooLargeError(ImportJobError):
    def __init__(self):
        super().__init__(f"The file is larger than {settings.IMPORT_UPLOAD_MAX_MB} MB.")


def max_upload_bytes() -> int:
    return settings.IMPORT_UPLOAD_MAX_MB * 1024 * 1024


def start_import(
    *, upload: File, original_name: str, uploaded_by: AbstractBaseUser, agent: Agent | None
) -> ImportJob:
    """Store the uploaded file under UPLOADS_DIR and enqueue its import. `agent` limits the
    file to that agent's book; None (an admin's upload) lets it name any agent."""
    if upload.size > max_upload_bytes():  # the upload view drops such a file as it streams
        raise UploadTooLargeError()
    stored_name = f"{timezone.now():%Y/%m}/{uuid.uuid4().hex}.csv"
    path = Path(settings.UPLOADS_DIR) / stored_name
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    try:
        job = ImportJob.objects.create(
            uploaded_by=uploaded_by,
            agent=agent,
            original_name=Path(original_name).name[:255],
            stored_name=stored_name,
            size_bytes=upload.size,
            celery_task_id=uuid.uuid4().hex,
        )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    _enqueue(job)
    return job


def rerun_import(*, job: ImportJob) -> ImportJob:
    """Run a failed (or interrupted) job again on its stored file, as a new attempt."""
    mark_interrupted(now=timezone.now())
    job.refresh_from_db()
    if job.status != Status.FAILED:
        raise ImportJobError("Only a failed or interrupted import can be run again.")
    if job.file_purged_at:
        raise ImportJobError("The uploaded file was removed after its retention period.")
    task_id = uuid.uuid4().hex
    restarted = ImportJob.objects.filter(pk=job.pk, status=Status.FAILED).update(
        status=Status.QUEUED,
        attempt=F("attempt") + 1,
        celery_task_id=task_id,
        rows_done=0,
        rows_total=None,
        error="",
        started_at=None,
        heartbeat_at=None,
        finished_at=None,
    )
    if not restarted:
        raise ImportJobError("The import was started again already.")
    job.refresh_from_db()
    _enqueue(job)
    return job


def _enqueue(job: ImportJob) -> None:
    # Sent after commit, so the worker finds the row.
    transaction.on_commit(
        lambda: tasks.run_import_job.apply_async(
            kwargs={"job_id": job.pk, "attempt": job.attempt}, task_id=job.celery_task_id
        )
    )


def current_state(job: ImportJob) -> ImportJob:
    """The job as the page should show it: a running job whose worker went silent is failed."""
    stalled_since = timezone.now() - timedelta(minutes=settings.IMPORT_STALLED_AFTER_MINUTES)
    if job.status == Status.RUNNING and (job.heartbeat_at or job.created_at) < stalled_since:
        mark_interrupted(now=timezone.now())
        job.refresh_from_db()
    return job


def mark_interrupted(*, now: datetime) -> int:
    """A running job with no sign of life for IMPORT_STALLED_AFTER_MINUTES lost its worker:
    record it as failed, so that it can be run again. Returns how many were."""
    stalled_since = now - timedelta(minutes=settings.IMPORT_STALLED_AFTER_MINUTES)
    return ImportJob.objects.filter(
        Q(heartbeat_at__lt=stalled_since) | Q(heartbeat_at__isnull=True),
        status=Status.RUNNING,
    ).update(
        status=Status.FAILED,
        error=(
            "Interrupted: the worker stopped reporting progress "
            f"for {settings.IMPORT_STALLED_AFTER_MINUTES} minutes. Run it again."
        ),
        finished_at=now,
    )


def progress_of(job: ImportJob) -> dict:
    """What the upload page shows, as JSON."""
    percent = None
    if job.rows_total:
        percent = round(100 * job.rows_done / job.rows_total, 1)
    elif job.status == Status.SUCCEEDED:
        percent = 100.0
    return {
        "id": job.pk,
        "status": job.status,
        "status_label": job.get_status_display(),
        "finished": job.finished,
        "rows_done": job.rows_done,
        "rows_total": job.rows_total,
        "percent": percent,
        "error": job.error,
        "summary": (
            {
                "total": job.rows_total,
                "created": job.created,
                "updated": job.updated,
                "unchanged": job.unchanged,
                "rejected": job.rejected,
            }
            if job.status == Status.SUCCEEDED
            else None
        ),
        "can_rerun": job.status == Status.FAILED and not job.file_purged_at,
    }


def rejected_rows_csv(job: ImportJob) -> str:
    """The rows the importer rejected, with their line and reason, as CSV; each cell comes
    from the uploaded file, so none may start a spreadsheet formula."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(REJECTED_COLUMNS)
    writer.writerows(
        [spreadsheet_safe(row.get(name)) for name in REJECTED_COLUMNS] for row in job.rejected_rows
    )
    return out.getvalue()


def purge_uploaded_files(*, finished_before: datetime) -> int:
    """Delete the files of jobs finished before the cutoff; the job rows stay, marked purged.
    Returns how many files were purged."""
    jobs = ImportJob.objects.filter(finished_at__lt=finished_before, file_purged_at__isnull=True)
    purged = 0
    for job in jobs.only("pk", "stored_name").iterator():
        upload_path(job).unlink(missing_ok=True)
        purged += ImportJob.objects.filter(pk=job.pk, file_purged_at__isnull=True).update(
            file_purged_at=timezone.now()
        )
    return purged
