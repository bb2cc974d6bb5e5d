"""Scheduled feeds: a real HTTP server on the loopback (ETag, Last-Modified, basic auth) and a
real folder, fetched through policies.feeds and imported by the real importer. The server is
plain HTTP, which FEEDS_ALLOW_HTTP allows for these tests only."""

import base64
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from ops import health
from policies import feeds, tasks
from policies.models import Feed, FeedRun, Policy
from tests.factories import make_agent, make_feed, policy_file, policy_row

Outcome = FeedRun.Outcome
AGENT = "alice@agency.example"
PASSWORD = "correct-horse-battery-staple"
METRICS_TOKEN = "feeds-test-token"

pytestmark = pytest.mark.django_db


class ExtractServer:
    """What the fake policy administration system serves, and what it was asked."""

    def __init__(self):
        self.body = b""
        self.etag = ""
        self.last_modified = ""
        self.version, self.modified = 0, 0.0
        self.honours_conditional_requests = True
        self.credentials: tuple[str, str] | None = ("renewly", PASSWORD)
        self.redirect_to = ""
        self.requests: list[dict[str, str]] = []
        self.url = ""

    def serve(self, body: bytes) -> None:
        """A new version of the file: a new ETag, and a Last-Modified a second later at least
        (HTTP dates count whole seconds)."""
        self.body = body
        self.version += 1
        self.etag = f'"{self.version}-{hashlib.sha256(body).hexdigest()[:16]}"'
        self.modified = max(time.time(), self.modified + 1)
        self.last_modified = formatdate(self.modified, usegmt=True)


def basic(credentials: tuple[str, str]) -> str:
    return "Basic " + base64.b64encode(":".join(credentials).encode()).decode()


class ExtractHandler(BaseHTTPRequestHandler):
    def do_GET(self):
        extract: ExtractServer = self.server.extract
        extract.requests.append(dict(self.headers))
        if extract.redirect_to:
            self.send_response(302)
            self.send_header("Location", extract.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if extract.credentials and self.headers.get("Authorization") != basic(extract.credentials):
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="extracts"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        # RFC 9110: If-Modified-Since counts only without If-None-Match.
        if "If-None-Match" in self.headers:
            unchanged = self.headers["If-None-Match"] == extract.etag
        else:
            unchanged = self.headers.get("If-Modified-Since") == extract.last_modified
        if extract.honours_conditional_requests and unchanged:
            self.send_response(304)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(extract.body)))
        self.send_header("ETag", extract.etag)
        self.send_header("Last-Modified", extract.last_modified)
        self.end_headers()
        self.wfile.write(extract.body)

    def log_message(self, format, *args):  # quiet test output
        pass


@contextmanager
def serving() -> Iterator[ExtractServer]:
    extract = ExtractServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), ExtractHandler)
    httpd.extract = extract
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    extract.url = f"http://127.0.0.1:{httpd.server_port}/exports/policies.csv"
    try:
        yield extract
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def extract_server():
    with serving() as extract:
        yield extract


@pytest.fixture(autouse=True)
def feed_settings(settings, tmp_path):
    settings.FEEDS_ALLOW_HTTP = True  # the test server speaks plain HTTP
    settings.FEEDS_FOLDER_ROOT = tmp_path / "feeds"
    settings.FEEDS_FETCH_TIMEOUT_SECONDS = 5
    settings.FEEDS_FILE_QUIET_SECONDS = 30
    settings.FEEDS_READYZ_MISSED_RUNS = 3
    settings.METRICS_TOKEN = METRICS_TOKEN
    settings.FEEDS_FOLDER_ROOT.mkdir()
    make_agent("alice", AGENT)


@pytest.fixture
def http_feed(extract_server):
    extract_server.serve(policy_file([policy_row("F-1", AGENT), policy_row("F-2", AGENT)]))
    return make_feed(
        url=extract_server.url, auth=Feed.Auth.BASIC, username="renewly", secret=PASSWORD
    )


def fetch(feed: Feed) -> FeedRun:
    run = feeds.fetch_feed(feed_id=feed.pk)
    feed.refresh_from_db()
    return run


def counts(run: FeedRun) -> dict:
    return {
        "total": run.rows_total,
        "created": run.rows_created,
        "updated": run.rows_updated,
        "unchanged": run.rows_unchanged,
        "rejected": run.rows_rejected,
    }


# --- HTTPS feeds ------------------------------------------------------------------------------


def test_the_first_fetch_imports_the_file(http_feed, extract_server):
    run = fetch(http_feed)

    assert run.outcome == Outcome.IMPORTED
    assert counts(run) == {"total": 2, "created": 2, "updated": 0, "unchanged": 0, "rejected": 0}
    assert run.size_bytes == len(extract_server.body)
    assert sorted(Policy.objects.values_list("policy_number", flat=True)) == ["F-1", "F-2"]
    assert http_feed.etag == extract_server.etag
    assert http_feed.content_sha256 == hashlib.sha256(extract_server.body).hexdigest()
    assert "If-None-Match" not in extract_server.requests[0]  # nothing to compare yet


def test_a_second_fetch_with_the_same_etag_gets_304_and_imports_nothing(http_feed, extract_server):
    fetch(http_feed)
    updated = dict(Policy.objects.values_list("policy_number", "updated_at"))

    run = fetch(http_feed)

    assert run.outcome == Outcome.NOT_MODIFIED
    assert extract_server.requests[-1]["If-None-Match"] == extract_server.etag
    assert extract_server.requests[-1]["If-Modified-Since"] == extract_server.last_modified
    assert (run.size_bytes, run.rows_total) == (0, 0)
    assert dict(Policy.objects.values_list("policy_number", "updated_at")) == updated


def test_a_server_ignoring_conditional_requests_sending_the_same_file_is_unchanged_by_its_hash(
    http_feed, extract_server
):
    extract_server.honours_conditional_requests = False
    fetch(http_feed)
    extract_server.serve(extract_server.body)  # the same bytes, a new ETag and date

    run = fetch(http_feed)

    assert run.outcome == Outcome.UNCHANGED
    assert run.size_bytes == len(extract_server.body)
    assert run.rows_total == 0  # not imported
    assert http_feed.etag == extract_server.etag  # the new validators, for next time


def test_a_changed_file_is_imported_with_its_counts_and_first_rejected_rows(
    http_feed, extract_server
):
    fetch(http_feed)
    extract_server.serve(
        policy_file(
            [
                policy_row("F-1", AGENT),
                policy_row("F-2", AGENT, product_line="home"),
                policy_row("F-3", AGENT),
                policy_row("F-4", "nobody@agency.example"),
            ]
        )
    )

    run = fetch(http_feed)

    assert run.outcome == Outcome.IMPORTED
    assert counts(run) == {"total": 4, "created": 1, "updated": 1, "unchanged": 1, "rejected": 1}
    assert run.rejected_rows == [
        {
            "line": 5,
            "policy_number": "F-4",
            "reason": "unknown agent_email 'nobody@agency.example': create the agent first",
        }
    ]
    assert Policy.objects.get(policy_number="F-2").product_line == "home"


def test_wrong_credentials_fail_the_run_with_a_clear_reason_and_no_password(extract_server, caplog):
    extract_server.serve(policy_file([policy_row("F-1", AGENT)]))
    wrong = "wrong-password-9f8e7d"
    feed = make_feed(url=extract_server.url, auth=Feed.Auth.BASIC, username="renewly", secret=wrong)

    with caplog.at_level(logging.DEBUG):
        run = fetch(feed)

    assert run.outcome == Outcome.FAILED
    assert run.error == (
        "The server refused the feed's credentials (HTTP 401 Unauthorized): check them."
    )
    assert feed.consecutive_failures == 1
    assert not Policy.objects.exists()
    assert wrong not in caplog.text
    assert wrong not in feed.secret_encrypted
    assert wrong not in repr(feed) + str(feed)


def test_an_unreachable_server_fails_the_run_without_the_addresss_token(settings):
    feed = make_feed(url="http://127.0.0.1:1/extract.csv?token=tok-1234secret")

    run = fetch(feed)

    assert run.outcome == Outcome.FAILED
    assert run.error == "Could not fetch from 127.0.0.1:1: Connection refused."
    assert "tok-1234secret" not in run.error


def test_a_secret_that_cannot_go_in_a_header_fails_the_run_without_quoting_it(extract_server):
    feed = make_feed(
        url=extract_server.url,
        auth=Feed.Auth.HEADER,
        header_name="X-API-Key",
        secret="tok-5150\nX-Injected: 1",
    )

    run = fetch(feed)

    assert run.outcome == Outcome.FAILED
    assert run.error.startswith("The feed's secret cannot be sent in an HTTP header")
    assert "tok-5150" not in run.error
    assert extract_server.requests == []


def test_a_redirect_to_another_address_drops_the_feeds_credentials(extract_server):
    with serving() as elsewhere:
        elsewhere.credentials = None
        elsewhere.serve(policy_file([policy_row("F-1", AGENT)]))
        extract_server.redirect_to = elsewhere.url
        feed = make_feed(
            url=extract_server.url, auth=Feed.Auth.HEADER, header_name="X-API-Key", secret="k-1"
        )

        run = fetch(feed)

    assert run.outcome == Outcome.IMPORTED
    assert extract_server.requests[0]["X-API-Key"] == "k-1"
    assert "X-API-Key" not in elsewhere.requests[0]


def test_a_secret_in_a_message_is_masked_and_addresses_lose_their_userinfo_and_query():
    text = "GET https://bob:hunter2@pas.example/x.csv?key=abc failed; header value 'tkn-77'"

    assert feeds.redact(text, secret="tkn-77") == (
        "GET https://pas.example/x.csv?... failed; header value '***'"
    )


def test_a_malformed_file_fails_the_run_and_writes_nothing(http_feed, extract_server):
    extract_server.serve(b"policy_number;product_line\nF-1;auto\n")

    run = fetch(http_feed)

    assert run.outcome == Outcome.FAILED
    assert run.error.startswith("The file was refused, nothing was imported: ")
    assert not Policy.objects.exists()
    # Nothing kept from this fetch: the next run asks for the whole file again.
    assert (http_feed.etag, http_feed.content_sha256) == ("", "")


def test_only_https_addresses_are_accepted_unless_plain_http_is_allowed(settings):
    settings.FEEDS_ALLOW_HTTP = False
    with pytest.raises(ValidationError, match="Only https://"):
        Feed(name="plain", url="http://pas.example/x.csv").full_clean()
    with pytest.raises(ValidationError, match="authentication fields"):
        Feed(name="userinfo", url="https://bob:pw@pas.example/x.csv").full_clean()
    Feed(name="secure", url="https://pas.example/x.csv").full_clean()

    run = fetch(make_feed(url="http://127.0.0.1:1/x.csv"))  # saved while it was allowed

    assert (run.outcome, run.error) == (Outcome.FAILED, "Only https:// addresses are accepted.")


def test_a_run_under_way_makes_another_do_nothing(http_feed):
    FeedRun.objects.create(feed=http_feed)

    assert feeds.fetch_feed(feed_id=http_feed.pk) is None
    assert tasks.fetch_feed(http_feed.pk) == "skipped"
    assert not Policy.objects.exists()


# --- Folder feeds -----------------------------------------------------------------------------


def test_a_folder_feed_imports_the_newest_complete_file(settings):
    folder = settings.FEEDS_FOLDER_ROOT / "pas"
    folder.mkdir()
    now = time.time()
    files = {
        "2026-03-01.csv": ([policy_row("OLD-1", AGENT)], now - 3600),
        "2026-03-02.csv": ([policy_row("NEW-1", AGENT)], now - 600),
        "2026-03-03.csv": ([policy_row("GROWING-1", AGENT)], now - 5),  # still being written
        "2026-03-04.csv.part": ([policy_row("PART-1", AGENT)], now - 900),
    }
    for name, (rows, modified) in files.items():
        (folder / name).write_bytes(policy_file(rows))
        os.utime(folder / name, (modified, modified))
    feed = make_feed(kind=Feed.Kind.FOLDER, url="", path="pas", pattern="2026-*")

    run = fetch(feed)

    assert (run.outcome, run.file_name) == (Outcome.IMPORTED, "2026-03-02.csv")
    assert list(Policy.objects.values_list("policy_number", flat=True)) == ["NEW-1"]
    assert fetch(feed).outcome == Outcome.UNCHANGED


def test_a_folder_feed_reads_nothing_outside_the_feeds_folder(settings):
    with pytest.raises(ValidationError, match="inside FEEDS_FOLDER_ROOT"):
        Feed(name="escape", kind=Feed.Kind.FOLDER, path="../../etc").full_clean()

    run = fetch(make_feed(kind=Feed.Kind.FOLDER, url="", path="missing"))

    assert run.outcome == Outcome.FAILED
    assert run.error.endswith("missing does not exist, or the workers cannot see it.")


# --- /readyz ----------------------------------------------------------------------------------


@pytest.fixture
def database_and_feeds_only(monkeypatch):
    checks = {name: health.CHECKS[name] for name in ("database", "feeds")}
    monkeypatch.setattr(health, "CHECKS", checks)  # no broker asked


def readyz(client) -> tuple[int, dict]:
    response = client.get("/readyz", headers={"authorization": f"Bearer {METRICS_TOKEN}"})
    return response.status_code, json.loads(response.content)


def test_readyz_reports_a_feed_degraded_after_its_missed_runs_and_recovers_after_a_success(
    client, http_feed, extract_server, database_and_feeds_only
):
    extract_server.credentials = ("renewly", "rotated-by-the-other-side")
    for _ in range(2):
        fetch(http_feed)
    assert readyz(client)[1]["degraded"] == []  # two failures may still be a blip

    fetch(http_feed)
    status, body = readyz(client)

    # The policies stay as they were: nothing a load balancer could fix.
    assert (status, body["status"], body["degraded"]) == (200, "ready", ["feeds"])
    assert body["checks"]["feeds"]["detail"] == (
        "feed 'Nightly extract': 3 failed runs in a row (last success: never)"
    )

    extract_server.credentials = ("renewly", PASSWORD)
    assert fetch(http_feed).outcome == Outcome.IMPORTED
    status, body = readyz(client)
    assert (status, body["degraded"]) == (200, [])
    assert body["checks"]["feeds"]["detail"] == "no feed is failing"


# --- The schedule -----------------------------------------------------------------------------


def test_saving_a_feed_creates_and_updates_its_periodic_task_and_deleting_removes_it():
    feed = make_feed("Broker extract")
    task = PeriodicTask.objects.get(name="feed: Broker extract")
    assert (task.task, json.loads(task.args), task.enabled) == (
        "policies.tasks.fetch_feed",
        [feed.pk],
        True,
    )
    assert (task.crontab.minute, task.crontab.hour) == ("0", "2")  # nightly by default

    feed.name, feed.active = "Broker extract (EU)", False
    feeds.save_feed(feed, every_minutes=15)

    task = PeriodicTask.objects.get(pk=task.pk)
    assert (task.name, task.enabled, task.crontab) == ("feed: Broker extract (EU)", False, None)
    assert (task.interval.every, task.interval.period) == (15, "minutes")
    feeds.save_feed(feed)  # no schedule given: the task keeps its own
    assert PeriodicTask.objects.get(pk=task.pk).interval.every == 15

    feed.delete()
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


# --- The admin --------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client):
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@insurer.example"))
    return client


def test_the_admin_never_shows_the_saved_secret_and_keeps_it_when_left_empty(
    admin_client, http_feed, extract_server
):
    assert admin_client.get(reverse("admin:policies_feed_add")).status_code == 200
    change = reverse("admin:policies_feed_change", args=[http_feed.pk])
    stored = http_feed.secret_encrypted

    page = admin_client.get(change).content.decode()

    assert PASSWORD not in page
    assert stored not in page
    assert "Leave empty to keep the current value." in page
    assert '<div class="readonly">set</div>' in page

    form = {
        "name": http_feed.name,
        "kind": "https",
        "url": extract_server.url,
        "path": "",
        "pattern": "*.csv",
        "auth": "basic",
        "username": "renewly",
        "header_name": "",
        "secret": "",
        "every_minutes": "",
        "cron": "*/15 * * * *",
        "active": "on",
    }
    response = admin_client.post(change, form)

    assert response.status_code == 302, response.content.decode()
    http_feed.refresh_from_db()
    assert http_feed.secret_encrypted == stored
    assert PeriodicTask.objects.get(pk=http_feed.periodic_task_id).crontab.minute == "*/15"
    assert fetch(http_feed).outcome == Outcome.IMPORTED  # the kept password still works


def test_the_admin_fetches_now_and_lists_the_runs(
    admin_client, http_feed, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(tasks.fetch_feed, "delay", lambda feed_id: tasks.fetch_feed(feed_id))
    changelist = reverse("admin:policies_feed_changelist")

    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(changelist, {"action": "fetch_now", "_selected_action": [http_feed.pk]})

    assert Policy.objects.count() == 2
    assert "Imported" in admin_client.get(changelist).content.decode()
    runs = admin_client.get(reverse("admin:policies_feedrun_changelist")).content.decode()
    assert "Nightly extract" in runs
