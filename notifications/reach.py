"""Who a channel can reach, in one place, twice: `why_unreachable` applies the rule to one
customer (dispatch before each send, the fallback before planning one, the Python planner), and
`reachable_filter` says the same as a filter in SQL (the set-based planner, the selectors).
tests/notifications/test_reach.py holds the two to the same answers on a table of customers."""

from django.db.models import F, Q

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


def reachable_filter(channel: str, customer: str = "") -> Q:
    """`reachable_by` as a filter: on customers, or on a model that leads to the customer
    through `customer` (a lookup path ending in "__", e.g. "customer__" on policies)."""

    def field(name: str) -> str:
        return customer + name

    if channel == Channel.EMAIL:
        return Q(**{field("email_consent"): True, field("email_undeliverable"): False}) & ~Q(
            **{field("email"): ""}
        )
    consent = "whatsapp_consent" if channel == Channel.WHATSAPP else "sms_consent"
    return (
        Q(**{field(consent): True})
        & ~Q(**{field("phone"): ""})
        & ~Q(**{field("phone"): F(field("wrong_phone"))})
    )
