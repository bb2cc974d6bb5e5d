import smtplib
import threading
from email.utils import make_msgid

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from notifications.channels.base import (
    OutgoingMessage,
    PermanentSendError,
    SendError,
    TransientSendError,
    read_environment_once,
)

NOTIFICATION_HEADER = "X-Renewly-Notification"


class EmailChannel:
    """Sends through Django's email API, so EMAIL_BACKEND alone picks the provider: the local
    outbox, SMTP, or any ESP anymail supports. Each thread sending through one channel keeps
    its own backend connection until `close()`: anymail then sends a whole batch over one
    kept-alive HTTP session per thread instead of opening one per email."""

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
            connection = get_connection()
            connection.open()
            session = getattr(connection, "session", None)  # anymail's HTTP backends have one
            if session is not None:
                read_environment_once(session, connection.api_url)
            self._local.connection = connection
            with self._lock:
                self._opened.append(connection)
        return connection

    def send(self, message: OutgoingMessage) -> str:
        message_id = make_msgid(
            idstring=f"notification-{message.notification_id}", domain="renewly"
        )
        email = EmailMultiAlternatives(
            subject=message.subject,
            body=message.body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[message.to],
            headers={
                **message.headers,
                NOTIFICATION_HEADER: str(message.notification_id),
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


def classify_email_error(error: Exception) -> SendError | None:
    """The send error an email backend's exception means: permanent when the recipient or the
    message is refused, transient when trying again later may succeed; None for anything else
    (a bug, a misconfiguration), which must surface as it is."""
    if isinstance(error, AnymailRecipientsRefused | smtplib.SMTPRecipientsRefused):
        return PermanentSendError(f"recipient refused: {error}")
    if isinstance(error, AnymailAPIError):
        status = error.status_code
        if status is None or status == 429 or status >= 500:
            return TransientSendError(f"email provider unavailable: {error}")
        return PermanentSendError(f"email provider refused the message: {error}")
    if isinstance(error, smtplib.SMTPResponseException):
        kind = PermanentSendError if error.smtp_code >= 500 else TransientSendError
        return kind(f"mail server answered {error.smtp_code}: {error.smtp_error!r}")
    if isinstance(error, smtplib.SMTPException | OSError):  # refused, reset, timed out
        return TransientSendError(f"mail server unreachable: {error}")
    return None
