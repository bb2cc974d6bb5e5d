from dataclasses import dataclass, field

import requests


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


def read_environment_once(session: requests.Session, url: str) -> None:
    """Settle a provider session's proxies and CA bundle from the environment now, for the one
    host it talks to: requests otherwise looks them up again on every request, which costs a
    third of a millisecond, a tenth of the CPU a send takes."""
    environment = session.merge_environment_settings(url, {}, None, None, None)
    session.proxies.update(environment["proxies"])
    session.verify = environment["verify"]
    session.trust_env = False
