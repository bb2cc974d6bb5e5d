"""Who a channel can reach, in one place: planning reads it for each candidate, dispatch before
each send, the fallback before planning one, and selectors.REACHABLE_BY says the same as a
filter on customers."""

from notifications.models import Channel


def why_unreachable(channel: str, customer) -> str:
    """Why `channel` cannot reach `customer` (a Customer, or anything with its consent and
    address fields, such as planning's Candidate), or '' when it can."""
    if channel == Channel.EMAIL:
        if not customer.email_consent:
            return "customer opted out of email"
        if not customer.email:
            return "customer has no email address"
        if customer.email_undeliverable:
            return "customer's email address bounced"
        return ""
    if channel == Channel.WHATSAPP:
        if not customer.whatsapp_consent:
            return "customer has not opted in to WhatsApp"
    elif not customer.sms_consent:
        return "customer opted out of SMS"
    if not customer.phone:
        return "customer has no phone number"
    if customer.phone == customer.wrong_phone:
        return "customer's phone number is wrong"
    return ""


def reachable_by(channel: str, customer) -> bool:
    return not why_unreachable(channel, customer)
