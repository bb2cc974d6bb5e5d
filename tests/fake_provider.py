"""A stand-in for Twilio's Messages API and Postmark's send API, on 127.0.0.1, so that tests and
benchmarks drive the real twilio SDK and the real anymail Postmark backend over HTTP.

    with FakeProvider() as fake:
        client = fake.twilio_client()                  # or: client.api.base_url = fake.base_url
        fake.script("+14155550100", ["500", "ok"])     # this number's next two sends
        fake.always("gone@mail.example", "inactive")   # every send to this address
        ...
        assert fake.accepted["+14155550100"] == 1

Outcomes, drawn one per send and recipient (a script first, then the standing outcome, then "ok";
the recipient's own before those for ALL):

    "ok"                 accepted; an SMS is then delivered ("delivered" is the same)
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

Only the standard library serves; twilio's own RequestValidator signs the status callbacks.
"""

import base64
import json
import secrets
import socket
import struct
import threading
import time
import traceback
import uuid
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime, formatdate, getaddresses
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
API_VERSION = "2010-04-01"

REJECTIONS = {"invalid", "not_mobile", "unsubscribed", "inactive"}
DELIVERY = {"delivered", "sent", "undelivered", "failed"}
KINDS = {"ok", "timeout", "reset"} | REJECTIONS | DELIVERY
DEFAULT_ERROR_CODES = {"undelivered": 30003, "failed": 30008}
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
GSM_7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_7_EXTENDED = set("^{}\\[~]|€\f")


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


OK = Outcome("delivered")


@dataclass
class Sent:
    """A message the fake accepted. `status` follows an SMS through its callbacks."""

    channel: str  # "sms" or "email"
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


def now_rfc2822() -> str:
    return _rfc2822(int(time.time()))  # "Thu, 24 Aug 2023 05:01:45 +0000", as Twilio


@lru_cache(maxsize=2)
def _rfc2822(second: int) -> str:
    """Formatted once a second: every message of a second shares it (the fake's own CPU counts
    against the machine's in the benchmarks)."""
    return format_datetime(datetime.fromtimestamp(second, UTC))


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
        "timeout" holds its answer (stop() cuts it short). `status_callbacks`: post SMS status
        callbacks, `callback_delay` seconds apart. `callback_base_url`: post them there instead
        of to the StatusCallback URL's own host, keeping its path and query, while the signature
        still covers the URL as given (as behind a proxy)."""
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.postmark_token = postmark_token
        self.latency = self._initial_latency = latency
        self.hang_seconds = hang_seconds
        self.status_callbacks = status_callbacks
        self.callback_delay = callback_delay
        self.callback_base_url = callback_base_url
        self.callback_timeout = 5.0
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._opener = build_opener(ProxyHandler({}))  # callbacks never go through a proxy
        self.reset()

    # --- Life cycle ------------------------------------------------------------------------

    def start(self) -> "FakeProvider":
        self._stopping.clear()
        self._server = _Server(self)
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

    def reset(self) -> None:
        """Forget what was sent, counted and scripted; latency goes back to its initial value.
        Callbacks still pending for earlier messages are dropped."""
        with self._lock:
            self._scripts: dict[str, deque[Outcome]] = defaultdict(deque)
            self._standing: dict[str, Outcome] = {}
            self._accepted: Counter[str] = Counter()
            self._attempts: Counter[str] = Counter()
            self._messages: list[Sent] = []
            self._callbacks: list[Callback] = []
            self._resources: dict[str, dict] = {}
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
    def messages(self) -> list[Sent]:
        with self._lock:
            return list(self._messages)

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
        for outcome in outcomes:
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
        if not to:
            return handler.reply(*twilio_error(400, 21604, "A 'To' phone number is required."))
        if not (sender or service):
            return handler.reply(*twilio_error(400, 21603, "A 'From' phone number is required."))
        if not (body or form.get("MediaUrl") or form.get("ContentSid")):
            return handler.reply(*twilio_error(400, 21602, "Message body is required."))
        if len(body) > 1600:
            message = "The concatenated message body exceeds the 1600 character limit."
            return handler.reply(*twilio_error(400, 21617, message))

        outcome = self._next_outcome(to)
        if self._fault(handler, "sms", [outcome]):
            return None
        if outcome.kind in REJECTIONS:
            code, message = TWILIO_REJECTIONS[outcome.kind]
            return handler.reply(*twilio_error(400, code, message.format(to=to)))

        sid, now = "SM" + uuid.uuid4().hex, now_rfc2822()
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
            "num_segments": "0" if service else str(sms_segments(body)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {"media": f"{uri}/Media.json", "feedback": f"{uri}/Feedback.json"},
            "to": to,
            "uri": f"{uri}.json",
        }
        sent = Sent(
            channel="sms",
            id=sid,
            recipient=to,
            body=body,
            recipients=[recipient_key(to)],
            sender=sender or service,
            status=resource["status"],
            data=form,
        )
        with self._lock:
            self._resources[sid] = dict(resource)  # what fetches see, as the status moves on
        self._record(sent)
        progress = partial(self._progress, sent, form.get("StatusCallback", ""), outcome)
        return self._answer(handler, [outcome], 201, resource, then=progress)

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
        statuses += (
            ["failed"] if final == "failed" else ["sent"] if final == "sent" else ["sent", final]
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
            resource.update(status=status, date_updated=now_rfc2822())
            if status == "sent":
                resource["date_sent"] = resource["date_updated"]
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

    def _postmark_send(self, handler: "_Handler", raw: bytes, batch: bool) -> None:
        token = handler.headers.get("X-Postmark-Server-Token", "")
        if not secrets.compare_digest(token, self.postmark_token):
            message = "Request does not contain a valid Server token."
            return handler.reply(401, {"ErrorCode": 10, "Message": message})
        try:
            data = json.loads(raw)
        except ValueError:
            return handler.reply(422, {"ErrorCode": 402, "Message": "Received invalid JSON input."})
        messages = data if batch else [data]

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

        message_id = str(uuid.uuid4())
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
            )
        )
        result = {
            "To": message.get("To", ""),
            "SubmittedAt": datetime.now(UTC).isoformat(),
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

    def __init__(self, provider: FakeProvider):
        self.provider = provider
        super().__init__(("127.0.0.1", 0), _Handler)


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
        parts = urlsplit(self.path).path.strip("/").split("/")
        try:
            match method, parts:
                case "POST", [version, "Accounts", sid, "Messages.json"] if version == API_VERSION:
                    form = dict(parse_qsl(body.decode(), keep_blank_values=True))
                    provider._twilio_create(self, sid, form)
                case "GET", [version, "Accounts", sid, "Messages", name] if version == API_VERSION:
                    provider._twilio_fetch(self, sid, name.removesuffix(".json"))
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
