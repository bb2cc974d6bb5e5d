"""Bulk import of policies from CSV: validate every row, then upsert by policy number in chunks.

A row that fails validation is rejected with its line number and reason; it never stops or
touches the good rows. A file that is not a CSV of the expected columns is refused whole,
before anything is written. The file is streamed, so its size costs a worker little memory.

Why it is fast: a row costs a few microseconds of Python and no model instance. RowParser
checks it with what no row changes looked up once per import, and caches the costly checks by
value; then each chunk reads the stored customers and policies it names in one indexed query
each, compares them with its rows as tuples of column values, and writes only the new and the
changed ones, a statement for each kind (policies.import_store: on PostgreSQL new policies go
by COPY, the rest as one JSON parameter). Re-importing unchanged rows writes nothing at all.
Comparing in Python is the cheaper way: the same comparison in SQL (rows sent as JSON, compared
with IS DISTINCT FROM or as jsonb) took the server two to three times as long as reading the
stored rows back. A file's rows are checked on a thread of their own while the database writes
the chunk before (_ahead), and Python's cycle collector looks at the import's own objects only.
"""

import codecs
import csv
import gc
import io
import queue
import re
import shutil
import tempfile
import threading
import time
import zoneinfo
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from functools import cache, lru_cache
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import IO, TypeVar

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator, validate_email
from django.db import DataError, IntegrityError, models, transaction
from django.utils import timezone

from policies import import_store, languages, phones, services, signals
from policies.models import Agent, Customer, Policy, ProductLine

COLUMNS = (
    "policy_number",
    "product_line",
    "customer_name",
    "customer_email",
    "customer_phone",
    "customer_timezone",
    "customer_language",
    "agent_email",
    "start_date",
    "expiry_date",
    "status",
)
OPTIONAL_COLUMNS = {"status"}
# Columns whose cell may be empty; the others must have a value in every row.
OPTIONAL_VALUES = {"customer_phone", "customer_timezone", "customer_language", "status"}
POLICY_FIELDS = ("product_line", "customer_id", "agent_id", "start_date", "expiry_date", "status")
CUSTOMER_FIELDS = ("name", "phone", "timezone", "language")
POLICY_NUMBER = COLUMNS.index("policy_number")
POLICY_STATUSES = tuple(Policy.Status.values)
AGENT_AT = POLICY_FIELDS.index("agent_id")
EXPIRY_AT = POLICY_FIELDS.index("expiry_date")
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")

ProgressCallback = Callable[[int, int], None]
T = TypeVar("T")


class ImportFileError(Exception):
    """The file as a whole cannot be imported; nothing was written."""


class RowError(ValueError):
    """One row is invalid; the message says which field and why."""


@dataclass(slots=True)  # not frozen: a frozen dataclass takes twice as long to make
class PolicyRow:
    line: int
    policy_number: str
    product_line: str
    customer_name: str
    customer_email: str
    customer_phone: str
    customer_timezone: str
    customer_language: str
    agent_email: str
    start_date: date
    expiry_date: date
    status: str
    agent_id: int = 0  # set from agent_email by the AgentDirectory, on the importing thread

    def customer_details(self) -> tuple[str, str, str, str]:
        """The values of CUSTOMER_FIELDS, as the database stores them."""
        return (
            self.customer_name,
            self.customer_phone,
            self.customer_timezone,
            self.customer_language,
        )

    def policy_values(self, customer_id: int) -> tuple:
        """The values of POLICY_FIELDS, as the database stores them."""
        return (
            self.product_line,
            customer_id,
            self.agent_id,
            self.start_date,
            self.expiry_date,
            self.status,
        )


@dataclass(frozen=True)
class RejectedRow:
    line: int
    reason: str
    policy_number: str = ""


class RowOutcome(models.TextChoices):
    CREATED = "created", "Created"
    UPDATED = "updated", "Updated"
    UNCHANGED = "unchanged", "Unchanged"
    REJECTED = "rejected", "Rejected"


class UnknownAgents(models.TextChoices):
    """What a row naming an agent Renewly does not know does (IMPORT_UNKNOWN_AGENTS, or the
    importer's caller): never a silent guess either way."""

    REJECT = "reject", "Reject the row: create the agent first"
    CREATE = "create", "Create the agent, with no usable password until an admin invites them"


@dataclass
class ImportSummary:
    total: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[RejectedRow] = field(default_factory=list)
    # line -> created / updated / unchanged, for a caller that answers row by row (the API);
    # None: only the counts, as a file of a million rows wants.
    row_outcomes: dict[int, str] | None = None
    agents_created: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "total": self.total,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "rejected": len(self.rejected),
        }


def import_policies(
    source: str | Path | IO[bytes],
    *,
    chunk_size: int = 5000,
    progress: ProgressCallback | None = None,
    only_agent_id: int | None = None,
    unknown_agents: str | None = None,
) -> ImportSummary:
    """Upsert the policies (and their customers) of a CSV file. Re-importing a file changes
    nothing; a changed row updates its policy. Raises ImportFileError for an unusable file.
    With only_agent_id (an agent importing their own book), a row naming another agent, a
    policy number another agent holds, or a customer another agent's policies belong to is
    rejected. A row naming an unknown agent is rejected, or the agent created, as
    `unknown_agents` says (default: the IMPORT_UNKNOWN_AGENTS setting).

    The file is streamed twice, never held whole: a first pass checks it is UTF-8 CSV with the
    right header and notes a 64-bit hash per row of its policy number and customer email (16
    bytes a row); the second parses and writes it chunk by chunk. What crosses chunks is small:
    the policy numbers that repeat, and the details of customers whose rows go on further down."""
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, not {chunk_size}")
    with _opened(source) as binary, _collector_skips_older_objects():
        scan = _scan(binary)
        binary.seek(scan.start)
        return _import_rows(
            _data_rows(_text_of(binary)),
            scan,
            chunk_size=chunk_size,
            progress=progress,
            only_agent_id=only_agent_id,
            unknown_agents=unknown_agents,
            read_ahead=import_store.store().works_elsewhere,
        )


def import_rows(
    rows: Sequence[tuple[int, Mapping[str, str]]],
    *,
    only_agent_id: int | None = None,
    unknown_agents: str | None = None,
) -> ImportSummary:
    """Upsert policies given as numbered rows of the CSV's columns (the integration API's,
    numbered by their place in its request), with the CSV importer's checks, words and rules,
    answering row by row: `row_outcomes` and `rejected` are keyed by those numbers."""
    scan = FileScan(start=0, total=len(rows))
    for _number, raw in rows:
        scan.number_hashes.append(hash(str(raw.get("policy_number") or "").strip()))
        scan.email_hashes.append(hash(str(raw.get("customer_email") or "").strip().lower()))
    return _import_rows(
        ((number, _cells_of(raw)) for number, raw in rows),
        scan,
        chunk_size=max(len(rows), 1),
        progress=None,
        only_agent_id=only_agent_id,
        unknown_agents=unknown_agents,
        row_outcomes={},
        where="row {} of this request".format,
    )


def _cells_of(raw: Mapping[str, str | None]) -> tuple:
    """A row given by column names as the importer takes rows: its cells in COLUMNS' order,
    then any beyond them (which csv.DictReader files under the key None)."""
    cells = tuple(raw.get(name) or "" for name in COLUMNS)
    return (*cells, raw[None]) if None in raw else cells


@dataclass
class FileScan:
    """What the first pass learnt about a file: enough to check repeats, not the rows."""

    start: int  # where the file was when handed over; the second pass starts there again
    total: int = 0
    number_hashes: array = field(default_factory=lambda: array("q"))
    email_hashes: array = field(default_factory=lambda: array("q"))

    def repeated_numbers(self) -> set[int]:
        """The hashes of policy numbers on more than one row (a collision only costs a look)."""
        ordered = sorted(self.number_hashes)
        return {a for a, b in zip(ordered, islice(ordered, 1, None), strict=False) if a == b}

    def customer_goes_on(self) -> bytearray:
        """For each row, 1 when a later row of the file has its customer: that row's details are
        not the customer's last, so they may not overwrite the customer's stored ones yet."""
        goes_on, seen = bytearray(self.total), set()
        for index in range(self.total - 1, -1, -1):
            email = self.email_hashes[index]
            if email in seen:
                goes_on[index] = 1
            else:
                seen.add(email)
        return goes_on


def _import_rows(
    rows: Iterator[tuple[int, Sequence[str]]],
    scan: FileScan,
    *,
    chunk_size: int,
    progress: ProgressCallback | None,
    only_agent_id: int | None,
    unknown_agents: str | None,
    row_outcomes: dict[int, str] | None = None,
    where: Callable[[int], str] = "line {} of this file".format,
    read_ahead: bool = False,
) -> ImportSummary:
    summary = ImportSummary(total=scan.total, row_outcomes=row_outcomes)
    agent_ids = AgentDirectory(
        create_unknown=(unknown_agents or settings.IMPORT_UNKNOWN_AGENTS) == UnknownAgents.CREATE,
        summary=summary,
    )
    parsed = _parsed(rows, RowParser())
    if read_ahead:
        # Half a chunk ahead at most: a worker's memory stays a chunk's or so.
        batch_size = min(chunk_size, 100)
        parsed = _ahead(
            parsed, batch_size=batch_size, batches_ahead=max(chunk_size // 2 // batch_size, 1)
        )
    repeated = scan.repeated_numbers()
    goes_on = scan.customer_goes_on()
    del scan.number_hashes, scan.email_hashes
    first_line_of: dict[str, int] = {}  # only for the policy numbers that repeat
    # Details of a customer whose rows go on, from their latest good row: applied by their last
    # row, or at the end when that row is rejected. A refused row lends its details to no one.
    pending: dict[str, tuple] = {}
    chunk: list[PolicyRow] = []
    last_rows: set[int] = set()  # lines of the chunk's rows that are their customer's last
    done = 0
    # Closed at once, even on an error: the read-ahead's thread stops with it.
    with closing(parsed):
        for index, row in enumerate(parsed):
            if isinstance(row, PolicyRow):
                try:
                    # Last: an unknown agent may be created, and only for a row good otherwise.
                    row.agent_id = agent_ids.id_of(row.agent_email, only_agent_id=only_agent_id)
                    if hash(row.policy_number) in repeated:
                        first_line = first_line_of.setdefault(row.policy_number, row.line)
                        if first_line != row.line:
                            raise RowError(
                                f"policy_number {row.policy_number!r} repeats {where(first_line)}"
                            )
                except RowError as error:
                    row = RejectedRow(row.line, str(error), row.policy_number)
            if isinstance(row, RejectedRow):
                summary.rejected.append(row)
            else:
                chunk.append(row)
                if not goes_on[index]:
                    last_rows.add(row.line)
            done += 1
            if done % chunk_size == 0 or done == summary.total:
                _import_chunk(chunk, last_rows, pending, summary, only_agent_id)
                chunk, last_rows = [], set()
                if progress:
                    progress(done, summary.total)
    for start in range(0, len(pending), chunk_size):
        leftovers = dict(islice(pending.items(), start, start + chunk_size))
        with transaction.atomic():
            _upsert_customers(
                import_store.store(),
                {email: (details, True) for email, details in leftovers.items()},
                now=timezone.now(),
            )
    if progress and not done:
        progress(summary.total, summary.total)
    return summary


def _parsed(
    rows: Iterator[tuple[int, Sequence[str]]], parser: "RowParser"
) -> Iterator["PolicyRow | RejectedRow"]:
    """Each row as the parser made it, or rejected saying why not."""
    for line, cells in rows:
        try:
            yield parser.parse(line, cells)
        except RowError as error:
            yield RejectedRow(line, str(error), cells[POLICY_NUMBER].strip())


_END = object()


def _ahead(items: Iterator[T], *, batch_size: int, batches_ahead: int = 2) -> Iterator[T]:
    """`items`, made by a thread of its own up to `batches_ahead` batches before they are
    needed. Why: reading and checking rows is Python's work, writing them mostly the database's;
    psycopg lets go of the GIL while it waits, so the next chunk is checked meanwhile. An error
    of the thread's is raised here; the thread stops when the caller stops taking items."""
    handoff: queue.Queue = queue.Queue(maxsize=batches_ahead)
    stopped = threading.Event()

    def hand_over(batch) -> bool:
        while not stopped.is_set():
            try:
                handoff.put(batch, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            while batch := list(islice(items, batch_size)):
                if not hand_over(batch):
                    return
                # Lets the importing thread take the GIL back as soon as its query returns, not
                # after the switch interval (5 ms a round trip).
                time.sleep(0)
            hand_over(_END)
        except BaseException as error:  # handed to the caller, raised there
            hand_over(error)

    reader = threading.Thread(target=produce, name="import-reader", daemon=True)
    reader.start()
    try:
        while (batch := handoff.get()) is not _END:
            if isinstance(batch, BaseException):
                raise batch
            yield from batch
    finally:
        stopped.set()
        reader.join()


def _import_chunk(
    rows: list[PolicyRow],
    last_rows: set[int],
    pending: dict[str, tuple],
    summary: ImportSummary,
    only_agent_id: int | None,
) -> None:
    store = import_store.store()
    if only_agent_id is not None:
        rows = _rows_of_own_book(store, rows, only_agent_id, summary)
    # email -> (details, whether they are final): a customer on several rows gets the file's
    # last details, whatever the chunks, and a re-import rewrites no customer back and forth.
    customers: CustomerPlan = {}
    for row in rows:
        customers[row.customer_email] = (row.customer_details(), row.line in last_rows)
    for email, (values, final) in customers.items():
        if final:
            pending.pop(email, None)
        else:
            pending[email] = values
    if rows:
        _write_chunk(store, rows, customers, summary, only_agent_id)


class RowParser:
    """Validates and normalises rows (their cells in COLUMNS' order) into PolicyRows, or raises
    RowError naming the field at fault; all but the agent, which the AgentDirectory checks last.
    One per import: every row of a file comes through `parse`, so what no row changes (the
    settings it reads, the time zones) is looked up once, and the costly checks are cached by
    value (phone numbers, dates). It never touches the database, so it may run on a thread of
    its own (_ahead)."""

    def __init__(self):
        self._timezones = _known_timezones()
        self._default_timezone = settings.TIME_ZONE
        self._default_language = settings.LANGUAGE_CODE
        self._languages: dict[str, str] = {}  # the tags found good: a book has a few dozen

    def parse(self, line: int, cells: Sequence[str]) -> PolicyRow:
        if len(cells) > len(COLUMNS):
            raise RowError("has more cells than the header has columns")
        (
            policy_number,
            product_line,
            customer_name,
            customer_email,
            customer_phone,
            customer_timezone,
            customer_language,
            agent_email,
            start_date,
            expiry_date,
            status,
        ) = values = list(map(str.strip, cells))
        if "" in values:
            missing = [
                name
                for name, value in zip(COLUMNS, values, strict=True)
                if not value and name not in OPTIONAL_VALUES
            ]
            if missing:
                raise RowError(f"missing {', '.join(missing)}")

        email = _limited("customer_email", customer_email.lower(), 254)
        if not _is_email(email):
            raise RowError(f"invalid customer_email {customer_email!r}")

        # parse_date's rule; its cached verdict first, parse_date only to name a bad date.
        start = _iso_date(start_date) or parse_date("start_date", start_date)
        expiry = _iso_date(expiry_date) or parse_date("expiry_date", expiry_date)
        if expiry <= start:
            raise RowError(f"expiry_date {expiry} is not after start_date {start}")

        status_value = status.lower() or Policy.Status.ACTIVE
        if status_value not in POLICY_STATUSES:
            raise RowError(
                f"invalid status {status!r} (expected one of: {', '.join(POLICY_STATUSES)})"
            )

        timezone_name = customer_timezone or self._default_timezone
        if timezone_name not in self._timezones:
            raise RowError(f"unknown customer_timezone {timezone_name!r} (expected an IANA name)")

        policy_number = _limited("policy_number", policy_number, 64)
        product_line = _limited("product_line", product_line.lower(), 64)
        customer_name = _limited("customer_name", customer_name, 200)
        customer_phone = normalise_phone(customer_phone)
        customer_language = self._languages.get(customer_language) or self._language(
            customer_language
        )
        # Positional, in the fields' order: keywords cost a row a microsecond.
        return PolicyRow(
            line,
            policy_number,
            product_line,
            customer_name,
            email,
            customer_phone,
            timezone_name,
            customer_language,
            agent_email.lower(),
            start,
            expiry,
            status_value,
        )

    def _language(self, raw: str) -> str:
        """The tag as given, once it is one CLDR knows: a language with no translation yet
        is written to in the closest one (policies.languages.fallbacks), never refused."""
        if not raw:
            return self._default_language
        try:
            languages.canonical(raw)
        except languages.UnknownLanguage as problem:
            raise RowError(f"invalid customer_language {raw!r}: {problem}") from None
        self._languages[raw] = _limited("customer_language", raw, languages.MAX_LENGTH)
        return raw


# Django's validate_email, with a verdict in two regular expressions for the addresses nearly
# every row has (a dot-atom before the @, a domain name after it, by Django's own patterns;
# lower case, as the importer stores addresses): a match is an address it accepts, anything else
# goes to it for its verdict. The domain's, the costly one, is remembered: domains repeat.
_PLAIN_USER = re.compile(r"[-!#$%&'*+/=?^_`{}|~0-9a-z]+(?:\.[-!#$%&'*+/=?^_`{}|~0-9a-z]+)*\Z")
_PLAIN_DOMAIN = re.compile(
    EmailValidator.hostname_re + EmailValidator.domain_re + EmailValidator.tld_no_fqdn_re + r"\Z"
)


@lru_cache(maxsize=4096)
def _is_plain_domain(domain: str) -> bool:
    return _PLAIN_DOMAIN.match(domain) is not None


def _is_email(address: str) -> bool:
    if len(address) <= 320:
        user, _, domain = address.rpartition("@")
        if _PLAIN_USER.match(user) and _is_plain_domain(domain):
            return True
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


class AgentDirectory:
    """The agents rows name, by email: the one place that decides what a row naming an unknown
    agent does (UnknownAgents), for the CSV importer and the API alike. Each email is looked up
    once, when a row first names it: a book's few agents, not every agent, per import."""

    def __init__(self, *, create_unknown: bool, summary: ImportSummary | None = None):
        self._ids: dict[str, int | None] = {}
        self._create_unknown = create_unknown
        self._summary = summary

    def id_of(self, email: str, *, only_agent_id: int | None = None) -> int:
        if email not in self._ids:
            # Through the import store, as the rows are read: a compiled ORM query costs a
            # single PUT more than its round trip.
            found = import_store.store().stored(Agent, "email", [email], ())
            self._ids[email] = found[email][0] if email in found else None
        agent_id = self._ids[email]
        if agent_id is None:
            # An agent importing their own book never creates another agent.
            if not self._create_unknown or only_agent_id is not None:
                raise RowError(f"unknown agent_email {email!r}: create the agent first")
            try:
                validate_email(email)
            except ValidationError:
                raise RowError(f"invalid agent_email {email!r}") from None
            try:
                agent_id = self._ids[email] = services.register_agent(email=email).pk
            except services.AgentError as error:
                raise RowError(f"agent_email {email!r}: {error}") from None
            if self._summary is not None:
                self._summary.agents_created.append(email)
        if only_agent_id is not None and agent_id != only_agent_id:
            raise RowError(f"agent_email {email!r} names another agent: import only your own book")
        return agent_id


@lru_cache(maxsize=65536)  # a customer's number repeats on each of their policies
def normalise_phone(raw: str) -> str:
    """Return the number in E.164 ('+14155550100'), '' for no number, or raise RowError."""
    if not raw:
        return ""
    try:
        return phones.to_e164(raw)
    except phones.InvalidPhoneNumber as error:
        raise RowError(f"invalid customer_phone {raw!r}: {error}") from None


@contextmanager
def _collector_skips_older_objects() -> Iterator[None]:
    """Python's cycle collector leaves what the process held before the import alone until it
    is done: the collections a file's many objects set off walked that whole heap each time (a
    sixth of the time of re-importing 100,000 unchanged rows). Unlike turning it off, this
    still collects any cycles the import itself leaves behind, chunk after chunk. A process
    that froze its heap itself (a pre-forking server) keeps it as it is."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def _opened(source: str | Path | IO[bytes]) -> Iterator[IO[bytes]]:
    """The source as a seekable binary file (the importer reads it twice)."""
    if not hasattr(source, "read"):
        with open(source, "rb") as binary:
            yield binary
    elif source.seekable():
        yield source
    else:
        with tempfile.TemporaryFile() as copy:
            shutil.copyfileobj(source, copy)
            copy.seek(0)
            yield copy


class _CheckedBytes(io.RawIOBase):
    """The file's bytes as they stream by, refused at the first binary (NUL) byte or the first
    byte that is not UTF-8, naming where it is."""

    def __init__(self, binary: IO[bytes]):
        self._binary = binary
        self._offset = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._binary.read(len(buffer))
        if b"\x00" in data:
            raise ImportFileError("the file is not a CSV text file (it contains binary data)")
        held_back = len(self._utf8.getstate()[0])  # a character split across two reads
        try:
            self._utf8.decode(data, final=not data)
        except UnicodeDecodeError as error:
            raise ImportFileError(
                "the file is not UTF-8 text (byte "
                f"{self._offset - held_back + error.start} cannot be decoded)"
            ) from None
        self._offset += len(data)
        buffer[: len(data)] = data
        return len(data)


def _text_of(binary: IO[bytes]) -> io.TextIOWrapper:
    # utf-8-sig: tolerate the byte-order mark spreadsheets write. closefd: the caller closes.
    checked = io.BufferedReader(_CheckedBytes(binary), buffer_size=1 << 16)
    return io.TextIOWrapper(checked, encoding="utf-8-sig", newline="")


def _scan(binary: IO[bytes]) -> FileScan:
    """The first pass: check the file is UTF-8 CSV whose header names exactly the importer's
    columns, count its data rows and hash each row's policy number and customer email."""
    scan = FileScan(start=binary.tell())
    reader = csv.reader(_text_of(binary))
    try:
        header = _check_header(next(reader, []))
        number_at, email_at = header.index("policy_number"), header.index("customer_email")
        number_and_email = itemgetter(number_at, email_at)
        width = max(number_at, email_at) + 1
        padding = [""] * width
        add_number, add_email = scan.number_hashes.append, scan.email_hashes.append
        for cells in reader:
            if any(map(str.strip, cells)):
                if len(cells) < width:
                    cells += padding[len(cells) :]  # a short row's missing cells are empty
                number, email = number_and_email(cells)
                add_number(hash(number.strip()))
                add_email(hash(email.strip().lower()))
    except csv.Error as error:
        raise ImportFileError(f"the file is not valid CSV: {error}") from None
    scan.total = len(scan.number_hashes)
    return scan


def _check_header(cells: list[str]) -> list[str]:
    """The header's column names, if they are exactly the importer's columns."""
    header = [name.strip().lower() for name in cells]
    if not header:
        raise ImportFileError("the file is empty: expected a header row of " + ",".join(COLUMNS))
    missing = [name for name in COLUMNS if name not in header and name not in OPTIONAL_COLUMNS]
    unexpected = [name for name in header if name not in COLUMNS]
    duplicated = sorted({name for name in header if header.count(name) > 1})
    problems = []
    if missing:
        problems.append("missing columns: " + ", ".join(missing))
    if unexpected:
        problems.append("unexpected columns: " + ", ".join(repr(name) for name in unexpected))
    if duplicated:
        problems.append("repeated columns: " + ", ".join(duplicated))
    if problems:
        raise ImportFileError(
            "the header does not match the policy CSV format ("
            + "; ".join(problems)
            + "). Expected: "
            + ",".join(COLUMNS)
        )
    return header


def _data_rows(text: IO[str]) -> Iterator[tuple[int, tuple[str, ...]]]:
    """Yield (line number, cells in COLUMNS' order, then any beyond the header's) for each
    non-blank data row; the number is the row's first line."""
    reader = csv.reader(text)
    header = [name.strip().lower() for name in next(reader)]
    width = len(header)
    # A column the file leaves out (status) reads the empty cell appended past the header's.
    in_order = itemgetter(*(header.index(name) if name in header else width for name in COLUMNS))
    padding = [""] * (width + 1)
    line = reader.line_num + 1
    for cells in reader:
        if any(map(str.strip, cells)):
            if len(cells) > width:
                yield line, (*in_order(cells), *cells[width:])
            else:
                cells += padding[len(cells) :]
                yield line, in_order(cells)
        line = reader.line_num + 1


def _rows_of_own_book(
    store: import_store.ImportStore, rows: list[PolicyRow], agent_id: int, summary: ImportSummary
) -> list[PolicyRow]:
    """The rows of a chunk an agent's file may write; the others are rejected, saying why.
    This is the one place that limits an agent's import to their own book."""
    policies = store.stored(
        Policy, "policy_number", [row.policy_number for row in rows], ("agent_id",)
    )
    numbers_held = {number for number, (_, (holder,)) in policies.items() if holder != agent_id}
    # Another agent's reminders go to this customer's details: only an admin may change them.
    customers = store.stored(Customer, "email", [row.customer_email for row in rows], ())
    held_ids = set(
        Policy.objects.filter(customer_id__in=[pk for pk, _ in customers.values()])
        .exclude(agent_id=agent_id)
        .values_list("customer_id", flat=True)
    )
    customers_held = {email for email, (pk, _) in customers.items() if pk in held_ids}
    own = []
    for row in rows:
        if row.policy_number in numbers_held:
            reason = "policy_number belongs to another agent"
        elif row.customer_email in customers_held:
            reason = (
                f"customer_email {row.customer_email!r} is a customer of another agent: "
                "only an admin's import may change their details or add a policy for them"
            )
        else:
            own.append(row)
            continue
        summary.rejected.append(RejectedRow(row.line, reason, row.policy_number))
    return own


# email -> (the customer's details, whether they are final: may overwrite the stored ones)
CustomerPlan = dict[str, tuple[tuple, bool]]


def _write_chunk(
    store: import_store.ImportStore,
    rows: list[PolicyRow],
    customers: CustomerPlan,
    summary: ImportSummary,
    only_agent_id: int | None,
) -> None:
    try:
        with transaction.atomic():
            _upsert(store, rows, customers, summary, only_agent_id)
    except (IntegrityError, DataError):
        # Something the row checks cannot see (a concurrent writer, say): find the row at fault
        # one by one, so that the good rows of this chunk still land.
        for row in rows:
            try:
                with transaction.atomic():
                    _upsert(store, [row], customers, summary, only_agent_id)
            except (IntegrityError, DataError) as error:
                summary.rejected.append(
                    RejectedRow(row.line, f"refused by the database: {error}", row.policy_number)
                )


def _upsert(
    store: import_store.ImportStore,
    rows: list[PolicyRow],
    customers: CustomerPlan,
    summary: ImportSummary,
    only_agent_id: int | None,
) -> None:
    """Write a chunk's customers and policies. A row is compared with the stored one as a tuple
    of column values, before anything is written: only new and changed rows are sent back. An
    agent's import never takes over a policy another agent's import created meanwhile (after
    _rows_of_own_book looked): the stored holder is checked again here, in the write."""
    now = timezone.now()
    customer_ids = _upsert_customers(
        store, {row.customer_email: customers[row.customer_email] for row in rows}, now=now
    )
    stored = store.stored(
        Policy, "policy_number", [row.policy_number for row in rows], POLICY_FIELDS
    )
    new, changed, refused, renewals = [], [], [], []
    outcomes: dict[int, str] = {}
    # A code seen for the first time gets its line, for an admin to name; unchanged rows'
    # lines were added when they were written.
    written: set[str] = set()
    for row in rows:
        values = row.policy_values(customer_ids[row.customer_email])
        current = stored.get(row.policy_number)
        if current is None:
            outcomes[row.line] = RowOutcome.CREATED
            new.append((row.policy_number, *values))
        elif current[1] == values:  # its agent the row's, so an agent's import holds it
            outcomes[row.line] = RowOutcome.UNCHANGED
            continue
        elif only_agent_id is not None and current[1][AGENT_AT] != only_agent_id:
            refused.append(
                RejectedRow(row.line, "policy_number belongs to another agent", row.policy_number)
            )
            continue
        else:
            outcomes[row.line] = RowOutcome.UPDATED
            changed.append((current[0], *values))
            # A later expiry is a renewal; an earlier one, a correction.
            if row.expiry_date > current[1][EXPIRY_AT]:
                renewals.append((current[0], current[1][EXPIRY_AT], row.expiry_date))
        written.add(row.product_line)
    # The new policies' ids are not needed: nothing is asked back.
    store.insert(Policy, ("policy_number", *POLICY_FIELDS), new, key=None, now=now)
    store.update(Policy, POLICY_FIELDS, changed, now=now)
    if renewals:
        signals.policies_renewed.send(__name__, renewals=renewals)
    if written:
        ProductLine.objects.bulk_create(
            [ProductLine(code=code) for code in sorted(written)], ignore_conflicts=True
        )
    counts = Counter(outcomes.values())
    summary.rejected += refused
    summary.created += counts[RowOutcome.CREATED]
    summary.updated += counts[RowOutcome.UPDATED]
    summary.unchanged += counts[RowOutcome.UNCHANGED]
    if summary.row_outcomes is not None:
        summary.row_outcomes.update(outcomes)


def _upsert_customers(
    store: import_store.ImportStore, wanted: CustomerPlan, *, now: datetime
) -> dict[str, int]:
    """Create customers (found by email) with the wanted details, or update them to the final
    ones; return email -> id."""
    stored = store.stored(Customer, "email", list(wanted), CUSTOMER_FIELDS)
    new, changed = [], []
    for email, (details, final) in wanted.items():
        current = stored.get(email)
        if current is None:
            new.append((email, *details))
        elif final and current[1] != details:
            changed.append((current[0], *details))
    ids = {email: pk for email, (pk, _) in stored.items()}
    ids.update(store.insert(Customer, ("email", *CUSTOMER_FIELDS), new, key="email", now=now))
    store.update(Customer, CUSTOMER_FIELDS, changed, now=now)
    return ids


@lru_cache(maxsize=4096)  # a file's dates repeat: a few years of days cover every row
def _iso_date(raw: str) -> date | None:
    if not ISO_DATE.fullmatch(raw):  # fromisoformat also takes 20260101 and week dates
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def parse_date(name: str, raw: str) -> date:
    """A YYYY-MM-DD date, or RowError naming the field: the one date rule of rows and the API."""
    parsed = _iso_date(raw)
    if parsed is None:
        raise RowError(f"invalid {name} {raw!r} (expected YYYY-MM-DD)")
    return parsed


def _limited(name: str, value: str, max_length: int) -> str:
    if len(value) > max_length:
        raise RowError(f"{name} is longer than {max_length} characters")
    return value


@cache
def _known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())
