"""Channels: each knows how to send one message through its provider. What happens around a
send (claiming, retrying, recording) is written once, in dispatch."""

from django.conf import settings
from django.utils.module_loading import import_string

from notifications.channels.base import (
    OutgoingMessage,
    PermanentSendError,
    SendError,
    TransientSendError,
)
from notifications.models import Channel

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
]


def channel_for(channel: str):
    """The sender for a channel, as the settings configure it."""
    if channel == Channel.EMAIL:
        from notifications.channels.email import EmailChannel

        return EmailChannel()
    try:
        path = SMS_BACKENDS[settings.SMS_BACKEND]
    except KeyError:
        raise ValueError(
            f"SMS_BACKEND={settings.SMS_BACKEND!r} is not one of {', '.join(SMS_BACKENDS)}"
        ) from None
    return import_string(path)()
