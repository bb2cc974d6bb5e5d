"""Scheduled pull of policy extracts (README: "Scheduled feeds"). A Feed is an HTTPS address or a
folder the workers share; its own PeriodicTask runs policies.tasks.fetch_feed, which calls
fetch_feed here:

    claim a run (one per feed at a time)
    -> stream the file to a temporary file, hashing it (HTTPS: If-None-Match/If-Modified-Since)
    -> HTTP 304, or the SHA-256 last imported: nothing to import
    -> otherwise import_policies(the file), and keep what to send back next time

A feed's secret (password, token or header value) is Fernet-encrypted at rest and is decrypted
only to make the request: every message a run records passes redact() first.
"""

import base64
import hashlib
import json
import logging
import re
import stat
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit

import requests
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet
from django.utils import timezone
from django.utils.crypto import salted_hmac
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from django_celery_beat.validators import crontab_validator

from policies.importers import ImportFileError, ImportSummary, import_policies
from policies.models import Feed, FeedRun, feed_folder, validate_feed_url

logger = logging.getLogger(__name__)

FEED_TASK = "policies.tasks.fetch_feed"
NIGHTLY = "0 2 * * *"  # a new feed's schedule, until an admin gives it one
REJECTED_ROWS_KEPT = 50  # the run log keeps the first ones; the file itself has the rest
CHUNK_BYTES = 1 << 16
HEARTBEAT_SECONDS = 5  # a long download shows it is alive (IMPORT_STALLED_AFTER_MINUTES)
# A folder feed never takes a file another program is still writing: these names are its
# usual temporary ones (the file is renamed once complete), and a file modified in the last
# FEEDS_FILE_QUIET_SECONDS may still grow.
IN_PROGRESS_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".filepart")
# Fields the admin edits; a save leaves the fetch state (etag, hash, failures) to the runs.
EDITABLE_FIELDS = [
    "name",
    "kind",
    "url",
    "path",
    "pattern",
    "auth",
    "username",
    "header_name",
    "secret_encrypted",
    "active",
    "updated_at",
]

Outcome = FeedRun.Outcome


class FeedError(Exception):
    """The feed could not be fetched; the message says why, for the admin, with no secret."""


# --- The feed and its schedule -----------------------------------------------------------------


def schedule_name(feed: Feed) -> str:
    return f"feed: {feed.name}"


@transaction.atomic
def save_feed(
    feed: Feed, *, cron: str = "", every_minutes: int | None = None, secret: str | None = None
) -> Feed:
    """Save the feed and its PeriodicTask ("feed: <name>", running policies.tasks.fetch_feed
    with the feed's id, enabled while the feed is active). `cron` ("m h dom mon dow" in
    TIME_ZONE) or `every_minutes` replace the task's schedule; without either it keeps its own
    (a new feed's: nightly at 02:00). `secret` replaces the stored secret; "" removes it."""
    if secret is not None:
        feed.secret_encrypted = encrypt_secret(secret) if secret else ""
    if feed.auth == Feed.Auth.NONE:
        feed.secret_encrypted = ""
    if feed.pk is None:
        feed.save()
    else:
        stored = Feed.objects.get(pk=feed.pk)
        if (stored.url, stored.path, stored.pattern) != (feed.url, feed.path, feed.pattern):
            # Another file: the old one's validators would mean nothing to it.
            feed.etag, feed.last_modified = "", ""
            feed.save(update_fields=[*EDITABLE_FIELDS, "etag", "last_modified"])
        else:
            feed.save(update_fields=EDITABLE_FIELDS)
    task = (
        feed.periodic_task
        or PeriodicTask.objects.filter(name=schedule_name(feed), task=FEED_TASK).first()
        or PeriodicTask(task=FEED_TASK)
    )
    if cron or every_minutes or task.pk is None:
        task.crontab, task.interval = _schedule(cron or NIGHTLY, every_minutes)
    task.name = schedule_name(feed)
    task.task = FEED_TASK
    task.args = json.dumps([feed.pk])
    task.kwargs = "{}"
    task.enabled = feed.active
    task.description = f"Fetches the policy feed {feed.name!r} and imports it when it changed."
    task.save()
    if feed.periodic_task_id != task.pk:
        feed.periodic_task = task
        Feed.objects.filter(pk=feed.pk).update(periodic_task=task)
    return feed


def delete_schedule(sender, instance: Feed, **kwargs) -> None:
    """A deleted feed takes its PeriodicTask with it (connected to post_delete, so a bulk
    delete in the admin does too). Deleted one by one: that tells Beat its schedule changed."""
    for task in PeriodicTask.objects.filter(pk=instance.periodic_task_id):
        task.delete()


def cron_fields(expression: str) -> list[str]:
    """The five fields of a cron expression, or ValidationError saying what is wrong."""
    fields = expression.split()
    if len(fields) != 5:
        raise ValidationError(
            "A cron expression has five fields: minute hour day-of-month month day-of-week."
        )
    crontab_validator(expression)
    return fields


def _schedule(
    cron: str, every_minutes: int | None
) -> tuple[CrontabSchedule | None, IntervalSchedule | None]:
    if every_minutes:
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=every_minutes, period=IntervalSchedule.MINUTES
        )
        return None, interval
    minute, hour, day_of_month, month_of_year, day_of_week = cron_fields(cron)
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        timezone=settings.TIME_ZONE,
    )
    return crontab, None


def schedule_of(task: PeriodicTask | None) -> tuple[str, int | None]:
    """(cron expression, every N minutes) of a feed's task, one of them set, for its form."""
    if task is None:
        return "", None
    if task.crontab:
        crontab = task.crontab
        fields = [crontab.minute, crontab.hour, crontab.day_of_month]
        return " ".join([*fields, crontab.month_of_year, crontab.day_of_week]), None
    if task.interval:
        minutes = task.interval.schedule.run_every.total_seconds() / 60
        return "", max(1, round(minutes))
    return "", None


def describe_schedule(task: PeriodicTask | None) -> str:
    if task is None:
        return "no schedule"
    if task.crontab:
        return task.crontab.human_readable
    return str(task.interval) if task.interval else "no schedule"


# --- Secrets -----------------------------------------------------------------------------------


def _fernet() -> MultiFernet:
    """Encrypts with FEEDS_SECRET_KEY (SECRET_KEY by default), decrypts with it or a fallback."""
    keys = [settings.FEEDS_SECRET_KEY, *settings.FEEDS_SECRET_KEY_FALLBACKS]
    return MultiFernet([Fernet(base64.urlsafe_b64encode(_derived_key(key))) for key in keys])


def _derived_key(secret: str) -> bytes:
    """32 bytes for this use only: the same SECRET_KEY signs sessions, never with this salt."""
    return salted_hmac("renewly.feeds", "fernet", secret, algorithm="sha256").digest()


def encrypt_secret(value: str) -> str:
    return _fernet().encrypt(value.encode()).decode()


def _secret_of(feed: Feed) -> str:
    if not feed.secret_encrypted:
        return ""
    try:
        return _fernet().decrypt(feed.secret_encrypted.encode()).decode()
    except InvalidToken:
        raise FeedError(
            "The feed's secret cannot be decrypted (FEEDS_SECRET_KEY or SECRET_KEY changed "
            "without the old key in FEEDS_SECRET_KEY_FALLBACKS): enter it again."
        ) from None


_URL = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\"<>]+", re.IGNORECASE)


def redact(text: str, *, secret: str = "") -> str:
    """The text with no credential in it: the secret masked, and every address stripped of
    its user and password and of its query (where tokens ride)."""
    if secret:
        text = text.replace(secret, "***")
    return _URL.sub(lambda match: _bare_address(match.group()), text)


def _bare_address(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}" + ("?..." if parts.query else "")


# --- Fetching ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fetched:
    """What a fetch brought: nothing (not modified), or a file copied to the run's temporary
    file, with its hash and the validators to send back next time."""

    not_modified: bool = False
    sha256: str = ""
    size_bytes: int = 0
    file_name: str = ""
    etag: str = ""
    last_modified: str = ""


def fetch_feed(*, feed_id: int) -> FeedRun | None:
    """Fetch the feed and import it if its content changed; its FeedRun records what happened.
    None when the feed is gone or another run of it is under way."""
    feed = Feed.objects.filter(pk=feed_id).first()
    if feed is None:
        return None
    run = _claim_run(feed)
    if run is None:
        return None
    try:
        # The importer reads a file twice: the download lands on disk, never whole in memory.
        with tempfile.TemporaryFile() as body:
            fetched = _fetch(feed, body, run)
            if fetched.not_modified:
                _succeed(feed, run, Outcome.NOT_MODIFIED)
            elif fetched.sha256 == feed.content_sha256:
                _succeed(feed, run, Outcome.UNCHANGED, fetched)
            else:
                body.seek(0)
                summary = import_policies(body, progress=lambda done, total: _heartbeat(run))
                _succeed(feed, run, Outcome.IMPORTED, fetched, summary)
    except FeedError as error:
        _fail(feed, run, str(error))
    except ImportFileError as error:
        _fail(feed, run, f"The file was refused, nothing was imported: {error}.")
    except Exception as error:
        # Recorded for the admin without its text (it may name anything), then raised for
        # the worker's log.
        _fail(
            feed,
            run,
            f"The fetch stopped on an unexpected error ({type(error).__name__}); "
            "the worker's log has the details.",
        )
        raise
    run.refresh_from_db()
    return run


def _claim_run(feed: Feed) -> FeedRun | None:
    """A new running FeedRun, unless one is under way (a constraint allows one per feed). A run
    silent for IMPORT_STALLED_AFTER_MINUTES lost its worker: it fails, and no longer blocks."""
    now = timezone.now()
    stalled_since = now - timedelta(minutes=settings.IMPORT_STALLED_AFTER_MINUTES)
    interrupted = FeedRun.objects.filter(
        feed=feed, outcome=Outcome.RUNNING, heartbeat_at__lt=stalled_since
    ).update(
        outcome=Outcome.FAILED,
        error=(
            "Interrupted: the worker stopped reporting progress for "
            f"{settings.IMPORT_STALLED_AFTER_MINUTES} minutes."
        ),
        finished_at=now,
    )
    if interrupted:
        Feed.objects.filter(pk=feed.pk).update(
            consecutive_failures=F("consecutive_failures") + interrupted
        )
    try:
        with transaction.atomic():
            return FeedRun.objects.create(feed=feed, started_at=now, heartbeat_at=now)
    except IntegrityError:
        return None


def _fetch(feed: Feed, body: IO[bytes], run: FeedRun) -> Fetched:
    if feed.kind == Feed.Kind.FOLDER:
        return _copy_newest_file(feed, body, run)
    return _download(feed, body, run)


def _heartbeat(run: FeedRun) -> None:
    FeedRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())


def _copy(chunks: Iterable[bytes], body: IO[bytes], run: FeedRun) -> Fetched:
    """Write the chunks to the body, hashing and counting them; refused past FEEDS_MAX_MB."""
    limit = settings.FEEDS_MAX_MB * 1024 * 1024
    digest, size = hashlib.sha256(), 0
    next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
    for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise FeedError(f"The file is larger than FEEDS_MAX_MB ({settings.FEEDS_MAX_MB} MB).")
        digest.update(chunk)
        body.write(chunk)
        if time.monotonic() > next_heartbeat:
            _heartbeat(run)
            next_heartbeat = time.monotonic() + HEARTBEAT_SECONDS
    return Fetched(sha256=digest.hexdigest(), size_bytes=size)


class _FeedSession(requests.Session):
    """requests drops the Authorization header on a redirect to another host; this drops a
    custom secret header too, and refuses a redirect to an address a feed may not have."""

    def __init__(self, secret_header: str = ""):
        super().__init__()
        self.secret_header = secret_header

    def rebuild_auth(self, prepared_request, response) -> None:
        try:
            validate_feed_url(prepared_request.url)
        except ValidationError:
            raise FeedError(
                "The server redirected the feed to an address feeds may not use (plain HTTP, or "
                "credentials in the address)."
            ) from None
        super().rebuild_auth(prepared_request, response)
        if self.secret_header and self.should_strip_auth(
            response.request.url, prepared_request.url
        ):
            prepared_request.headers.pop(self.secret_header, None)


def _download(feed: Feed, body: IO[bytes], run: FeedRun) -> Fetched:
    try:
        validate_feed_url(feed.url)  # FEEDS_ALLOW_HTTP may have changed since it was saved
    except ValidationError as error:
        raise FeedError(" ".join(error.messages)) from None
    headers = {"User-Agent": "Renewly feeds"}
    if feed.etag:
        headers["If-None-Match"] = feed.etag
    if feed.last_modified:
        headers["If-Modified-Since"] = feed.last_modified
    secret, auth, secret_header = _secret_of(feed), None, ""
    if feed.auth == Feed.Auth.BASIC:
        auth = (feed.username, secret)
    elif feed.auth == Feed.Auth.BEARER:
        secret_header, headers["Authorization"] = "Authorization", f"Bearer {secret}"
    elif feed.auth == Feed.Auth.HEADER:
        secret_header, headers[feed.header_name] = feed.header_name, secret
    timeout = settings.FEEDS_FETCH_TIMEOUT_SECONDS
    try:
        with (
            _FeedSession(secret_header) as session,
            session.get(feed.url, headers=headers, auth=auth, stream=True, timeout=timeout) as got,
        ):
            if got.status_code == 304:
                return Fetched(not_modified=True)
            if got.status_code != 200:
                raise FeedError(_refusal(got))
            fetched = _copy(got.iter_content(CHUNK_BYTES), body, run)
            return replace(
                fetched,
                etag=got.headers.get("ETag", ""),
                last_modified=got.headers.get("Last-Modified", ""),
            )
    except requests.RequestException as error:
        raise FeedError(_failure(error, feed)) from None


def _refusal(response: requests.Response) -> str:
    status = f"HTTP {response.status_code} {response.reason or ''}".strip()
    if response.status_code in (401, 403):
        return f"The server refused the feed's credentials ({status}): check them."
    if response.status_code == 404:
        return f"The server has no file at the feed's address ({status})."
    if response.status_code >= 500:
        return f"The server failed ({status}); the next run tries again."
    return f"The server answered {status} instead of the file."


def _failure(error: requests.RequestException, feed: Feed) -> str:
    """What went wrong, in words: requests' own messages repeat the address and the objects."""
    host = urlsplit(feed.url).netloc.rpartition("@")[2]
    cause = _root_cause(error)
    if isinstance(error, requests.Timeout) or isinstance(cause, TimeoutError):
        timeout = settings.FEEDS_FETCH_TIMEOUT_SECONDS
        return f"{host} did not answer within {timeout} s."
    if isinstance(error, requests.TooManyRedirects):
        return f"{host} redirected the feed too many times."
    if isinstance(error, requests.ConnectionError):
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else str(cause)
        return f"Could not fetch from {host}: {reason}."
    if isinstance(error, requests.exceptions.InvalidHeader):
        # Its own message quotes the header's value, which is the secret (perhaps escaped).
        return (
            "The feed's secret cannot be sent in an HTTP header (a line break, or a space at "
            "its start): enter it again."
        )
    return f"The request to {host} failed ({type(error).__name__})."


def _root_cause(error: BaseException) -> BaseException:
    """The innermost error: urllib3's reason, or what an error was raised from."""
    for _ in range(10):
        inner = getattr(error, "reason", None)
        if not isinstance(inner, BaseException):
            inner = error.__cause__ or error.__context__
        if inner is None:
            break
        error = inner
    return error


def _copy_newest_file(feed: Feed, body: IO[bytes], run: FeedRun) -> Fetched:
    path = newest_complete_file(feed)
    try:
        with open(path, "rb") as source:
            fetched = _copy(iter(lambda: source.read(CHUNK_BYTES), b""), body, run)
    except FileNotFoundError:
        raise FeedError(f"{path.name} was removed before it could be read.") from None
    except PermissionError:
        raise FeedError(f"The workers may not read {path.name}.") from None
    return replace(fetched, file_name=path.name)


def newest_complete_file(feed: Feed) -> Path:
    """The folder's newest file matching the feed's pattern that is not still being written:
    neither named as a temporary file (IN_PROGRESS_SUFFIXES, or hidden) nor modified in the
    last FEEDS_FILE_QUIET_SECONDS."""
    try:
        folder = feed_folder(feed.path)
    except ValueError as error:
        raise FeedError(str(error)) from None
    if not folder.is_dir():
        raise FeedError(f"The folder {folder} does not exist, or the workers cannot see it.")
    quiet_since = time.time() - settings.FEEDS_FILE_QUIET_SECONDS
    complete, being_written = [], 0
    for path in folder.glob(feed.pattern):
        if path.name.startswith(".") or path.name.endswith(IN_PROGRESS_SUFFIXES):
            continue
        try:
            status = path.stat()
        except FileNotFoundError:  # renamed or removed as we looked
            continue
        if not stat.S_ISREG(status.st_mode) or not path.resolve().is_relative_to(folder):
            continue
        if status.st_mtime > quiet_since:
            being_written += 1
            continue
        complete.append((status.st_mtime, path.name, path))
    if not complete:
        waiting = f" ({being_written} still being written)" if being_written else ""
        raise FeedError(f"No complete file matching {feed.pattern!r} in {folder}{waiting}.")
    return max(complete)[2]


# --- Recording the run -------------------------------------------------------------------------


def _succeed(
    feed: Feed,
    run: FeedRun,
    outcome: str,
    fetched: Fetched | None = None,
    summary: ImportSummary | None = None,
) -> None:
    now = timezone.now()
    run_fields: dict = {"outcome": outcome, "finished_at": now, "heartbeat_at": now}
    feed_fields: dict = {"consecutive_failures": 0, "last_success_at": now}
    if fetched:
        run_fields |= {
            "size_bytes": fetched.size_bytes,
            "content_sha256": fetched.sha256,
            "file_name": fetched.file_name,
        }
        feed_fields |= {"etag": fetched.etag, "last_modified": fetched.last_modified}
    if summary:
        rejected = sorted(summary.rejected, key=lambda row: row.line)[:REJECTED_ROWS_KEPT]
        run_fields |= {
            "rows_total": summary.total,
            "rows_created": summary.created,
            "rows_updated": summary.updated,
            "rows_unchanged": summary.unchanged,
            "rows_rejected": len(summary.rejected),
            "rejected_rows": [
                {"line": row.line, "policy_number": row.policy_number, "reason": row.reason}
                for row in rejected
            ],
        }
        feed_fields["content_sha256"] = fetched.sha256
    FeedRun.objects.filter(pk=run.pk).update(**run_fields)
    Feed.objects.filter(pk=feed.pk).update(**feed_fields)


def _fail(feed: Feed, run: FeedRun, reason: str) -> None:
    try:
        secret = _secret_of(feed)
    except FeedError:
        secret = ""
    reason = redact(reason, secret=secret)
    now = timezone.now()
    FeedRun.objects.filter(pk=run.pk).update(
        outcome=Outcome.FAILED, error=reason, finished_at=now, heartbeat_at=now
    )
    Feed.objects.filter(pk=feed.pk).update(consecutive_failures=F("consecutive_failures") + 1)
    logger.warning("feed %r failed: %s", feed.name, reason)


# --- Selectors ---------------------------------------------------------------------------------


def failing_feeds() -> QuerySet[Feed]:
    """Active feeds whose last FEEDS_READYZ_MISSED_RUNS runs (at least) all failed; none
    when it is 0 (not reported)."""
    if settings.FEEDS_READYZ_MISSED_RUNS < 1:
        return Feed.objects.none()
    return Feed.objects.filter(
        active=True, consecutive_failures__gte=settings.FEEDS_READYZ_MISSED_RUNS
    ).order_by("name")
