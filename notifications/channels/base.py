from dataclasses import dataclass, field


@dataclass(frozen=True)
class OutgoingMessage:
    """One rendered reminder, ready for a channel."""

    notification_id: int
    to: str
    body: str
    subject: str = ""
    html_body: str = ""
    metadata: dict = field(default_factory=dict)


class SendError(Exception):
    """The provider did not accept the message; the text says why, for a person."""


class TransientSendError(SendError):
    """Worth trying again later: a timeout, a connection error, a 5xx or a rate limit."""


class PermanentSendError(SendError):
    """Trying again will not help: an invalid address or number, a rejected recipient."""
