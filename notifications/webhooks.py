"""Providers' callbacks. Each view only checks who is calling and parses the payload into a
TrackingEvent; notifications.tracking does the rest, the same way for every provider."""

import hashlib
import json
import logging
from functools import wraps

from anymail.exceptions import AnymailWebhookValidationFailure
from anymail.signals import tracking as anymail_tracking
from django.conf import settings
from django.dispatch import receiver
from django.http import HttpResponse, HttpResponseBadRequest, HttpResponseForbidden
from django.urls import URLPattern
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from notifications import preferences, tracking
from notifications.explanations import TWILIO_ERRORS
from notifications.models import DeliveryEvent, InboundMessage
from notifications.signals import tell, webhook_received

logger = logging.getLogger(__name__)
Type = DeliveryEvent.Type

# Twilio's MessageStatus values, in our event types.
TWILIO_STATUSES = {
    "accepted": Type.QUEUED,
    "scheduled": Type.QUEUED,
    "queued": Type.QUEUED,
    "sending": Type.QUEUED,
    "sent": Type.SENT,
    "delivered": Type.DELIVERED,
    "read": Type.READ,  # WhatsApp
    "undelivered": Type.UNDELIVERED,
    "failed": Type.FAILED,
    "canceled": Type.FAILED,
}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def counted_webhook(name: str):
    """Tell each request of a webhook view by its outcome (the webhook_received signal, which ops
    counts for /metrics). Refused: the caller is not the provider (a missing or wrong
    signature, anymail's basic auth failing)."""

    def decorate(view):
        @wraps(view)
        def counted(request, *args, **kwargs):
            try:
                response = view(request, *args, **kwargs)
            except AnymailWebhookValidationFailure:
                tell(webhook_received, view, webhook=name, outcome="refused")
                raise
            outcome = outcome_of(response.status_code)
            tell(webhook_received, view, webhook=name, outcome=outcome)
            return response

        return counted

    return decorate


def outcome_of(status_code: int) -> str:
    if status_code < 300:
        return "accepted"
    if status_code in (401, 403):
        return "refused"
    return "invalid"


def signed_by_twilio(request) -> bool:
    """Check X-Twilio-Signature against the URL Twilio called, as the public sees it."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature or not settings.TWILIO_AUTH_TOKEN:
        return False
    url = settings.PUBLIC_BASE_URL.rstrip("/") + request.get_full_path()
    return RequestValidator(settings.TWILIO_AUTH_TOKEN).validate(
        url, request.POST.dict(), signature
    )


@csrf_exempt
@counted_webhook("twilio-status")
@require_POST
def twilio_status(request):
    if not signed_by_twilio(request):
        return HttpResponseForbidden("Missing or invalid X-Twilio-Signature.")
    params = request.POST.dict()
    message_sid, status = params.get("MessageSid", ""), params.get("MessageStatus", "")
    if not message_sid or not status:
        return HttpResponseBadRequest("MessageSid and MessageStatus are required.")
    notification = request.GET.get("notification", "")
    digest = request.GET.get("digest", "")  # a digest's message: every reminder it carried
    if any(value and not value.isdigit() for value in (notification, digest)):
        return HttpResponseBadRequest("notification and digest must be numbers.")
    error_code = params.get("ErrorCode", "")
    tracking.apply(
        tracking.TrackingEvent(
            provider="twilio",
            event_type=TWILIO_STATUSES.get(status, Type.UNKNOWN),
            # Twilio reports each status of a message once; a retry of it is a replay.
            event_id=f"{message_sid}:{status}",
            occurred_at=timezone.now(),
            provider_message_id=message_sid,
            notification_id=int(notification) if notification else None,
            digest_id=int(digest) if digest and not notification else None,
            error_code=error_code,
            reason=TWILIO_ERRORS.get(error_code, ""),
            payload=params,
        )
    )
    return HttpResponse(status=204)


@csrf_exempt
@counted_webhook("twilio-inbound")
@require_POST
def twilio_inbound(request):
    """A customer's reply, by SMS or on WhatsApp (Twilio posts both here): STOP and its synonyms
    opt them out of that channel, START opts them back in."""
    if not signed_by_twilio(request):
        return HttpResponseForbidden("Missing or invalid X-Twilio-Signature.")
    received_at = timezone.now()
    message_sid = request.POST.get("MessageSid", "")
    if (
        not message_sid
        or len(message_sid) > InboundMessage._meta.get_field("message_sid").max_length
    ):
        return HttpResponseBadRequest("MessageSid is required, as Twilio sends it.")
    sender = request.POST.get("From", "")
    message = preferences.apply_sms_reply(
        message_sid=message_sid,
        sender=sender,
        body=request.POST.get("Body", ""),
        received_at=received_at,
    )
    if message is None:
        logger.info("SMS %s again: a replay, ignored", message_sid)
    elif message.keyword:
        logger.info(
            "SMS %s from %s: %s customer(s) %s",
            message.keyword,
            sender,
            message.customers_changed,
            "opted in" if message.keyword in preferences.WHATSAPP_OPT_IN_WORDS else "opted out",
        )
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


def counted_anymail_urls() -> list[URLPattern]:
    """anymail's webhook URLs, each view's requests told by outcome: accepted or refused."""
    from anymail import urls

    return [
        URLPattern(url.pattern, counted_webhook(url.name)(url.callback), url.default_args, url.name)
        for url in urls.urlpatterns
    ]


@receiver(anymail_tracking)
def record_email_event(sender, event, esp_name, **kwargs):
    """anymail's normalized tracking event, from whichever ESP's webhook, into ours."""
    metadata = event.metadata or {}
    notification = str(metadata.get("notification_id", ""))
    digest = str(metadata.get("digest_id", ""))  # a digest's email: every reminder it carried
    tracking.apply(
        tracking.TrackingEvent(
            provider=esp_name.lower(),
            event_type=event.event_type if event.event_type in Type.values else Type.UNKNOWN,
            event_id=event.event_id or _fingerprint(esp_name, event),
            occurred_at=event.timestamp or timezone.now(),
            provider_message_id=event.message_id or "",
            notification_id=int(notification) if notification.isdigit() else None,
            digest_id=int(digest) if digest.isdigit() else None,
            error_code=event.reject_reason or "",
            reason=event.description or event.mta_response or "",
            payload=_as_json(event.esp_event),
        )
    )


def _fingerprint(esp_name: str, event) -> str:
    """An id for ESPs whose events carry none: the same event replayed gives the same id."""
    parts = [esp_name, event.event_type, event.message_id, event.recipient, str(event.timestamp)]
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def _as_json(payload) -> dict:
    try:
        json.dumps(payload)
    except (TypeError, ValueError):
        return {"repr": repr(payload)}
    return payload if isinstance(payload, dict) else {"payload": payload}
