"""Providers' error codes and bounce types in plain words, in one place: the Twilio webhook
records these reasons, and the agents' workspace shows them on a policy's timeline."""

import re

from notifications.models import DeliveryEvent

Type = DeliveryEvent.Type

# Twilio's common delivery error codes, in words a person can act on.
TWILIO_ERRORS = {
    "21211": "the phone number is not valid",
    "21610": "the customer replied STOP to this number",
    "21614": "the number is not a mobile number",
    "30003": "the handset is unreachable (switched off or out of coverage)",
    "30004": "the message was blocked by the recipient or their carrier",
    "30005": "the number is unknown or no longer exists",
    "30006": "the number is a landline or cannot receive SMS",
    "30007": "the carrier filtered the message as spam",
    "30008": "the carrier reported an unknown error",
    # WhatsApp's
    "21655": "Twilio does not know the WhatsApp content's SID: check the template's Content SID",
    "21656": "Twilio refused the WhatsApp content's variables",
    "21910": "the WhatsApp sender and the customer's address are not both WhatsApp ones",
    "63003": "the number is not on WhatsApp",
    "63016": "WhatsApp takes only approved content from a business (outside the 24-hour window)",
    "63024": "WhatsApp refused the recipient",
    "63049": "Meta chose not to deliver the WhatsApp message",
}
# What an email event means for the agent, by event type.
EMAIL_EVENTS = {
    Type.BOUNCED: "the customer's mail server refused the message: the address may not exist",
    Type.REJECTED: "the email provider refused to send to this address",
    Type.COMPLAINED: "the customer marked the email as spam: no more reminders go to them by email",
    Type.UNSUBSCRIBED: "the customer unsubscribed from email reminders",
    Type.DEFERRED: "the receiving server delayed the message; the provider keeps trying",
}
# anymail's normalized reject reasons (its `reject_reason`), which our events keep as the code.
EMAIL_REJECT_REASONS = {
    "invalid": "the address is not valid",
    "bounced": "the address bounced before",
    "timed_out": "the receiving server did not answer in time",
    "blocked": "the receiving server blocked the sender",
    "spam": "the receiving server took the message for spam",
    "unsubscribed": "the customer unsubscribed earlier",
}
# "Twilio error 21211: ..." (a refused send) or "twilio: ... (error 30003)" (a callback).
_TWILIO_CODE_IN_TEXT = re.compile(r"\berror (\d{5})\b", re.IGNORECASE)


def explain_event(event: DeliveryEvent) -> str:
    """A sentence for a delivery event that went wrong; empty for one that did not."""
    if event.error_code in TWILIO_ERRORS:
        return _sentence(TWILIO_ERRORS[event.error_code])
    if event.event_type in EMAIL_EVENTS and event.provider != "twilio":
        detail = EMAIL_REJECT_REASONS.get(event.error_code)
        return _sentence(EMAIL_EVENTS[event.event_type] + (f" ({detail})" if detail else ""))
    if event.event_type in (Type.FAILED, Type.UNDELIVERED, Type.BOUNCED, Type.REJECTED):
        return _sentence(event.reason or f"the provider reported {event.event_type}")
    return ""


def explain_error(last_error: str) -> str:
    """A notification's recorded error in plain words, when it names a code we know."""
    match = _TWILIO_CODE_IN_TEXT.search(last_error)
    if match and match.group(1) in TWILIO_ERRORS:
        return _sentence(TWILIO_ERRORS[match.group(1)])
    return _sentence(last_error) if last_error else ""


def _sentence(text: str) -> str:
    text = text.strip()
    return text[:1].upper() + text[1:] + ("" if text.endswith(".") else ".")
