from dataclasses import dataclass, field
from datetime import datetime

import requests
import urllib3


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
    # WhatsApp: the approved content sent ("" when the template has none for the customer's
    # language), and its variables, {"1": "...", ...}. `body` is then its words, for previews.
    content_sid: str = ""
    content_variables: dict = field(default_factory=dict)
    # A digest's: the message carries several reminders, and names this instead of one.
    digest_id: int | None = None


class SendError(Exception):
    """The provider did not accept the message; the text says why, for a person, and `code`
    is the provider's own error code, when it gave one."""

    def __init__(self, reason: str, *, code: str = ""):
        super().__init__(reason)
        self.code = code


class TransientSendError(SendError):
    """Worth trying again later: a timeout, a connection error, a 5xx or a rate limit.
    `maybe_sent`: the request went out and no answer came back (a read timeout, a connection
    reset), so the provider may have accepted it: it is not sent again before the provider
    has been asked (notifications.recovery)."""

    def __init__(self, reason: str, *, code: str = "", maybe_sent: bool = False):
        super().__init__(reason, code=code)
        self.maybe_sent = maybe_sent


@dataclass(frozen=True)
class FoundMessage:
    """A message a provider says it accepted, found by a channel's `find_sent`."""

    provider_message_id: str
    accepted_at: datetime | None = None


def may_have_reached_provider(error: BaseException) -> bool:
    """Whether a request that failed without an answer may still have reached the provider:
    always, unless the connection itself could not be made."""
    seen, causes = set(), [error]
    while causes:
        cause = causes.pop()
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        # urllib3's NewConnectionError is a ConnectTimeoutError: refused, unresolvable, timed out.
        if isinstance(cause, urllib3.exceptions.ConnectTimeoutError | requests.ConnectTimeout):
            return False
        if isinstance(cause, ConnectionRefusedError):
            return False
        linked = [cause.__cause__, getattr(cause, "reason", None), *cause.args]
        causes += [link for link in linked if isinstance(link, BaseException)]
    return True


class NotTried(Exception):
    """The message never went to the provider (the rate limit could not be counted, the
    worker's lease could not be kept): it goes again soon, costing neither a try, nor the
    retry budget, nor the provider's circuit breaker anything."""


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
