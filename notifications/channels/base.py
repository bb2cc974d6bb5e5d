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
    headers: dict = field(default_factory=dict)


class SendError(Exception):
    """The provider did not accept the message; the text says why, for a person, and `code`
    is the provider's own error code, when it gave one."""

    def __init__(self, reason: str, *, code: str = ""):
        super().__init__(reason)
        self.code = code


class TransientSendError(SendError):
    """Worth trying again later: a timeout, a connection error, a 5xx or a rate limit."""


class PermanentSendError(SendError):
    """Trying again will not help: an invalid address or number, a rejected recipient."""
