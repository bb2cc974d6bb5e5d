"""Channels: each knows how to send one message through its provider (and, where the provider
has a batch API, several in one request: `batch_limit`, `send_batch`). What happens around a
send (claiming, retrying, recording) is written once, in dispatch."""

import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis
from django.conf import settings
from django.utils.module_loading import import_string

from notifications import rate_limit
from notifications.channels.base import (
    FoundMessage,
    NotTried,
    OutgoingMessage,
    PermanentSendError,
    SendError,
    TransientSendError,
)
from notifications.channels.email import EmailChannel, email_provider
from notifications.models import Channel
from notifications.signals import send_attempted, tell

SMS_BACKENDS = {
    "outbox": "notifications.channels.outbox.OutboxSmsChannel",
    "twilio": "notifications.channels.sms.TwilioSmsChannel",
}
WHATSAPP_BACKENDS = {
    "outbox": "notifications.channels.outbox.OutboxWhatsAppChannel",
    "twilio": "notifications.channels.whatsapp.TwilioWhatsAppChannel",
}
# Each phone channel's backends, and the setting that chooses one.
PHONE_BACKENDS = {
    Channel.SMS: ("SMS_BACKEND", SMS_BACKENDS),
    Channel.WHATSAPP: ("WHATSAPP_BACKEND", WHATSAPP_BACKENDS),
}

__all__ = [
    "FoundMessage",
    "NotTried",
    "OutgoingMessage",
    "PermanentSendError",
    "SendError",
    "TransientSendError",
    "channel_for",
    "provider_of",
    "sending_through",
]


def channel_for(channel: str):
    """The sender for a channel, as the settings configure it, held to the channel's rate
    limit, each send timed and told (for /metrics)."""
    return RateLimitedSender(_measured_sender(channel), channel=channel)


def provider_of(channel: str) -> str:
    """The provider a channel sends through, as the settings configure it: for email the
    backend's module (email_provider), for SMS the SMS_BACKEND, for WhatsApp the
    WHATSAPP_BACKEND."""
    if channel == Channel.EMAIL:
        return email_provider()
    return getattr(settings, PHONE_BACKENDS[channel][0])


def _measured_sender(channel: str):
    if channel == Channel.EMAIL:
        return MeasuredSender(
            EmailChannel(), channel=Channel.EMAIL.value, provider=provider_of(channel)
        )
    setting, backends = PHONE_BACKENDS[channel]
    try:
        path = backends[getattr(settings, setting)]
    except KeyError:
        raise ValueError(
            f"{setting}={getattr(settings, setting)!r} is not one of {', '.join(backends)}"
        ) from None
    return MeasuredSender(import_string(path)(), channel=channel, provider=provider_of(channel))


class MeasuredSender:
    """A channel's sender whose every send is timed and told (the send_attempted signal, which
    ops counts for /metrics); anything else it offers (close(), say) is the sender's own."""

    def __init__(self, sender, *, channel: str, provider: str):
        self._sender, self.channel, self.provider = sender, channel, provider

    def __getattr__(self, name):
        return getattr(self._sender, name)

    def send(self, message):
        started, error = time.perf_counter(), None
        try:
            return self._sender.send(message)
        except BaseException as raised:
            error = raised
            raise
        finally:
            self._tell([error], started)

    def send_batch(self, messages: list) -> list:
        """The sender's `send_batch`: each message told with its own answer (a request that
        failed whole, with that failure), all timed as the one request they went in."""
        started = time.perf_counter()
        try:
            answers = self._sender.send_batch(messages)
        except BaseException as error:
            self._tell([error] * len(messages), started)
            raise
        self._tell([a if isinstance(a, BaseException) else None for a in answers], started)
        return answers

    def _tell(self, errors: list[BaseException | None], started: float) -> None:
        seconds = time.perf_counter() - started
        for error in errors:
            tell(
                send_attempted,
                type(self._sender),
                channel=self.channel,
                provider=self.provider,
                outcome=_outcome(error),
                seconds=seconds,
            )


def _outcome(error: BaseException | None) -> str:
    """A send's outcome, as /metrics counts it."""
    if error is None:
        return "accepted"
    if isinstance(error, TransientSendError):
        return "transient_error"
    if isinstance(error, PermanentSendError):
        return "permanent_error"
    return "error"  # neither accepted nor a classified refusal: a bug or misconfiguration


@contextmanager
def sending_through(channel: str) -> Iterator:
    """The sender for a channel, for the block: connections it keeps open are closed after."""
    sender = channel_for(channel)
    try:
        yield sender
    finally:
        if hasattr(sender, "close"):  # only senders that keep connections have one
            sender.close()


class RateLimitedSender:
    """A channel's sender that waits for its channel's rate limit before each send; anything
    else it offers (close(), say) is the sender's own."""

    def __init__(self, sender, *, channel: str):
        self._sender, self._channel = sender, channel

    def __getattr__(self, name):
        return getattr(self._sender, name)

    def send(self, message):
        self.wait_turn()
        return self.send_now(message)

    def wait_turn(self) -> None:
        """Return once the channel's rate limit lets one more message go."""
        try:
            rate_limit.acquire(self._channel)
        except redis.RedisError as error:  # the count is out of reach: try again later
            raise NotTried(f"the send rate limit cannot be counted: {error}") from error

    def send_now(self, message):
        """Send without waiting for the rate limit: after `wait_turn()`."""
        return self._sender.send(message)
