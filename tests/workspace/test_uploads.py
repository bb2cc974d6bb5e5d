"""Policy uploads in the browser's path: the request stores the file and enqueues a job, a real
Celery worker on Redis imports it, and the page's progress JSON, summary and rejected-rows CSV
say how it went. An agent's upload changes only their own book."""

import csv
import io
import os
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.files.uploadhandler import FileUploadHandler
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from config.queues import bulk_queue_for
from policies import tasks as import_tasks
from policies.models import ImportJob, Policy
from tests.factories import (
    ROW_EXPIRY,
    make_agent,
    make_customer,
    make_import_job,
    make_policy,
    make_staff,
    policy_csv,
    policy_row,
)
from tests.publishing import publishing_to
from tests.workers import celery_worker, wait_for, worker_log

REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
Status = ImportJob.Status


@pytest.fixture
def admin_client(client, db):
    admin = make_staff("boss", permissions=["policies.view_all_books", "policies.import_all_books"])
    client.force_login(admin)
    return client


@pytest.fixture
def alice(db):
    return make_agent("alice", "alice@agency.example")


@pytest.fixture
def bruno(db):
    return make_agent("bruno", "bruno@agency.example")


class Worker:
    """A real worker on Redis, and this process publishing to its queue."""

    def __init__(self, var_dir: Path, queue: str):
        self.var_dir, self.queue = var_dir, queue

    def log(self) -> str:
        return worker_log(self.var_dir, self.queue)


@pytest.fixture
def worker(require_service, tmp_path, uploads_dir):
    redis_url = require_service("Redis", REDIS_TEST_URL)
    queue = f"renewly-uploads-{uuid.uuid4().hex[:8]}"
    with (
        publishing_to(broker_url=redis_url, queue=queue),
        celery_worker(
            broker_url=redis_url,
            queue=queue,
            also=(bulk_queue_for(queue),),  # where uploads go
            var_dir=tmp_path,
            CELERY_TASK_DEFAULT_QUEUE=queue,
            UPLOADS_DIR=str(uploads_dir),
        ),
    ):
        yield Worker(tmp_path, queue)


def upload(client, file) -> ImportJob:
    response = client.post(reverse("uploads:upload"), {"file": file})
    assert response.status_code == 302, response.content.decode()
    return ImportJob.objects.latest("id")


def watch_progress(client, job: ImportJob, worker: Worker, timeout: float = 120) -> list[dict]:
    """Poll the JSON the page polls until the job is finished; return every answer."""
    answers = []

    def finished():
        answers.append(client.get(reverse("uploads:progress", args=[job.pk])).json())
        return answers[-1]["finished"]

    wait_for(finished, timeout=timeout, interval=0.1, explain=worker.log)
    return answers


# --- Through a real worker ------------------------------------------------------------------


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_an_upload_is_imported_by_a_worker_and_the_page_reads_its_progress(
    admin_client, alice, worker, uploads_dir
):
    rows = [policy_row(f"UP-{n:05d}", "alice@agency.example") for n in range(12_000)]
    rows[3]["expiry_date"] = "2027-02-30"
    rows[11_000]["agent_email"] = "nobody@agency.example"

    job = upload(admin_client, policy_csv(rows, "book.csv"))

    # The request only stored the file and enqueued the job.
    assert job.status in (Status.QUEUED, Status.RUNNING)
    assert (uploads_dir / job.stored_name).read_bytes().startswith(b"policy_number,")
    answers = watch_progress(admin_client, job, worker)
    counted = [answer["rows_done"] for answer in answers if answer["rows_total"]]
    assert counted == sorted(counted)
    assert any(0 < done < 12_000 for done in counted), "no progress between chunks was seen"
    final = answers[-1]
    assert final["status"] == "succeeded"
    assert (final["rows_done"], final["rows_total"], final["percent"]) == (12_000, 12_000, 100.0)
    assert final["summary"] == {
        "total": 12_000,
        "created": 11_998,
        "updated": 0,
        "unchanged": 0,
        "rejected": 2,
    }
    assert Policy.objects.filter(agent=alice).count() == 11_998

    page = admin_client.get(reverse("uploads:job", args=[job.pk])).content.decode()
    assert 'id="upload-summary"' in page
    assert "invalid expiry_date &#x27;2027-02-30&#x27;" in page

    download = admin_client.get(final["rejected_csv_url"])
    assert download["Content-Type"] == "text/csv"
    assert "attachment" in download["Content-Disposition"]
    rejected = list(csv.DictReader(io.StringIO(download.content.decode())))
    assert [(row["line"], row["policy_number"]) for row in rejected] == [
        ("5", "UP-00003"),
        ("11002", "UP-11000"),
    ]
    assert "expected YYYY-MM-DD" in rejected[0]["reason"]
    assert "unknown agent_email 'nobody@agency.example'" in rejected[1]["reason"]


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_an_agents_upload_changes_only_their_own_book(client, alice, bruno, worker):
    brunos = make_policy(
        "B-1", customer=make_customer("b1@mail.example"), agent=bruno, expiry_date=ROW_EXPIRY
    )
    client.force_login(alice.user)
    rows = [
        policy_row("A-1", "alice@agency.example"),
        policy_row("A-2", "bruno@agency.example"),  # names another agent
        policy_row("B-1", "alice@agency.example", customer_email="b1@mail.example"),
        # A new policy of hers, for his customer, with her own name and number for them.
        policy_row(
            "A-9",
            "alice@agency.example",
            customer_email="b1@mail.example",
            customer_name="Hijacked",
            customer_phone="+14155559999",
        ),
    ]

    job = upload(client, policy_csv(rows))
    final = watch_progress(client, job, worker)[-1]

    assert final["summary"]["created"] == 1
    assert final["summary"]["rejected"] == 3
    job.refresh_from_db()
    assert job.agent == alice
    assert [(row["line"], row["reason"]) for row in job.rejected_rows] == [
        (3, "agent_email 'bruno@agency.example' names another agent: import only your own book"),
        (4, "policy_number belongs to another agent"),
        (
            5,
            "customer_email 'b1@mail.example' is a customer of another agent: "
            "only an admin's import may change their details or add a policy for them",
        ),
    ]
    assert set(Policy.objects.filter(agent=alice).values_list("policy_number", flat=True)) == {
        "A-1"
    }
    brunos.refresh_from_db()
    assert brunos.agent == bruno
    # The refused rows did not rename bruno's customer nor change where his reminders go.
    assert (brunos.customer.name, brunos.customer.phone) == ("Pat Doe", "+14155550123")


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_a_file_that_is_not_a_policy_csv_fails_with_its_reason(admin_client, worker):
    file = SimpleUploadedFile("photo.csv", b"\x89PNG\x00\x00binary", content_type="text/csv")

    job = upload(admin_client, file)
    final = watch_progress(admin_client, job, worker)[-1]

    assert final["status"] == "failed"
    assert final["error"] == (
        "The file was refused, nothing was imported: "
        "the file is not a CSV text file (it contains binary data)."
    )
    assert final["can_rerun"] is True
    page = admin_client.get(reverse("uploads:job", args=[job.pk])).content.decode()
    assert 'id="upload-error"' in page
    assert "it contains binary data" in page


@pytest.mark.services
@pytest.mark.django_db(transaction=True)
def test_an_interrupted_job_shows_as_failed_and_a_rerun_imports_the_same_file(
    admin_client, alice, require_service, tmp_path, uploads_dir
):
    redis_url = require_service("Redis", REDIS_TEST_URL)
    queue = f"renewly-uploads-{uuid.uuid4().hex[:8]}"
    rows = [policy_row(f"R-{n}", "alice@agency.example") for n in range(3)]
    with publishing_to(broker_url=redis_url, queue=queue):
        job = upload(admin_client, policy_csv(rows))
        # A worker took it and died: the job says running, and went silent long ago.
        ImportJob.objects.filter(pk=job.pk).update(
            status=Status.RUNNING, heartbeat_at=timezone.now() - timedelta(hours=1)
        )

        shown = admin_client.get(reverse("uploads:progress", args=[job.pk])).json()
        assert shown["status"] == "failed"
        assert shown["error"].startswith("Interrupted: the worker stopped reporting progress")
        assert shown["can_rerun"] is True

        response = admin_client.post(reverse("uploads:rerun", args=[job.pk]))
        assert response.status_code == 302
        job.refresh_from_db()
        assert (job.status, job.attempt, job.error) == (Status.QUEUED, 2, "")

        # Now a worker comes: the first run's message finds itself superseded, the re-run
        # imports the file.
        with celery_worker(
            broker_url=redis_url,
            queue=queue,
            also=(bulk_queue_for(queue),),  # where uploads go
            var_dir=tmp_path,
            CELERY_TASK_DEFAULT_QUEUE=queue,
            UPLOADS_DIR=str(uploads_dir),
        ):
            final = watch_progress(admin_client, job, Worker(tmp_path, queue))[-1]
            log = worker_log(tmp_path, queue)
    assert final["status"] == "succeeded"
    assert final["summary"]["created"] == 3
    assert Policy.objects.filter(agent=alice).count() == 3
    assert "'superseded'" in log


# --- Without a worker -----------------------------------------------------------------------


def test_another_agents_job_is_not_found(client, alice, bruno):
    job = make_import_job(
        alice, status=Status.SUCCEEDED, rejected_rows=[{"line": 2, "reason": "bad"}]
    )
    client.force_login(bruno.user)
    for name in ("job", "progress", "rejected"):
        assert client.get(reverse(f"uploads:{name}", args=[job.pk])).status_code == 404
    assert client.post(reverse("uploads:rerun", args=[job.pk])).status_code == 404
    assert "book.csv" not in client.get(reverse("uploads:upload")).content.decode()


def test_the_rejected_rows_csv_runs_no_cell_as_a_formula(client, alice):
    job = make_import_job(
        alice,
        status=Status.SUCCEEDED,
        rejected_rows=[
            {"line": 2, "policy_number": '=HYPERLINK("http://evil.example")', "reason": "+1"},
            {"line": 3, "policy_number": "@SUM(A1)", "reason": "-2 days"},
            {"line": 4, "policy_number": "P-4", "reason": "invalid status 'x'"},
        ],
    )
    client.force_login(alice.user)

    download = client.get(reverse("uploads:rejected", args=[job.pk]))

    assert list(csv.reader(io.StringIO(download.content.decode()))) == [
        ["line", "policy_number", "reason"],
        ["2", '\'=HYPERLINK("http://evil.example")', "'+1"],
        ["3", "'@SUM(A1)", "'-2 days"],
        ["4", "P-4", "invalid status 'x'"],
    ]


def test_an_agent_and_staff_see_the_agents_job(client, admin_client, alice):
    job = make_import_job(alice, status=Status.SUCCEEDED)
    assert admin_client.get(reverse("uploads:progress", args=[job.pk])).status_code == 200
    client.force_login(alice.user)
    assert client.get(reverse("uploads:progress", args=[job.pk])).status_code == 200
    assert "book.csv" in client.get(reverse("uploads:upload")).content.decode()


def test_a_user_who_is_neither_agent_nor_staff_sees_nothing(client, alice):
    job = make_import_job(alice)
    client.force_login(get_user_model().objects.create_user("visitor"))
    assert client.get(reverse("uploads:upload")).status_code == 403
    assert client.get(reverse("uploads:progress", args=[job.pk])).status_code == 403


def test_a_visitor_who_is_not_logged_in_is_sent_to_log_in(client, alice):
    response = client.get(reverse("uploads:upload"))
    assert response.status_code == 302
    assert "login" in response["Location"]


def test_the_upload_request_stores_the_file_and_enqueues_after_commit(
    admin_client, uploads_dir, alice, django_capture_on_commit_callbacks, monkeypatch
):
    sent = []
    monkeypatch.setattr(
        import_tasks.run_import_job, "apply_async", lambda **options: sent.append(options)
    )
    with django_capture_on_commit_callbacks(execute=True):
        job = upload(admin_client, policy_csv([policy_row("Q-1", "alice@agency.example")]))

    assert job.status == Status.QUEUED
    assert job.agent is None  # an admin's upload may name any agent
    assert (uploads_dir / job.stored_name).exists()
    assert sent == [{"kwargs": {"job_id": job.pk, "attempt": 1}, "task_id": job.celery_task_id}]


class ReceivedBytes(FileUploadHandler):
    """Counts the uploaded bytes that reach the handlers which keep a file (memory, disk)."""

    received = 0

    def receive_data_chunk(self, raw_data, start):
        type(self).received += len(raw_data)
        return raw_data

    def file_complete(self, file_size):
        return None


def browser_of(user) -> tuple[Client, str]:
    """A client that checks CSRF like a browser's request is checked, and its CSRF token."""
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(user)
    browser.get(reverse("uploads:upload"))
    return browser, browser.cookies["csrftoken"].value


def test_a_file_over_the_size_limit_is_refused_while_it_streams(
    alice, settings, uploads_dir, monkeypatch
):
    settings.IMPORT_UPLOAD_MAX_MB = 1
    settings.FILE_UPLOAD_HANDLERS = [
        "tests.workspace.test_uploads.ReceivedBytes",
        *settings.FILE_UPLOAD_HANDLERS,
    ]
    monkeypatch.setattr(ReceivedBytes, "received", 0)
    big = SimpleUploadedFile("big.csv", b"policy_number\n" + b"0" * (3 * 1024 * 1024))
    browser, token = browser_of(alice.user)

    response = browser.post(reverse("uploads:upload"), {"csrfmiddlewaretoken": token, "file": big})

    assert response.status_code == 200
    assert "The file is larger than 1 MB." in response.content.decode()
    assert "This field is required" not in response.content.decode()
    assert not ImportJob.objects.exists()
    assert not uploads_dir.exists() or not any(uploads_dir.rglob("*"))
    # Dropped as it streamed: no more than the limit was ever kept in memory or on disk.
    assert 0 < ReceivedBytes.received <= 1024 * 1024


def test_the_upload_form_still_checks_the_csrf_token(alice, uploads_dir, monkeypatch):
    monkeypatch.setattr(import_tasks.run_import_job, "apply_async", lambda **options: None)
    browser, token = browser_of(alice.user)
    url = reverse("uploads:upload")
    rows = [policy_row("C-1", "alice@agency.example")]

    assert browser.post(url, {"file": policy_csv(rows)}).status_code == 403
    assert not ImportJob.objects.exists()

    response = browser.post(url, {"csrfmiddlewaretoken": token, "file": policy_csv(rows)})
    assert response.status_code == 302
    assert ImportJob.objects.get().agent == alice
