import smtplib
import threading
from datetime import datetime
from email.utils import make_msgid

import requests
from anymail.backends.postmark import EmailBackend as PostmarkBackend
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
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
        try:
            email.connection = self._connection()
            email.send()
        except Exception as error:
            send_error = classify_email_error(error)
            if send_error is None:
                raise
            raise send_error from error
        status = getattr(email, "anymail_status", None)  # set by anymail backends only
        return (status and status.message_id) or message_id

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
