"""Channels: each knows how to send one message through its provider. What happens around a
send (claiming, retrying, recording) is written once, in dispatch."""

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.utils.module_loading import import_string

from notifications.channels.base import (
    OutgoingMessage,
    PermanentSendError,
    SendError,
    TransientSendError,
)
from notifications.models import Channel
from notifications.rate_limit import RateLimitedSender

SMS_BACKENDS = {
    "outbox": "notifications.channels.outbox.OutboxSmsChannel",
    "twilio": "notifications.channels.sms.TwilioSmsChannel",
}

__all__ = [
    "OutgoingMessage",
    "PermanentSendError",
    "SendError",
    "TransientSendError",
    "channel_for",
    "sending_through",
]


def channel_for(channel: str):
    """The sender for a channel, as the settings configure it, held to the channel's rate
    limit, counted and timed for /metrics."""
    return RateLimitedSender(_measured_sender(channel), channel=channel)


def _measured_sender(channel: str):
    from notifications.metrics import measured

    if channel == Channel.EMAIL:
        from notifications.channels.email import EmailChannel

        # The provider is the backend's module: anymail's "postmark", Django's "smtp", "outbox".
        provider = settings.EMAIL_BACKEND.rsplit(".", 2)[-2]
        return measured(EmailChannel(), channel=Channel.EMAIL.value, provider=provider)
    try:
        path = SMS_BACKENDS[settings.SMS_BACKEND]
    except KeyError:
        raise ValueError(
            f"SMS_BACKEND={settings.SMS_BACKEND!r} is not one of {', '.join(SMS_BACKENDS)}"
        ) from None
    return measured(import_string(path)(), channel=Channel.SMS.value, provider=settings.SMS_BACKEND)


@contextmanager
def sending_through(channel: str) -> Iterator:
    """The sender for a channel, for the block: connections it keeps open are closed after."""
    sender = channel_for(channel)
    try:
        yield sender
    finally:
        if hasattr(sender, "close"):  # only senders that keep connections have one
            sender.close()
