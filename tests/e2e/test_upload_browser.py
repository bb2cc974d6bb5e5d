"""An agent uploads a policy CSV in the browser, watches the progress bar fill as a real worker
on Redis imports it, and reads the summary and the rejected rows."""

import csv
import os
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import Error as PlaywrightError

from config.queues import bulk_queue_for
from policies.importers import COLUMNS
from policies.models import ImportJob, Policy
from policies.services import ensure_agent
from tests.e2e.conftest import screenshot
from tests.publishing import publishing_to
from tests.workers import celery_worker, worker_log

REDIS_TEST_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
ROWS = 12_000  # three chunks of the importer's 5,000: the bar moves more than once
PASSWORD = "upload-pass-123"

# The worker must see what the test and the live server commit.
pytestmark = [pytest.mark.services, pytest.mark.django_db(transaction=True)]


def write_book(path, agent_email: str) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for n in range(ROWS):
            writer.writerow(
                [
                    f"WEB-{n:05d}",
                    "home",
                    f"Customer {n}",
                    f"customer{n}@mail.example",
                    "",
                    "Europe/Madrid",
                    "es",
                    "bruno@agency.example" if n == 7 else agent_email,  # another agent's book
                    "2026-01-15",
                    "2027-01-15" if n != 9 else "2025-01-15",  # expires before it starts
                    "active",
                ]
            )


def bar_state(page) -> dict | None:
    """The progress bar and status as the page shows them; None while the page reloads."""
    try:
        return page.evaluate(
            """() => {
                const bar = document.getElementById("upload-progress");
                const status = document.getElementById("upload-status");
                return bar && status && {
                    value: bar.hasAttribute("value") ? bar.value : null,
                    max: bar.max,
                    status: status.dataset.status,
                };
            }"""
        )
    except PlaywrightError:
        return None


def test_an_agent_uploads_a_file_and_watches_the_progress_bar_reach_the_end(
    page, live_server, settings, tmp_path, require_service
):
    redis_url = require_service("Redis", REDIS_TEST_URL)
    settings.UPLOADS_DIR = tmp_path / "uploads"
    ensure_agent(username="alice", email="alice@agency.example", password=PASSWORD)
    ensure_agent(username="bruno", email="bruno@agency.example")
    book = tmp_path / "alice-book.csv"
    write_book(book, "alice@agency.example")
    queue = f"renewly-upload-browser-{uuid.uuid4().hex[:8]}"

    with (
        publishing_to(broker_url=redis_url, queue=queue),
        celery_worker(
            broker_url=redis_url,
            queue=queue,
            also=(bulk_queue_for(queue),),  # where uploads go
            var_dir=tmp_path,
            CELERY_TASK_DEFAULT_QUEUE=queue,
            UPLOADS_DIR=str(settings.UPLOADS_DIR),
        ),
    ):
        page.goto(f"{live_server.url}/accounts/login/?next=/uploads/")
        page.fill("#id_username", "alice")
        page.fill("#id_password", PASSWORD)
        page.click("[type=submit]")
        page.wait_for_url(f"{live_server.url}/uploads/")

        page.set_input_files("#id_file", str(book))
        started = time.monotonic()
        page.click("#upload-submit")
        page.wait_for_url(f"{live_server.url}/uploads/*/")
        answered_in = time.monotonic() - started

        seen = []
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            state = bar_state(page)
            if state:
                seen.append(state)
                if state["status"] in ("succeeded", "failed"):
                    break
            time.sleep(0.1)
        else:
            pytest.fail(
                f"the bar never reached the end: {seen[-3:]}\n{worker_log(tmp_path, queue)}"
            )

    final = seen[-1]
    assert final == {"value": ROWS, "max": ROWS, "status": "succeeded"}, worker_log(tmp_path, queue)
    counted = [state["value"] for state in seen if state["value"] is not None and state["max"] > 1]
    assert counted == sorted(counted), "the bar went backwards"
    assert answered_in < 10, "the upload request waited for the import"
    assert page.text_content("#upload-progress-text").strip() == f"{ROWS} / {ROWS} rows"
    assert page.text_content("#summary-created") == str(ROWS - 2)
    assert page.text_content("#summary-rejected") == "2"
    rejected = page.text_content("#rejected-rows")
    assert "names another agent" in rejected
    assert "is not after start_date" in rejected
    screenshot(page, "upload")

    with page.expect_download() as download:
        page.click("#rejected-download")
    lines = Path(download.value.path()).read_text().splitlines()
    assert lines[0] == "line,policy_number,reason"
    assert [line.split(",")[:2] for line in lines[1:]] == [["9", "WEB-00007"], ["11", "WEB-00009"]]

    job = ImportJob.objects.get()
    assert (job.status, job.agent.email) == ("succeeded", "alice@agency.example")
    assert Policy.objects.filter(agent=job.agent).count() == ROWS - 2
