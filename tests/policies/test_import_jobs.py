"""The import job service without the browser: a worker's run of an uploaded file."""

from django.utils import timezone

from policies import import_runs
from policies.models import ImportJob, Policy
from tests.factories import make_agent, make_import_job, policy_csv, policy_row

Status = ImportJob.Status


def test_a_redelivered_run_of_the_same_attempt_imports_again_safely(uploads_dir, db):
    make_agent("alice", "alice@agency.example")
    path = uploads_dir / "2026/01/x.csv"
    path.parent.mkdir(parents=True)
    path.write_bytes(policy_csv([policy_row("D-1", "alice@agency.example")]).read())
    job = make_import_job(status=Status.RUNNING, heartbeat_at=timezone.now())

    first = import_runs.run_import(job_id=job.pk, attempt=1)
    assert (first.status, first.created) == (Status.SUCCEEDED, 1)
    ImportJob.objects.filter(pk=job.pk).update(status=Status.RUNNING)  # delivered once more
    again = import_runs.run_import(job_id=job.pk, attempt=1)
    assert (again.status, again.created, again.unchanged) == (Status.SUCCEEDED, 0, 1)
    assert import_runs.run_import(job_id=job.pk, attempt=1) is None  # succeeded: nothing to do
    assert import_runs.run_import(job_id=job.pk, attempt=2) is None  # not this job's attempt
    assert Policy.objects.count() == 1
