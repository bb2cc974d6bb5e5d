import re
import smtplib
import threading
from datetime import datetime
from email.utils import make_msgid
from typing import NoReturn
from urllib.parse import urljoin

import requests
from anymail.backends.postmark import EmailBackend as PostmarkBackend
from anymail.exceptions import (
    AnymailAPIError,
    AnymailRecipientsRefused,
    AnymailRequestsAPIError,
)
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils.module_loading import import_string

from notifications.channels.base import (
    FoundMessage,
    OutgoingMessage,
    PermanentSendError,
    SendError,
    TransientSendError,
    may_have_reached_provider,
    read_environment_once,
)

NOTIFICATION_HEADER = "X-Renewly-Notification"
DIGEST_HEADER = "X-Renewly-Digest"
# Postmark's batch endpoint takes at most this many messages (and 50 MB) a call.
POSTMARK_BATCH_LIMIT = 500
# Postmark's error codes that refuse a recipient (as anymail reads them for a single send): an
# inactive one (bounced, complained), or an invalid address among the request's errors (300).
POSTMARK_INACTIVE_RECIPIENT = 406
POSTMARK_INVALID_REQUEST = 300
POSTMARK_INVALID_RECIPIENT = re.compile(r"^(Invalid|Error\s+parsing)\s+'(To|Cc|Bcc)'", re.I)


def email_provider() -> str:
    """The email backend's module: anymail's "postmark", Django's "smtp", our "outbox"."""
    return settings.EMAIL_BACKEND.rsplit(".", 2)[-2]


def email_backend_looks_up() -> bool:
    """Whether the email backend can say if it accepted a message (see EmailChannel.find_sent):
    Postmark, by its outbound message search, and the local outbox; not SMTP, nor ESPs
    without a search by metadata."""
    backend = import_string(settings.EMAIL_BACKEND)
    return issubclass(backend, PostmarkBackend) or hasattr(backend, "find_by_metadata")


def find_emails(connection, metadata_key: str, value: object) -> list[FoundMessage]:
    """The emails an email backend that can be asked (email_backend_looks_up) accepted with
    this metadata value: Postmark's by its search, the outbox's by its files."""
    if isinstance(connection, PostmarkBackend):
        return find_in_postmark(connection, metadata_key, value)
    return connection.find_by_metadata(metadata_key, value)


# An HTTP ESP's backend per thread, kept across batches: its requests session reconnects by
# itself when the provider closes an idle connection, and opening one per batch and thread
# cost the worker (and the provider) a new connection every few emails. Other backends (SMTP,
# whose server drops idle sessions) stay one per channel, closed with it.
_kept = threading.local()
_settings_version = 0


@receiver(setting_changed)
def _forget_kept_connections(*, setting: str, **kwargs) -> None:
    global _settings_version
    if setting == "EMAIL_BACKEND" or setting.startswith(("ANYMAIL", "EMAIL_")):
        _settings_version += 1  # each thread opens a new backend on its next send


class EmailChannel:
    """Sends through Django's email API, so EMAIL_BACKEND alone picks the provider: the local
    outbox, SMTP, or any ESP anymail supports. Each thread sending through one channel keeps
    its own backend connection until `close()` (an HTTP ESP's for as long as the thread
    lives): anymail then sends over one kept-alive HTTP session per thread instead of
    opening one per email."""

    def __init__(self):
        self._local = threading.local()
        self._opened = []
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            opened, self._opened = self._opened, []
        for connection in opened:
            connection.close()

    def _connection(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = _kept_connection() or self._open()
            self._local.connection = connection
        return connection

    def _open(self):
        connection = get_connection()
        connection.open()
        session = getattr(connection, "session", None)  # anymail's HTTP backends have one
        if session is None:
            with self._lock:
                self._opened.append(connection)
            return connection
        read_environment_once(session, connection.api_url)
        _forget_kept_connection()
        _kept.connection, _kept.version = connection, _settings_version
        return connection

    def send(self, message: OutgoingMessage) -> str:
        email, message_id = self._email(message)
        try:
            email.connection = self._connection()
            email.send()
        except Exception as error:
            _raise_classified(error)
        status = getattr(email, "anymail_status", None)  # set by anymail backends only
        return (status and status.message_id) or message_id

    @property
    def batch_limit(self) -> int:
        """The most messages one `send_batch` takes; 0 when the backend sends one at a time."""
        backend = import_string(settings.EMAIL_BACKEND)
        return POSTMARK_BATCH_LIMIT if issubclass(backend, PostmarkBackend) else 0

    def send_batch(self, messages: list[OutgoingMessage]) -> list[str | Exception]:
        """Send through Postmark's batch endpoint, in one request: each message's own answer,
        Postmark's message id or the error it failed with (a message whose payload cannot be
        built fails alone, and does not go). A request that fails as a whole raises the
        SendError it means for all of them (maybe_sent when it may have reached Postmark:
        recovery then looks each message up by its notification's id)."""
        connection = self._connection()
        answers: list[str | Exception | None] = [None] * len(messages)
        payloads, going = [], []
        for index, message in enumerate(messages):
            try:
                email = self._email(message)[0]
                payloads.append(connection.build_message_payload(email, connection.send_defaults))
            except Exception as error:  # this message's own fault: the others still go
                answers[index] = classify_email_error(error) or error
            else:
                going.append(index)
        if not payloads:
            return answers
        try:
            # anymail's own post: its session, token, timeout, and errors as for one email.
            response = connection.post_to_esp(_PostmarkBatch(payloads), None)
            if response.status_code != 200:  # anymail leaves a 422 to its per-message parsing
                raise AnymailRequestsAPIError(response=response, backend=connection)
        except Exception as error:
            _raise_classified(error)
        try:
            results = [_postmark_answer(result) for result in response.json()]
        except (ValueError, KeyError, TypeError, AttributeError):
            results = None
        if results is None or len(results) != len(payloads):  # accepted, perhaps: ask first
            raise TransientSendError(
                f"Postmark's batch answer unreadable: {response.text[:200]!r}", maybe_sent=True
            )
        for index, result in zip(going, results, strict=True):
            answers[index] = result
        return answers

    def _email(self, message: OutgoingMessage) -> tuple[EmailMultiAlternatives, str]:
        """The email a message goes as, and the Message-ID it carries."""
        if message.digest_id:
            named = {DIGEST_HEADER: str(message.digest_id)}
            idstring = f"digest-{message.digest_id}"
        else:
            named = {NOTIFICATION_HEADER: str(message.notification_id)}
            idstring = f"notification-{message.notification_id}"
        message_id = make_msgid(idstring=idstring, domain="renewly")
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.to],
            headers={
                **message.headers,
                **named,
                "Message-ID": message_id,
            },
        )
        if message.html_body:
            email.attach_alternative(message.html_body, "text/html")
        # anymail hands these to the ESP, whose tracking events bring them back.
        email.metadata = message.metadata
        email.tags = ["renewal-reminder"]
        return email, message_id

    @property
    def can_look_up(self) -> bool:
        return email_backend_looks_up()

    def find_sent(self, message: OutgoingMessage, *, since: datetime) -> list[FoundMessage]:
        """The emails the backend accepted for this notification (any attempt's: the caller
        tells them apart by time and id). Raises TransientSendError when the provider cannot
        answer now. Every email carries its notification's id as metadata, which is what
        Postmark's search filters by; a digest's carries its digest's id instead."""
        if message.digest_id:
            return find_emails(self._connection(), "digest_id", message.digest_id)
        return find_emails(self._connection(), "notification_id", message.notification_id)


class _PostmarkBatch:
    """Several emails' anymail payloads as one request to Postmark's batch endpoint, in the
    shape anymail's post_to_esp sends a payload: the same headers and token. (anymail's
    pre_send and post_send signals, which Renewly does not use, are not sent.)"""

    def __init__(self, payloads: list):
        self.payloads = payloads

    def get_request_params(self, api_url: str) -> dict:
        first = self.payloads[0]
        return {
            **first.get_request_params(api_url),
            "url": urljoin(api_url, "email/batch"),
            "data": first.serialize_json([payload.data for payload in self.payloads]),
        }


def _postmark_answer(result: dict) -> str | SendError:
    """One message's answer in Postmark's batch response: its message id, or why not."""
    code, text = result.get("ErrorCode", 0), result.get("Message", "")
    if code == 0:
        return result["MessageID"]
    if code == POSTMARK_INACTIVE_RECIPIENT or (
        code == POSTMARK_INVALID_REQUEST and POSTMARK_INVALID_RECIPIENT.match(text)
    ):
        return PermanentSendError(f"recipient refused: {text}")
    return PermanentSendError(f"email provider refused the message: Postmark error {code}: {text}")


def find_in_postmark(
    connection: PostmarkBackend, metadata_key: str, value: object
) -> list[FoundMessage]:
    """Postmark's outbound message search, filtered by one metadata value (one notification's
    or report's), newest first, through the backend's own session and credentials."""
    try:
        response = connection.session.get(
            f"{connection.api_url}messages/outbound",
            params={"count": 50, "offset": 0, f"metadata_{metadata_key}": str(value)},
            headers={
                "Accept": "application/json",
                "X-Postmark-Server-Token": connection.server_token,
            },
            timeout=connection.timeout,
        )
    except requests.RequestException as error:
        raise TransientSendError(f"Postmark's message search unreachable: {error}") from error
    if response.status_code != 200:
        raise TransientSendError(
            f"Postmark's message search answered {response.status_code}: {response.text[:200]}"
        )
    try:
        messages = response.json()["Messages"]
    except (ValueError, KeyError, TypeError) as error:
        raise TransientSendError(f"Postmark's message search answered {error!r}") from error
    return [
        FoundMessage(message["MessageID"], _parse_time(message.get("ReceivedAt", "")))
        for message in messages
    ]


def _parse_time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _raise_classified(error: Exception) -> NoReturn:
    """Raise the SendError an email backend's exception means, or the exception itself."""
    send_error = classify_email_error(error)
    if send_error is None:
        raise error
    raise send_error from error


def classify_email_error(error: Exception) -> SendError | None:
    """The send error an email backend's exception means: permanent when the recipient or the
    message is refused, transient when trying again later may succeed; None for anything else
    (a bug, a misconfiguration), which must surface as it is."""
    if isinstance(error, AnymailRecipientsRefused | smtplib.SMTPRecipientsRefused):
        return PermanentSendError(f"recipient refused: {error}")
    if isinstance(error, AnymailAPIError):
        status = error.status_code
        if status is None:  # no answer: the request may still have been received
            return TransientSendError(
                f"email provider unavailable: {error}", maybe_sent=may_have_reached_provider(error)
            )
        if status == 429 or status >= 500:
            return TransientSendError(f"email provider unavailable: {error}")
        return PermanentSendError(f"email provider refused the message: {error}")
    if isinstance(error, smtplib.SMTPResponseException):
        kind = PermanentSendError if error.smtp_code >= 500 else TransientSendError
        return kind(f"mail server answered {error.smtp_code}: {error.smtp_error!r}")
    if isinstance(error, smtplib.SMTPException | OSError):  # refused, reset, timed out
        return TransientSendError(
            f"mail server unreachable: {error}", maybe_sent=may_have_reached_provider(error)
        )
    return None


def _kept_connection():
    """This thread's HTTP ESP backend, unless the settings changed since it was opened."""
    if getattr(_kept, "version", None) != _settings_version:
        _forget_kept_connection()
        return None
    return _kept.connection


def _forget_kept_connection() -> None:
    connection = getattr(_kept, "connection", None)
    _kept.connection = _kept.version = None
    if connection is not None:
        connection.close()
