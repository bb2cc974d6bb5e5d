"""Signed links that let a customer change their channels without logging in."""

from datetime import datetime

from django.conf import settings
from django.core import signing
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from notifications.models import Channel, ConsentChange, InboundMessage
from notifications.signals import consent_changed
from policies.models import Customer

SALT = "renewly.preferences"


class InvalidLink(Exception):
    """The link was tampered with, has expired, or names no customer. The message is for the
    customer, in the language active when it is shown."""


def token_for(customer: Customer) -> str:
    # No compress=True: zlib never shortens so small a payload, so dumps() kept it as it was
    # and only spent the CPU; tokens signed with it still load.
    return signing.dumps({"customer": customer.pk}, salt=SALT)


def customer_from(token: str) -> Customer:
    try:
        data = signing.loads(
            token, salt=SALT, max_age=settings.PREFERENCES_LINK_MAX_AGE_DAYS * 86400
        )
    except signing.SignatureExpired:
        raise InvalidLink(
            _("This link has expired. Use the link in a more recent reminder.")
        ) from None
    except signing.BadSignature:
        raise InvalidLink(
            _("This link is not valid. Copy the whole link from the email.")
        ) from None
    customer = Customer.objects.filter(pk=data.get("customer")).first()
    if customer is None:
        raise InvalidLink(_("This link does not match any customer."))
    return customer


def preferences_url(customer: Customer, token: str | None = None) -> str:
    """`token`: the customer's, already signed for another of their links."""
    path = reverse("customer-preferences", args=[token or token_for(customer)])
    return settings.PUBLIC_BASE_URL.rstrip("/") + path


def unsubscribe_url(customer: Customer, token: str | None = None) -> str:
    path = reverse("one-click-unsubscribe", args=[token or token_for(customer)])
    return settings.PUBLIC_BASE_URL.rstrip("/") + path


def unsubscribe_from_email(customer: Customer) -> None:
    """RFC 8058 one-click: email stops; SMS is not touched (a STOP that arrived meanwhile
    stands)."""
    change_consent(
        Customer.objects.filter(pk=customer.pk),
        channel=Channel.EMAIL,
        accepted=False,
        source=ConsentChange.Source.ONE_CLICK,
    )
    customer.email_consent = False


CONSENT_FIELDS = {
    Channel.EMAIL: "email_consent",
    Channel.SMS: "sms_consent",
    Channel.WHATSAPP: "whatsapp_consent",
}


def set_channels(
    customer: Customer,
    *,
    email: bool | None,
    sms: bool | None,
    whatsapp: bool | None = None,
    source: str,
    changed_by: str = "",
) -> None:
    """Record which channels the customer accepts (None: that channel as it is), and when, how
    and by whom each choice changed. Planning and dispatch read these flags, so a channel turned
    off gets nothing from the next scan, nor from reminders already queued. WhatsApp is the one
    channel a customer must opt in to: its history is the record of that opt-in."""
    customers = Customer.objects.filter(pk=customer.pk)
    choices = ((Channel.EMAIL, email), (Channel.SMS, sms), (Channel.WHATSAPP, whatsapp))
    with transaction.atomic():
        for channel, accepted in choices:
            if accepted is not None:
                change_consent(
                    customers,
                    channel=channel,
                    accepted=accepted,
                    source=source,
                    changed_by=changed_by,
                )
                setattr(customer, CONSENT_FIELDS[channel], accepted)


def change_consent(
    customers,
    *,
    channel: str,
    accepted: bool,
    source: str,
    changed_by: str = "",
    as_of: datetime | None = None,
) -> int:
    """Set one channel's consent for `customers` (a queryset) and record each real change,
    so that the history shows when and how every customer's consent changed. With `as_of`
    (when the request asking for it was received), a customer whose consent to the channel
    changed after that keeps their newer choice. Returns how many customers changed."""
    field = CONSENT_FIELDS[channel]
    with transaction.atomic():
        changing = customers.exclude(**{field: accepted}).select_for_update()
        ids = list(changing.values_list("pk", flat=True))
        if as_of is not None and ids:
            # Read after the rows are locked, so a change committed meanwhile is seen.
            newer = ConsentChange.objects.filter(
                customer_id__in=ids, channel=channel, changed_at__gt=as_of
            ).values_list("customer_id", flat=True)
            ids = sorted(set(ids) - set(newer))
        Customer.objects.filter(pk__in=ids).update(**{field: accepted}, updated_at=timezone.now())
        ConsentChange.objects.bulk_create(
            ConsentChange(
                customer_id=pk,
                channel=channel,
                accepted=accepted,
                source=source,
                changed_by=changed_by,
            )
            for pk in ids
        )
        if ids:  # in the transaction: what a receiver records commits with the change
            consent_changed.send(
                Customer,
                customer_ids=ids,
                channel=channel,
                accepted=accepted,
                source=source,
                changed_by=changed_by,
            )
    return len(ids)


OPT_OUT_WORDS = {"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"}
OPT_IN_WORDS = {"START", "UNSTOP"}
# Twilio applies STOP to SMS itself, in English; on WhatsApp Renewly alone listens, so the
# words of the customers who use it most (Spanish, Portuguese) count there too.
WHATSAPP_OPT_OUT_WORDS = OPT_OUT_WORDS | {"BAJA", "PARAR", "CANCELAR", "SAIR"}
WHATSAPP_OPT_IN_WORDS = OPT_IN_WORDS | {"ALTA"}
# How Twilio writes a WhatsApp address: the number with this prefix.
WHATSAPP_PREFIX = "whatsapp:"


def apply_sms_reply(
    *, message_sid: str, sender: str, body: str, received_at: datetime
) -> InboundMessage | None:
    """A customer's SMS or WhatsApp message (its sender "whatsapp:+..."): STOP and its
    synonyms opt the sender's customers out of that channel, START opts them back in. Each
    MessageSid counts once, so a replayed request (Twilio signs no timestamp) changes nothing;
    and a consent change recorded after the message was received is newer than it and stands.
    Returns None for a replay."""
    on_whatsapp = sender.startswith(WHATSAPP_PREFIX)
    opt_out = WHATSAPP_OPT_OUT_WORDS if on_whatsapp else OPT_OUT_WORDS
    opt_in = WHATSAPP_OPT_IN_WORDS if on_whatsapp else OPT_IN_WORDS
    word = body.strip().upper()
    keyword = word if word in opt_out | opt_in else ""
    with transaction.atomic():
        try:
            with transaction.atomic():
                message = InboundMessage.objects.create(
                    message_sid=message_sid,
                    sender=sender[:32],
                    keyword=keyword,
                    received_at=received_at,
                )
        except IntegrityError:
            return None  # this message again: it was applied the first time
        phone = sender.removeprefix(WHATSAPP_PREFIX)
        if keyword and phone:
            message.customers_changed = change_consent(
                Customer.objects.filter(phone=phone),
                channel=Channel.WHATSAPP if on_whatsapp else Channel.SMS,
                accepted=keyword in opt_in,
                source=ConsentChange.Source.WHATSAPP_REPLY
                if on_whatsapp
                else ConsentChange.Source.SMS_REPLY,
                as_of=received_at,
            )
            message.save(update_fields=["customers_changed"])
    return message


def masked_email(address: str) -> str:
    """Enough of an address for its owner to recognise it, not enough to harvest it."""
    local, _at, domain = address.partition("@")
    return f"{local[:1]}•••@{domain}" if domain else ""


def masked_phone(number: str) -> str:
    return f"•••• {number[-4:]}" if number else ""
