"""WhatsApp through Twilio's Messages API, with the same twilio client as SMS. A business may
start a WhatsApp conversation only with content Meta approved: the message is its Content SID
and variables, from and to "whatsapp:" addresses, its status reported to the same signed
callback as an SMS's."""

import json
from datetime import datetime

from django.conf import settings

from notifications.channels.base import (
    FoundMessage,
    OutgoingMessage,
    PermanentSendError,
    TransientSendError,
)
from notifications.channels.sms import (
    _client,
    sent_to,
    status_callback_url,
    twilio_errors,
)

PREFIX = "whatsapp:"


def address(number: str) -> str:
    """A number as Twilio's WhatsApp address: "whatsapp:+14155550100"."""
    return number if number.startswith(PREFIX) else f"{PREFIX}{number}"


def require_content(message: OutgoingMessage) -> None:
    """Refuse a message with no approved content. Free text would fail anyway (Twilio 63016,
    outside the 24-hour window): the reminder fails for good here, and its rule's fallback
    goes instead."""
    if not settings.TWILIO_WHATSAPP_FROM and settings.WHATSAPP_BACKEND == "twilio":
        raise PermanentSendError("no WhatsApp sender: set TWILIO_WHATSAPP_FROM")
    if not message.content_sid:
        raise PermanentSendError(
            "no approved WhatsApp content (Content SID) for the customer's language or the "
            "default one: add it to the template"
        )


class TwilioWhatsAppChannel:
    can_look_up = True

    def send(self, message: OutgoingMessage) -> str:
        require_content(message)
        with twilio_errors():
            sent = _client().messages.create(
                to=address(message.to),
                from_=address(settings.TWILIO_WHATSAPP_FROM),
                content_sid=message.content_sid,
                content_variables=json.dumps(message.content_variables, ensure_ascii=False),
                status_callback=status_callback_url(message.notification_id),
            )
        return sent.sid

    def find_sent(self, message: OutgoingMessage, *, since: datetime) -> list[FoundMessage]:
        """The WhatsApp messages Twilio accepted for this notification since `since`: its latest
        messages to the customer's WhatsApp address (at most LOOKUP_LIMIT) whose body, the
        content as Twilio filled it in, holds each of this reminder's variables, in order. The
        variables name the policy and its expiry, so the message is this notification's own.
        Raises TransientSendError when Twilio cannot answer now."""
        values = [value for value in message.content_variables.values() if value]
        if not values:
            raise TransientSendError("no content variables to match Twilio's messages with")
        return sent_to(
            address(message.to), since=since, matches=lambda body: _holds_in_order(body, values)
        )


def _holds_in_order(body: str | None, values: list[str]) -> bool:
    position = 0
    for value in values:
        position = (body or "").find(value, position)
        if position < 0:
            return False
        position += len(value)
    return True
