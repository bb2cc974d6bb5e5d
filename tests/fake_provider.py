"""A stand-in for Twilio's Messages API and Postmark's send API, on 127.0.0.1, so that tests and
benchmarks drive the real twilio SDK and the real anymail Postmark backend over HTTP. It also
answers the two lookups that tell whether a provider already accepted a message: Twilio's
Messages list and Postmark's outbound message search.

    with FakeProvider() as fake:
        client = fake.twilio_client()                  # or: client.api.base_url = fake.base_url
        fake.script("+14155550100", ["500", "ok"])     # this number's next two sends
        fake.always("gone@mail.example", "inactive")   # every send to this address
        fake.script_lookups(["503"])                   # the next lookup, of either API
        ...
        assert fake.accepted["+14155550100"] == 1

Outcomes, drawn one per send and recipient (a script first, then the standing outcome, then "ok";
the recipient's own before those for ALL):

    "ok"                 accepted; an SMS is then delivered ("delivered" is the same)
    "read"               accepted; a WhatsApp message is then delivered and read
    "sent", "undelivered[:code]", "failed[:code]"
                         accepted; the SMS's status then ends there (ErrorCode 30003 / 30008)
    "400".."599"         that HTTP status, in the provider's error format (Twilio code 20000+status,
                         20003 for 401)
    "timeout"            accepted, but answered only after `hang_seconds`: the client gives up
                         on a message that still goes out, as with the real providers
    "reset"              the connection is closed (RST) without an answer; nothing is sent
    "invalid"            Twilio 21211 / Postmark ErrorCode 300 (HTTP 422)
    "not_mobile"         Twilio 21614 / Postmark ErrorCode 300
    "unsubscribed", "inactive"
                         Twilio 21610 (the recipient replied STOP) / Postmark ErrorCode 406

Lookups have outcomes of their own, so that a lookup can fail while sends work and the reverse:
`script_lookups([...])` and `always_lookups(...)` take "ok", "400".."599", "timeout" (the answer
comes after `hang_seconds`) and "reset", drawn one per lookup of either API once it passed
authentication and validation; `lookups` counts them per API ("sms", "email"). `latency` is for
sends only.

    GET /2010-04-01/Accounts/{AccountSid}/Messages.json
        Twilio's list, newest first, in Twilio's envelope (messages, first_page_uri,
        next_page_uri, previous_page_uri, page, page_size, start, end, uri), each message as a
        fetch shows it. Filters: To, From (a Messaging Service's message has no From here),
        DateSent (that day), DateSent< (on or before), DateSent> (on or after); paging:
        PageSize (50, at most 1000), Page, PageToken (PA<sid>: after that message, PB<sid>:
        before it), as in the next and previous page URIs; a value it cannot read is a 400,
        code 20001. The SDK's list() and stream() raise a plain TwilioException("Unable to
        fetch page", response) for an error answer, not a TwilioRestException.
        Dates, as Twilio: a filter compares the GMT day only. The SDK sends
        date_sent_after=datetime as "2026-12-02T10:00:00Z", and a message sent at 09:00 that day
        matches it: narrow by the time yourself. A message is dated by its date_sent, which it
        gets when its status becomes "sent" (or "delivered"/"undelivered" at once, without
        callbacks). While it has none (queued, accepted, failed) the fake dates it by its
        date_created instead: the fake's choice, so that reconciliation finds a message
        accepted moments ago. Real Twilio filters on date_sent alone, and may leave out a
        message not sent yet.
    GET /messages/outbound (with or without a trailing slash)
        Postmark's outbound message search, newest first: {"TotalCount", "Messages": [...]}.
        count (1..500) and offset are required, count + offset at most 10,000 (else HTTP 422,
        ErrorCode 700, Postmark's "Messages query exception"). Filters: recipient (To, Cc or
        Bcc), fromemail, tag, status ("sent": every message here is Sent), subject (whole, any
        case), fromdate and todate (inclusive; a date is its whole day, a datetime without an
        offset is read as UTC), messagestream ("outbound" unless given, as Postmark), and
        metadata_<key>=<value> (that key's exact value). Unlike Postmark, a message is
        searchable as soon as it is accepted.

Messaging Services: `messaging_services` maps the account's service SIDs to the domain each
is onboarded with for Link Shortening ("": none); by default DEFAULT_MESSAGING_SERVICE_SID with
DEFAULT_SHORT_LINK_DOMAIN. As Twilio, a send needs From or MessagingServiceSid; a
MessagingServiceSid that is not MG and 32 hex digits is 21705, one the account lacks 21701 (HTTP
400 both). ShortenUrls=true needs a MessagingServiceSid (else 400, code 20001: the fake's
choice); with it, each http(s) link in the Body, up to the next space, becomes
https://<domain>/ and ten letters or digits, in the message as stored and listed (the customer's
text); `short_links` maps each short link to the link it stands for. A service without a domain
leaves its links as they are (as Twilio with ContinueOnFailure).
WhatsApp goes through the same Messages API, as Twilio takes it: To and From both
"whatsapp:+..." (else 400, code 21910); a business-initiated message is approved content,
ContentSid ("HX" and 32 hex digits, one `approve_content(sid, text)` registered, else 400, code
21655) with ContentVariables (a JSON object of non-empty one-line strings, else 400, code 21656).
The message's body is the content's text with its {{n}} filled in, as Twilio shows it; the
variables are kept on the Sent record. Free text (a Body, no ContentSid) is accepted and then
fails with ErrorCode 63016, as outside WhatsApp's 24-hour window. Its recipient is counted as
"whatsapp:+...", apart from the same number's SMS: `fake.always("whatsapp:+1...", "failed:63003")`
fails that number on WhatsApp only (63003: not a WhatsApp user).

The fake's `clock` (seconds, as time.time) dates what it accepts: set it to send "yesterday".
Only the standard library serves; twilio's own RequestValidator signs the status callbacks.
"""

import base64
import json
import re
import secrets
import socket
import string
import struct
import sys
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.utils import format_datetime, formatdate, getaddresses, parseaddr, parsedate_to_datetime
from functools import lru_cache, partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.error import HTTPError
from urllib.parse import parse_qsl, urlencode, urlsplit
from urllib.request import ProxyHandler, Request, build_opener

from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

ALL = "*"  # a script or standing outcome for every recipient
DEFAULT_ACCOUNT_SID = "AC" + "fa4e" * 8
DEFAULT_AUTH_TOKEN = "fake-twilio-auth-token"
DEFAULT_POSTMARK_TOKEN = "fake-postmark-server-token"
SERVICE_SENDER = "+15005550006"  # the number a Messaging Service "picks" for its callbacks
# The account's one Messaging Service, onboarded for Link Shortening with this domain.
DEFAULT_MESSAGING_SERVICE_SID = "MG" + "5e" * 16
DEFAULT_SHORT_LINK_DOMAIN = "rnwl.example"
API_VERSION = "2010-04-01"

REJECTIONS = {"invalid", "not_mobile", "unsubscribed", "inactive"}
DELIVERY = {"delivered", "read", "sent", "undelivered", "failed"}
KINDS = {"ok", "timeout", "reset"} | REJECTIONS | DELIVERY
DEFAULT_ERROR_CODES = {"undelivered": 30003, "failed": 30008}
LOOKUP_FAULTS = {"http", "timeout", "reset"}  # besides "ok"
TWILIO_REJECTIONS = {  # kind: (code, message)
    "invalid": (21211, "Invalid 'To' Phone Number: {to}"),
    "not_mobile": (21614, "'To' number {to} is not a valid mobile number"),
    "unsubscribed": (21610, "Attempt to send to unsubscribed recipient"),
    "inactive": (21610, "Attempt to send to unsubscribed recipient"),
}
POSTMARK_INACTIVE = (
    "You tried to send to recipient(s) that have been marked as inactive. Found inactive "
    "addresses: {addresses}. Inactive recipients are ones that have generated a hard bounce, "
    "a spam complaint, or a manual suppression. "
)
POSTMARK_PARTLY_INACTIVE = (
    "Message OK, but will not deliver to these inactive addresses: {addresses}. "
    "Inactive recipients are ones that have generated a hard bounce or a spam complaint."
)
TWILIO_DATE_FILTERS = {  # name: how a message's GMT day compares with the one given
    "DateSent": date.__eq__,
    "DateSent<": date.__le__,
    "DateSent>": date.__ge__,
}
WHATSAPP = "whatsapp:"
CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
CONTENT_VARIABLE = re.compile(r"\{\{\s*([0-9A-Za-z_]+)\s*\}\}")
OUTSIDE_WINDOW = 63016  # a WhatsApp message that is not approved content
TWILIO_PAGE_SIZE, TWILIO_MAX_PAGE_SIZE = 50, 1000
TWILIO_BAD_PARAMETER = 20001  # the fake's code for a value it cannot read (its own choice)
TWILIO_SERVICE_SID = re.compile(r"MG[0-9a-fA-F]{32}")
TWILIO_SERVICE_INVALID, TWILIO_SERVICE_NOT_FOUND = 21705, 21701
# A link as the fake's Link Shortening finds one: a web address up to the next space.
TWILIO_LINK = re.compile(r"https?://\S+")
SHORT_LINK_CODE = string.ascii_letters + string.digits  # ten of them after the domain
POSTMARK_MAX_COUNT, POSTMARK_MAX_WINDOW = 500, 10_000  # count; count + offset
POSTMARK_QUERY_ERROR = 700  # Postmark's "Messages query exception"
POSTMARK_STREAM = "outbound"  # the default transactional stream
GSM_7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_7_EXTENDED = set("^{}\\[~]|€\f")


class ContentError(ValueError):
    """WhatsApp content Twilio refuses: `code` is Twilio's."""

    def __init__(self, code: int, message: str):
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Outcome:
    kind: str  # one of KINDS ("ok" is stored as "delivered"), or "http"
    status: int | None = None  # for "http"
    code: int | None = None  # the SMS's ErrorCode for "undelivered" and "failed"

    @classmethod
    def parse(cls, text: str) -> "Outcome":
        kind, _, code = text.partition(":")
        if kind.isdigit() and 400 <= int(kind) <= 599:
            return cls("http", status=int(kind))
        if kind not in KINDS:
            raise ValueError(f"unknown outcome {text!r}: use an HTTP status or one of {KINDS}")
        kind = "delivered" if kind == "ok" else kind
        return cls(kind, code=int(code) if code else DEFAULT_ERROR_CODES.get(kind))

    @classmethod
    def parse_lookup(cls, text: str) -> "Outcome":
        outcome = cls.parse(text)
        if text != "ok" and outcome.kind not in LOOKUP_FAULTS:
            raise ValueError(
                f"unknown lookup outcome {text!r}: use an HTTP status, 'ok', 'timeout' or 'reset'"
            )
        return outcome


OK = Outcome("delivered")


@dataclass
class Sent:
    """A message the fake accepted. `status` follows an SMS through its callbacks."""

    channel: str  # "sms", "whatsapp" or "email"
    id: str  # Twilio's SID or Postmark's MessageID
    recipient: str  # the phone number, or the first accepted email address
    body: str  # Body, or TextBody
    recipients: list[str] = field(default_factory=list)
    sender: str = ""  # From (or the MessagingServiceSid)
    subject: str = ""
    html: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    tag: str = ""
    status: str = ""
    data: dict = field(default_factory=dict)  # the request as received
    content_sid: str = ""  # WhatsApp: the approved content sent
    content_variables: dict[str, str] = field(default_factory=dict)  # ... and its variables
    accepted_at: datetime = field(default_factory=lambda: datetime.now(UTC))  # the fake's clock


@dataclass
class Callback:
    url: str  # the StatusCallback URL, which the signature covers
    params: dict[str, str]
    signature: str
    status: int | None  # the receiver's HTTP status; None when it could not be reached
    error: str = ""


def recipient_key(recipient: str) -> str:
    recipient = recipient.strip()
    return recipient.lower() if "@" in recipient else recipient


def sms_segments(body: str) -> int:
    if set(body) <= GSM_7 | GSM_7_EXTENDED:
        units = len(body) + sum(ch in GSM_7_EXTENDED for ch in body)
        single, multi = 160, 153
    else:
        units, single, multi = len(body.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else -(-units // multi)


def twilio_error(status: int, code: int, message: str) -> tuple[int, dict]:
    more_info = f"https://www.twilio.com/docs/errors/{code}"
    return status, {"code": code, "message": message, "more_info": more_info, "status": status}


@lru_cache(maxsize=2)
def _rfc2822(second: int) -> str:
    """Twilio's form of a time, "Thu, 24 Aug 2023 05:01:45 +0000", formatted once a second:
    every message of a second shares it (the fake's own CPU counts against the machine's in the
    benchmarks)."""
    return format_datetime(datetime.fromtimestamp(second, UTC))


def whole_number(name: str, value: str, low: int, high: int) -> int:
    if not (value.isdigit() and low <= int(value) <= high):
        raise ValueError(f"{name} must be a whole number from {low} to {high}, not {value!r}")
    return int(value)


def twilio_filter_day(name: str, value: str) -> date:
    """The day of a DateSent filter, "2026-12-02" or "2026-12-02T10:00:00Z" (the SDK's form for
    a datetime): Twilio keeps the day alone."""
    try:
        day = date.fromisoformat(value[:10])
        if len(value) > 10:
            datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a date, YYYY-MM-DD, not {value!r}") from None
    return day


def twilio_day(resource: dict) -> date:
    """The GMT day a DateSent filter compares: date_sent, or date_created until it is sent."""
    return parsedate_to_datetime(resource["date_sent"] or resource["date_created"]).date()


def postmark_bound(name: str, value: str, *, end_of_day: bool) -> datetime:
    """fromdate/todate: a date is its whole day; a datetime without an offset is taken as UTC."""
    try:
        if len(value) == 10:
            moment = datetime.combine(
                date.fromisoformat(value), (datetime.max if end_of_day else datetime.min).time()
            )
        else:
            moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{name} must be a date or an ISO datetime, not {value!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def postmark_summary(sent: Sent) -> dict:
    """A message as Postmark's outbound search shows it."""
    message = sent.data

    def addresses(name: str) -> list[dict]:
        pairs = getaddresses([message.get(name) or ""])
        return [{"Email": address, "Name": who or None} for who, address in pairs if address]

    to, cc, bcc = addresses("To"), addresses("Cc"), addresses("Bcc")
    return {
        "Tag": sent.tag,
        "MessageID": sent.id,
        "MessageStream": message.get("MessageStream") or POSTMARK_STREAM,
        "To": to,
        "Cc": cc,
        "Bcc": bcc,
        "Recipients": [address["Email"] for address in to + cc + bcc],
        "ReceivedAt": sent.accepted_at.isoformat(),
        "From": sent.sender,
        "Subject": sent.subject,
        "Attachments": [
            attachment.get("Name", "") for attachment in message.get("Attachments") or []
        ],
        "Status": "Sent",
        "TrackOpens": bool(message.get("TrackOpens", False)),
        "TrackLinks": message.get("TrackLinks") or "None",
        "Metadata": dict(sent.metadata),
        "Sandboxed": False,
    }


def postmark_matches(params: dict[str, str], sent: Sent, summary: dict) -> bool:
    """Whether a message passes the search's filters (fromdate/todate apart)."""
    wanted = {name: value for name, value in params.items() if value}
    checks = {
        "recipient": lambda value: value.lower() in map(str.lower, summary["Recipients"]),
        "fromemail": lambda value: parseaddr(summary["From"])[1].lower() == value.lower(),
        "tag": lambda value: summary["Tag"] == value,
        "status": lambda value: summary["Status"].lower() == value.lower(),
        "subject": lambda value: summary["Subject"].lower() == value.lower(),
    }
    if summary["MessageStream"] != (wanted.get("messagestream") or POSTMARK_STREAM):
        return False
    for name, value in wanted.items():
        key = name.removeprefix("metadata_")
        if key != name and not (key in sent.metadata and str(sent.metadata[key]) == value):
            return False
        if name in checks and not checks[name](value):
            return False
    return True


class FakeProvider:
    def __init__(
        self,
        account_sid: str = DEFAULT_ACCOUNT_SID,
        auth_token: str = DEFAULT_AUTH_TOKEN,
        postmark_token: str = DEFAULT_POSTMARK_TOKEN,
        *,
        latency: float = 0.0,
        hang_seconds: float = 30.0,
        status_callbacks: bool = True,
        callback_delay: float = 0.0,
        callback_base_url: str | None = None,
    ):
        """`latency`: seconds every send waits before its answer. `hang_seconds`: how long a
        "timeout", of a send or a lookup, holds its answer (stop() cuts it short).
        `status_callbacks`: post SMS status callbacks, `callback_delay` seconds apart.
        `callback_base_url`: post them there instead of to the StatusCallback URL's own host,
        keeping its path and query, while the signature still covers the URL as given (as
        behind a proxy)."""
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.postmark_token = postmark_token
        self.latency = self._initial_latency = latency
        self.hang_seconds = hang_seconds
        self.status_callbacks = status_callbacks
        self.callback_delay = callback_delay
        self.callback_base_url = callback_base_url
        self.callback_timeout = 5.0
        self.messaging_services = {DEFAULT_MESSAGING_SERVICE_SID: DEFAULT_SHORT_LINK_DOMAIN}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._port = 0  # chosen at the first start; a start after stop() listens there again
        self._executor: ThreadPoolExecutor | None = None
        self._opener = build_opener(ProxyHandler({}))  # callbacks never go through a proxy
        self._contents: dict[str, str] = {}  # approved WhatsApp content: SID -> text
        self.reset()

    # --- Life cycle ------------------------------------------------------------------------

    def start(self) -> "FakeProvider":
        """Listen (again, after stop(): on the same port, with what it counted kept, as a
        provider back from an outage)."""
        self._stopping.clear()
        self._server = _Server(self, self._port)
        self._port = self._server.server_address[1]
        self._executor = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fake-callbacks")
        threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="fake-provider",
            daemon=True,
        ).start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes sends held by latency or "timeout"
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._executor:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> "FakeProvider":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # --- Configuration -----------------------------------------------------------------------

    def script(self, recipient: str, outcomes: list[str]) -> None:
        """Outcomes for the recipient's (or ALL's) next sends, one consumed per send."""
        parsed = [Outcome.parse(text) for text in outcomes]
        with self._lock:
            self._scripts[recipient_key(recipient)].extend(parsed)

    def always(self, recipient: str, outcome: str) -> None:
        """The outcome of every send to the recipient (or ALL) once its script is used up."""
        parsed = Outcome.parse(outcome)
        with self._lock:
            self._standing[recipient_key(recipient)] = parsed

    def script_lookups(self, outcomes: list[str]) -> None:
        """Outcomes for the next lookups, of either API, one consumed per lookup: "ok",
        "400".."599", "timeout" or "reset"."""
        parsed = [Outcome.parse_lookup(text) for text in outcomes]
        with self._lock:
            self._lookup_script.extend(parsed)

    def always_lookups(self, outcome: str) -> None:
        """The outcome of every lookup once the lookup script is used up ("ok" to end it)."""
        parsed = Outcome.parse_lookup(outcome)
        with self._lock:
            self._lookup_standing = parsed

    def approve_content(self, content_sid: str, text: str) -> None:
        """Register approved WhatsApp content, its variables written {{1}}, {{2}}... (kept
        across reset(), as the account's content is)."""
        if not CONTENT_SID.fullmatch(content_sid):
            raise ValueError(f"{content_sid!r} is not a Content SID (HX and 32 hex digits)")
        with self._lock:
            self._contents[content_sid] = text

    def reset(self) -> None:
        """Forget what was sent, counted and scripted; latency goes back to its initial value,
        the clock to time.time. Callbacks still pending for earlier messages are dropped."""
        with self._lock:
            self.clock: Callable[[], float] = time.time  # dates what the fake accepts
            self._lookup_script: deque[Outcome] = deque()
            self._lookup_standing: Outcome | None = None
            self._lookups: Counter[str] = Counter()
            self._scripts: dict[str, deque[Outcome]] = defaultdict(deque)
            self._standing: dict[str, Outcome] = {}
            self._accepted: Counter[str] = Counter()
            self._attempts: Counter[str] = Counter()
            self._send_requests: Counter[str] = Counter()
            self._messages: list[Sent] = []
            self._callbacks: list[Callback] = []
            self._resources: dict[str, dict] = {}
            self._short_links: dict[str, str] = {}
            self._generation = getattr(self, "_generation", 0) + 1
            self.latency = self._initial_latency

    # --- What happened -------------------------------------------------------------------------

    @property
    def accepted(self) -> Counter[str]:
        """Recipient (phone number, or lowercased email address) -> messages accepted."""
        with self._lock:
            return Counter(self._accepted)

    @property
    def attempts(self) -> Counter[str]:
        """Recipient -> send requests received, whatever their outcome."""
        with self._lock:
            return Counter(self._attempts)

    @property
    def send_requests(self) -> Counter[str]:
        """Send endpoint ("twilio messages", "postmark email", "postmark email/batch") -> the
        requests it received that passed authentication."""
        with self._lock:
            return Counter(self._send_requests)

    @property
    def lookups(self) -> Counter[str]:
        """API ("sms", "email") -> lookups received that passed authentication and validation,
        whatever their outcome."""
        with self._lock:
            return Counter(self._lookups)

    @property
    def messages(self) -> list[Sent]:
        with self._lock:
            return list(self._messages)

    @property
    def short_links(self) -> dict[str, str]:
        """Short link -> the link it stands for, as Link Shortening made them."""
        with self._lock:
            return dict(self._short_links)

    @property
    def callbacks(self) -> list[Callback]:
        with self._lock:
            return list(self._callbacks)

    def wait_for_callbacks(self, count: int, timeout: float = 5.0) -> list[Callback]:
        """Block until at least `count` status callbacks were posted (TimeoutError if not)."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._callbacks) >= count, timeout):
                raise TimeoutError(f"{len(self._callbacks)} of {count} callbacks in {timeout}s")
            return list(self._callbacks)

    # --- Clients pointed at the fake --------------------------------------------------------

    def twilio_client(self, timeout: float = 5.0) -> Client:
        client = Client(
            self.account_sid, self.auth_token, http_client=TwilioHttpClient(timeout=timeout)
        )
        client.api.base_url = self.base_url
        client.edge = client.region = None  # TWILIO_EDGE/TWILIO_REGION would rewrite the host
        return client

    def django_settings(self, anymail: dict | None = None) -> dict:
        """Settings for override_settings(): anymail's Postmark backend and the project's
        TWILIO_* pointed here. ANYMAIL replaces the whole dict: pass the keys to keep."""
        return {
            "EMAIL_BACKEND": "anymail.backends.postmark.EmailBackend",
            "ANYMAIL": {
                **(anymail or {}),
                "POSTMARK_SERVER_TOKEN": self.postmark_token,
                "POSTMARK_API_URL": self.base_url + "/",
            },
            "TWILIO_ACCOUNT_SID": self.account_sid,
            "TWILIO_AUTH_TOKEN": self.auth_token,
            "TWILIO_API_BASE_URL": self.base_url,
        }

    def worker_environment(self, from_number: str) -> dict[str, str]:
        """The environment that points a worker process's anymail Postmark backend and twilio
        client here."""
        return worker_environment(self.django_settings(), from_number)

    # --- Sending, shared by both APIs --------------------------------------------------------

    def _next_outcome(self, recipient: str) -> Outcome:
        key = recipient_key(recipient)
        with self._lock:
            self._attempts[key] += 1
            for scripted in (self._scripts.get(key), self._scripts.get(ALL)):
                if scripted:
                    return scripted.popleft()
            return self._standing.get(key) or self._standing.get(ALL) or OK

    def _pause(self, seconds: float) -> None:
        if seconds > 0:
            self._stopping.wait(seconds)

    def _fault(self, handler: "_Handler", channel: str, outcomes: list[Outcome]) -> bool:
        """Wait out the latency; then answer for a whole request that fails. True if it did."""
        self._pause(self.latency)
        return any(self._refuse(handler, channel, outcome) for outcome in outcomes)

    def _refuse(self, handler: "_Handler", channel: str, outcome: Outcome) -> bool:
        """Reset the connection, or answer an HTTP error, if that is the outcome. True if so."""
        if outcome.kind == "reset":
            handler.hang_up()
            return True
        if outcome.kind == "http":
            status = outcome.status
            phrase = HTTPStatus(status).phrase
            if channel == "sms":
                handler.reply(
                    *twilio_error(status, 20003 if status == 401 else 20000 + status, phrase)
                )
            else:
                handler.reply(status, {"ErrorCode": status, "Message": phrase})
            return True
        return False

    def _next_lookup(self, channel: str) -> Outcome:
        with self._lock:
            self._lookups[channel] += 1
            if self._lookup_script:
                return self._lookup_script.popleft()
            return self._lookup_standing or OK

    def _answer(self, handler, outcomes, status, payload, then=None) -> None:
        """Reply; a "timeout" among the outcomes holds the reply, though `then` (the message's
        progress) goes ahead."""
        if any(outcome.kind == "timeout" for outcome in outcomes):
            if then:
                then()
            self._pause(self.hang_seconds)
            handler.reply(status, payload)
        else:
            handler.reply(status, payload)
            if then:
                then()

    def _record(self, sent: Sent) -> None:
        with self._lock:
            self._messages.append(sent)
            self._accepted.update(sent.recipients)

    # --- Twilio ---------------------------------------------------------------------------

    def _twilio_authorized(self, header: str) -> bool:
        scheme, _, encoded = header.partition(" ")
        try:
            credentials = base64.b64decode(encoded).decode()
        except ValueError:
            return False
        expected = f"{self.account_sid}:{self.auth_token}"
        return scheme.lower() == "basic" and secrets.compare_digest(credentials, expected)

    def _twilio_create(self, handler: "_Handler", account_sid: str, form: dict) -> None:
        to, body = form.get("To", ""), form.get("Body", "")
        service, sender = form.get("MessagingServiceSid", ""), form.get("From", "")
        if not self._twilio_authorized(handler.headers.get("Authorization", "")):
            return handler.reply(*twilio_error(401, 20003, "Authenticate"))
        if account_sid != self.account_sid:
            return handler.reply(*twilio_error(404, 20404, f"{handler.path} was not found"))
        with self._lock:
            self._send_requests["twilio messages"] += 1
        if not to:
            return handler.reply(*twilio_error(400, 21604, "A 'To' phone number is required."))
        if not (sender or service):
            return handler.reply(*twilio_error(400, 21603, "A 'From' phone number is required."))
        if service and not TWILIO_SERVICE_SID.fullmatch(service):
            message = f"The Messaging Service Sid {service} is invalid."
            return handler.reply(*twilio_error(400, TWILIO_SERVICE_INVALID, message))
        if service and service not in self.messaging_services:
            message = f"The Messaging Service Sid {service} does not exist."
            return handler.reply(*twilio_error(400, TWILIO_SERVICE_NOT_FOUND, message))
        shorten = form.get("ShortenUrls", "false").lower() == "true"
        if shorten and not service:
            message = "ShortenUrls needs a MessagingServiceSid."
            return handler.reply(*twilio_error(400, TWILIO_BAD_PARAMETER, message))
        if not (body or form.get("MediaUrl") or form.get("ContentSid")):
            return handler.reply(*twilio_error(400, 21602, "Message body is required."))
        if len(body) > 1600:
            message = "The concatenated message body exceeds the 1600 character limit."
            return handler.reply(*twilio_error(400, 21617, message))
        whatsapp = to.startswith(WHATSAPP)
        if sender and whatsapp != sender.startswith(WHATSAPP):
            message = "Invalid From and To pair. From and To should be of the same channel"
            return handler.reply(*twilio_error(400, 21910, message))
        content_sid, variables = form.get("ContentSid", ""), {}
        if content_sid or form.get("ContentVariables"):
            try:
                body, variables = self._fill_content(content_sid, form.get("ContentVariables"))
            except ContentError as error:
                return handler.reply(*twilio_error(400, error.code, str(error)))

        outcome = self._next_outcome(to)
        if self._fault(handler, "sms", [outcome]):
            return None
        if outcome.kind in REJECTIONS:
            code, message = TWILIO_REJECTIONS[outcome.kind]
            return handler.reply(*twilio_error(400, code, message.format(to=to)))
        if whatsapp and not content_sid and outcome.kind not in ("http", "reset"):
            outcome = Outcome("failed", code=OUTSIDE_WINDOW)  # free text: accepted, then fails

        if shorten and self.messaging_services[service]:
            body = self._shortened(body, self.messaging_services[service])
        sid, accepted = "SM" + uuid.uuid4().hex, self.clock()
        now = _rfc2822(int(accepted))
        uri = f"/{API_VERSION}/Accounts/{self.account_sid}/Messages/{sid}"
        resource = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": body,
            "date_created": now,
            "date_sent": None,
            "date_updated": now,
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            # A Messaging Service picks the sender, and counts the segments, after accepting.
            "num_segments": "0" if service else "1" if whatsapp else str(sms_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        sent = Sent(
            channel="whatsapp" if whatsapp else "sms",
            id=sid,
            recipient=to,
            body=body,
            recipients=[recipient_key(to)],
            sender=sender or service,
            status=resource["status"],
            data=form,
            accepted_at=datetime.fromtimestamp(accepted, UTC),
            content_sid=content_sid,
            content_variables=variables,
        )
        with self._lock:
            self._resources[sid] = dict(resource)  # what fetches see, as the status moves on
        self._record(sent)
        progress = partial(self._progress, sent, form.get("StatusCallback", ""), outcome)
        return self._answer(handler, [outcome], 201, resource, then=progress)

    def _shortened(self, body: str, domain: str) -> str:
        def short_link(link: re.Match) -> str:
            code = "".join(secrets.choice(SHORT_LINK_CODE) for _ in range(10))
            with self._lock:
                self._short_links[f"https://{domain}/{code}"] = link.group()
            return f"https://{domain}/{code}"

        return TWILIO_LINK.sub(short_link, body)

    def _fill_content(self, content_sid: str, variables_text: str | None) -> tuple[str, dict]:
        """The approved content's text with its variables filled in, and the variables; raises
        ContentError with Twilio's code for what Twilio refuses."""
        with self._lock:
            text = self._contents.get(content_sid)
        if not CONTENT_SID.fullmatch(content_sid) or text is None:
            raise ContentError(21655, "The ContentSid is Invalid")
        try:
            variables = json.loads(variables_text) if variables_text else {}
        except ValueError:
            variables = None
        if not isinstance(variables, dict) or not all(
            isinstance(value, str)
            and value.strip()
            and "\n" not in value
            and "\t" not in value
            and "     " not in value
            for value in variables.values()
        ):
            raise ContentError(21656, "The ContentVariables Parameter is invalid")
        body = CONTENT_VARIABLE.sub(
            lambda match: variables.get(match.group(1), match.group(0)), text
        )
        return body, variables

    def _twilio_list(self, handler: "_Handler", account_sid: str, query: str) -> None:
        """A page of the account's messages, newest first, as in the module's docstring."""
        if not self._twilio_authorized(handler.headers.get("Authorization", "")):
            return handler.reply(*twilio_error(401, 20003, "Authenticate"))
        if account_sid != self.account_sid:
            return handler.reply(*twilio_error(404, 20404, f"{handler.path} was not found"))
        params = {name: value for name, value in parse_qsl(query) if value}
        with self._lock:
            newest_first = [dict(resource) for resource in reversed(self._resources.values())]
        try:
            days = {
                name: twilio_filter_day(name, params[name])
                for name in TWILIO_DATE_FILTERS
                if name in params
            }
            size = whole_number(
                "PageSize", params.get("PageSize", str(TWILIO_PAGE_SIZE)), 1, TWILIO_MAX_PAGE_SIZE
            )
            page = whole_number("Page", params.get("Page", "0"), 0, 10**9)
            token = params.get("PageToken", "")
            position = next((i for i, r in enumerate(newest_first) if token[2:] == r["sid"]), None)
            if token and (token[:2] not in ("PA", "PB") or position is None):
                raise ValueError(f"PageToken {token!r} names no message of this list")
        except ValueError as error:
            return handler.reply(*twilio_error(400, TWILIO_BAD_PARAMETER, str(error)))

        outcome = self._next_lookup("sms")
        if self._refuse(handler, "sms", outcome):
            return None

        def matches(resource: dict) -> bool:
            return (
                params.get("To", resource["to"]) == resource["to"]
                and params.get("From", resource["from"]) == resource["from"]
                and all(
                    TWILIO_DATE_FILTERS[name](twilio_day(resource), day)
                    for name, day in days.items()
                )
            )

        if token.startswith("PB"):  # the page before this message
            candidates = [r for r in newest_first[:position] if matches(r)]
            records, more = candidates[-size:], True
        else:  # the page after this message, or the page by its number
            after = newest_first[position + 1 :] if token else newest_first
            candidates = [r for r in after if matches(r)]
            skip = 0 if token else page * size
            records, more = candidates[skip : skip + size], len(candidates) > skip + size

        listed = [
            (name, params[name]) for name in ("To", "From", *TWILIO_DATE_FILTERS) if name in params
        ]

        def uri(number: int, page_token: str = "") -> str:
            query = [*listed, ("PageSize", size), ("Page", number)]
            query += [("PageToken", page_token)] if page_token else []
            return f"/{API_VERSION}/Accounts/{self.account_sid}/Messages.json?{urlencode(query)}"

        start = page * size
        following = uri(page + 1, "PA" + records[-1]["sid"]) if more and records else None
        preceding = uri(page - 1, "PB" + records[0]["sid"]) if page and records else None
        payload = {
            "end": start + max(len(records) - 1, 0),
            "first_page_uri": uri(0),
            "messages": records,
            "next_page_uri": following,
            "page": page,
            "page_size": size,
            "previous_page_uri": preceding,
            "start": start,
            "uri": uri(page, token),
        }
        return self._answer(handler, [outcome], 200, payload)

    def _twilio_fetch(self, handler: "_Handler", account_sid: str, sid: str) -> None:
        if not self._twilio_authorized(handler.headers.get("Authorization", "")):
            return handler.reply(*twilio_error(401, 20003, "Authenticate"))
        with self._lock:
            resource = dict(self._resources.get(sid) or {})
        if account_sid != self.account_sid or not resource:
            return handler.reply(*twilio_error(404, 20404, f"{handler.path} was not found"))
        return handler.reply(200, resource)

    def _progress(self, sent: Sent, callback_url: str, outcome: Outcome) -> None:
        """Take an accepted SMS to its final status, posting a callback at each step. As with
        Twilio, no callback reports the initial status ("queued", or "accepted" for a
        Messaging Service, whose next step is "queued")."""
        final = outcome.kind if outcome.kind in DELIVERY else "delivered"
        statuses = ["queued"] if sent.data.get("MessagingServiceSid") else []
        if final == "read":
            statuses += ["sent", "delivered", "read"]
        else:
            statuses += (
                ["failed"]
                if final == "failed"
                else ["sent"]
                if final == "sent"
                else ["sent", final]
            )
        if not (callback_url and self.status_callbacks):
            self._set_status(sent, statuses[-1], outcome.code)
            return
        job = (sent, callback_url, statuses, outcome.code, self._generation)
        if not self._stopping.is_set():
            self._executor.submit(self._post_callbacks, *job)

    def _set_status(self, sent: Sent, status: str, error_code: int | None) -> None:
        with self._lock:
            sent.status = status
            resource = self._resources.get(sent.id, {})
            resource.update(status=status, date_updated=_rfc2822(int(self.clock())))
            if status in ("sent", "delivered", "read", "undelivered") and not resource.get(
                "date_sent"
            ):
                # Sent the moment it was accepted, by the clock of then: a callback thread late
                # under load must not date it by a clock a test has moved on since.
                resource["date_sent"] = resource["date_created"]
            if status in ("failed", "undelivered"):
                resource["error_code"] = error_code

    def _post_callbacks(self, sent, url, statuses, error_code, generation) -> None:
        try:
            for status in statuses:
                if self._stopping.wait(self.callback_delay) or generation != self._generation:
                    return
                self._set_status(sent, status, error_code)
                params = {
                    "ApiVersion": API_VERSION,
                    "AccountSid": self.account_sid,
                    "MessageSid": sent.id,
                    "SmsSid": sent.id,
                    "MessageStatus": status,
                    "SmsStatus": status,
                    "To": sent.recipient,
                    "From": sent.data.get("From") or SERVICE_SENDER,
                }
                if sent.data.get("MessagingServiceSid"):
                    params["MessagingServiceSid"] = sent.data["MessagingServiceSid"]
                if status in ("failed", "undelivered"):
                    params["ErrorCode"] = str(error_code)
                self._post_callback(url, params, generation)
        except Exception:
            traceback.print_exc()

    def _post_callback(self, url: str, params: dict[str, str], generation: int) -> None:
        signature = RequestValidator(self.auth_token).compute_signature(url, params)
        target = url
        if self.callback_base_url:
            parts = urlsplit(url)
            target = self.callback_base_url.rstrip("/") + parts.path
            target += f"?{parts.query}" if parts.query else ""
        request = Request(
            target,
            data=urlencode(params).encode(),
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "X-Twilio-Signature": signature,
                "I-Twilio-Idempotency-Token": str(uuid.uuid4()),
                "User-Agent": "TwilioProxy/1.1",
            },
        )
        callback = Callback(url, params, signature, None)
        try:
            with self._opener.open(request, timeout=self.callback_timeout) as response:
                callback.status = response.status
        except HTTPError as error:
            callback.status = error.code
        except OSError as error:
            callback.error = repr(error)
        with self._changed:
            if generation == self._generation:
                self._callbacks.append(callback)
                self._changed.notify_all()

    # --- Postmark ---------------------------------------------------------------------------

    def _postmark_authorized(self, handler: "_Handler") -> bool:
        token = handler.headers.get("X-Postmark-Server-Token", "")
        if secrets.compare_digest(token, self.postmark_token):
            return True
        message = "Request does not contain a valid Server token."
        handler.reply(401, {"ErrorCode": 10, "Message": message})
        return False

    def _postmark_search(self, handler: "_Handler", query: str) -> None:
        """Postmark's outbound message search, as in the module's docstring."""
        if not self._postmark_authorized(handler):
            return None
        params = dict(parse_qsl(query, keep_blank_values=True))
        try:
            count = whole_number("count", params.get("count", ""), 1, POSTMARK_MAX_COUNT)
            offset = whole_number("offset", params.get("offset", ""), 0, POSTMARK_MAX_WINDOW)
            if count + offset > POSTMARK_MAX_WINDOW:
                raise ValueError(f"count + offset must be at most {POSTMARK_MAX_WINDOW}")
            since, until = (
                postmark_bound(name, params[name], end_of_day=name == "todate")
                if params.get(name)
                else None
                for name in ("fromdate", "todate")
            )
        except ValueError as error:
            message = f"Messages query exception: {error}."
            return handler.reply(422, {"ErrorCode": POSTMARK_QUERY_ERROR, "Message": message})

        outcome = self._next_lookup("email")
        if self._refuse(handler, "email", outcome):
            return None
        found = []
        for sent in reversed(self.messages):
            summary = postmark_summary(sent) if sent.channel == "email" else None
            if (
                summary
                and postmark_matches(params, sent, summary)
                and (since is None or sent.accepted_at >= since)
                and (until is None or sent.accepted_at <= until)
            ):
                found.append(summary)
        payload = {"TotalCount": len(found), "Messages": found[offset : offset + count]}
        return self._answer(handler, [outcome], 200, payload)

    def _postmark_send(self, handler: "_Handler", raw: bytes, batch: bool) -> None:
        if not self._postmark_authorized(handler):
            return None
        try:
            data = json.loads(raw)
        except ValueError:
            return handler.reply(422, {"ErrorCode": 402, "Message": "Received invalid JSON input."})
        messages = data if batch else [data]
        with self._lock:
            self._send_requests["postmark email/batch" if batch else "postmark email"] += 1

        plans = []  # per message: [(address, outcome)]
        for message in messages:
            fields = [message.get(name) or "" for name in ("To", "Cc", "Bcc")]
            addresses = [recipient_key(address) for _, address in getaddresses(fields) if address]
            plans.append([(address, self._next_outcome(address)) for address in addresses])
        outcomes = [outcome for plan in plans for _, outcome in plan]
        if self._fault(handler, "email", outcomes):
            return None
        results = [self._postmark_result(m, plan) for m, plan in zip(messages, plans, strict=True)]
        if batch:
            return self._answer(handler, outcomes, 200, results)
        status = 200 if results[0]["ErrorCode"] == 0 else 422
        return self._answer(handler, outcomes, status, results[0])

    def _postmark_result(self, message: dict, plan: list[tuple[str, Outcome]]) -> dict:
        if not plan:
            return {"ErrorCode": 300, "Message": "Zero recipients specified"}
        if not message.get("From"):
            return {"ErrorCode": 300, "Message": "Invalid 'From' address: ''."}
        invalid = [address for address, o in plan if o.kind in ("invalid", "not_mobile")]
        if invalid:
            return {"ErrorCode": 300, "Message": f"Invalid 'To' address: '{invalid[0]}'."}
        inactive = [address for address, o in plan if o.kind in ("unsubscribed", "inactive")]
        if len(inactive) == len(plan):
            message_text = POSTMARK_INACTIVE.format(addresses=", ".join(inactive))
            return {"ErrorCode": 406, "Message": message_text}

        message_id, accepted_at = str(uuid.uuid4()), datetime.fromtimestamp(self.clock(), UTC)
        accepted = [address for address, _ in plan if address not in inactive]
        headers = {header["Name"]: header["Value"] for header in message.get("Headers") or []}
        self._record(
            Sent(
                channel="email",
                id=message_id,
                recipient=accepted[0],
                body=message.get("TextBody", ""),
                recipients=accepted,
                sender=message.get("From", ""),
                subject=message.get("Subject", ""),
                html=message.get("HtmlBody", ""),
                headers=headers,
                metadata=message.get("Metadata") or {},
                tag=message.get("Tag", ""),
                status="sent",
                data=message,
                accepted_at=accepted_at,
            )
        )
        result = {
            "To": message.get("To", ""),
            "SubmittedAt": accepted_at.isoformat(),
            "MessageID": message_id,
            "ErrorCode": 0,
            "Message": "OK",
        }
        if inactive:
            result["Message"] = POSTMARK_PARTLY_INACTIVE.format(addresses=", ".join(inactive))
        return result


@lru_cache(maxsize=2)
def _http_date(second: int) -> str:
    return formatdate(second, usegmt=True)  # as BaseHTTPRequestHandler.date_time_string


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # benchmarks open many connections at once

    def __init__(self, provider: FakeProvider, port: int = 0):
        self.provider = provider
        super().__init__(("127.0.0.1", port), _Handler)

    def handle_error(self, request, client_address) -> None:
        """A client that went away mid-request (killed, or it gave up) is none of the fake's
        errors."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDKs' sessions expect
    disable_nagle_algorithm = True  # else a reused connection waits 40 ms on delayed ACKs
    server: _Server

    def log_message(self, format, *args) -> None:
        pass

    def date_time_string(self, timestamp=None) -> str:
        """The Date header, formatted once a second."""
        if timestamp is not None:
            return super().date_time_string(timestamp)
        return _http_date(int(time.time()))

    def do_GET(self) -> None:
        self._route("GET", b"")

    def do_POST(self) -> None:
        self._route("POST", self.rfile.read(int(self.headers.get("Content-Length") or 0)))

    def _route(self, method: str, body: bytes) -> None:
        provider = self.server.provider
        url = urlsplit(self.path)
        parts, query = url.path.strip("/").split("/"), url.query
        try:
            match method, parts:
                case "POST", [version, "Accounts", sid, "Messages.json"] if version == API_VERSION:
                    form = dict(parse_qsl(body.decode(), keep_blank_values=True))
                    provider._twilio_create(self, sid, form)
                case "GET", [version, "Accounts", sid, "Messages.json"] if version == API_VERSION:
                    provider._twilio_list(self, sid, query)
                case "GET", [version, "Accounts", sid, "Messages", name] if version == API_VERSION:
                    provider._twilio_fetch(self, sid, name.removesuffix(".json"))
                case "GET", ["messages", "outbound"]:
                    provider._postmark_search(self, query)
                case "POST", ["email"]:
                    provider._postmark_send(self, body, batch=False)
                case "POST", ["email", "batch"]:
                    provider._postmark_send(self, body, batch=True)
                case _:
                    self.reply(*twilio_error(404, 20404, f"{self.path} was not found"))
        except Exception as error:
            traceback.print_exc()
            self.reply(500, {"message": f"the fake provider failed: {error!r}"})

    def reply(self, status: int, payload) -> None:
        body = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:  # the client gave up waiting
            self.close_connection = True

    def hang_up(self) -> None:
        """Close the connection with a TCP reset, without answering."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.rfile.close()
        self.connection.close()
        self.close_connection = True


def worker_environment(provider_settings: dict, from_number: str) -> dict[str, str]:
    """A fake's django_settings() as a worker process's environment, SMS from `from_number`."""
    return {
        "EMAIL_BACKEND": provider_settings["EMAIL_BACKEND"],
        "POSTMARK_SERVER_TOKEN": provider_settings["ANYMAIL"]["POSTMARK_SERVER_TOKEN"],
        "POSTMARK_API_URL": provider_settings["ANYMAIL"]["POSTMARK_API_URL"],
        "SMS_BACKEND": "twilio",
        "TWILIO_ACCOUNT_SID": provider_settings["TWILIO_ACCOUNT_SID"],
        "TWILIO_AUTH_TOKEN": provider_settings["TWILIO_AUTH_TOKEN"],
        "TWILIO_API_BASE_URL": provider_settings["TWILIO_API_BASE_URL"],
        "TWILIO_FROM_NUMBER": from_number,
        "TWILIO_MESSAGING_SERVICE_SID": "",
    }
