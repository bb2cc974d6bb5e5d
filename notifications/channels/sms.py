"""SMS through Twilio's Messages API, with the real twilio SDK."""

from functools import lru_cache
from urllib.parse import urlencode

import requests
from django.conf import settings
from django.urls import reverse
from requests.adapters import HTTPAdapter
from twilio.base.exceptions import TwilioRestException, TwilioServiceException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from notifications.channels.base import (
    OutgoingMessage,
    PermanentSendError,
    SendError,
    TransientSendError,
    read_environment_once,
)

# Twilio's own code for "too many requests", beside HTTP 429.
TWILIO_RATE_LIMITED = 20429
GSM_7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_7_EXTENDED = set("^{}\\[~]|€\f")  # each takes two of a segment's characters


def sms_segments(body: str) -> int:
    """How many SMS segments a body takes: 160 GSM-7 characters in one, 153 a segment once
    split; 70 and 67 when any character needs UCS-2."""
    if all(ch in GSM_7 or ch in GSM_7_EXTENDED for ch in body):
        length = sum(2 if ch in GSM_7_EXTENDED else 1 for ch in body)
        single, multi = 160, 153
    else:
        length = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if length <= single else -(-length // multi)


def status_callback_url(notification_id: int) -> str:
    """Where Twilio reports this message's status; it names the notification it is about."""
    query = urlencode({"notification": notification_id})
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}{reverse('twilio-status')}?{query}"


@lru_cache(maxsize=1)
def twilio_client(account_sid: str, auth_token: str, base_url: str, timeout: float) -> Client:
    """One client per process, shared by the send threads: its session keeps a connection
    alive for each of them (twilio's own pool holds 6, and the others would be discarded)."""
    http_client = TwilioHttpClient(timeout=timeout)
    for scheme in ("https://", "http://"):
        http_client.session.mount(
            scheme, HTTPAdapter(pool_maxsize=max(10, settings.REMINDER_SEND_THREADS))
        )
    read_environment_once(http_client.session, base_url)
    client = Client(account_sid, auth_token, http_client=http_client)
    client.api.base_url = base_url  # Twilio itself, or a compatible stand-in
    return client


class TwilioSmsChannel:
    def send(self, message: OutgoingMessage) -> str:
        client = twilio_client(
            settings.TWILIO_ACCOUNT_SID,
            settings.TWILIO_AUTH_TOKEN,
            settings.TWILIO_API_BASE_URL,
            settings.TWILIO_TIMEOUT_SECONDS,
        )
        sender = (
            {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
            if settings.TWILIO_MESSAGING_SERVICE_SID
            else {"from_": settings.TWILIO_FROM_NUMBER}
        )
        try:
            sent = client.messages.create(
                to=message.to,
                body=message.body,
                status_callback=status_callback_url(message.notification_id),
                **sender,
            )
        except (TwilioRestException, TwilioServiceException) as error:
            raise classify_twilio_error(error) from error
        except requests.RequestException as error:  # refused, reset, timed out
            raise TransientSendError(f"Twilio unreachable: {error.__class__.__name__}") from error
        return sent.sid


def classify_twilio_error(error: TwilioRestException | TwilioServiceException) -> SendError:
    # TwilioRestException says why in .msg, TwilioServiceException in .detail or .title.
    why = getattr(error, "msg", "") or getattr(error, "detail", "") or getattr(error, "title", "")
    reason = f"Twilio error {error.code or error.status}: {why}"
    if error.status == 429 or error.status >= 500 or error.code == TWILIO_RATE_LIMITED:
        return TransientSendError(reason, code=str(error.code or error.status))
    return PermanentSendError(reason, code=str(error.code or error.status))
