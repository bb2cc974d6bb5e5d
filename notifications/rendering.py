"""Turn a reminder into the words its customer reads: the rule's template (or its experiment
variant's), in the customer's language, filled in with the policy's data. Sending and the
admin's preview both come here.

A template sees plain values only (strings, numbers, dates), never a model: an admin who edits
the words cannot reach anything else through them (notifications.templating)."""

import datetime
import functools
from collections.abc import Callable, Iterable
from urllib.parse import quote

from babel.dates import format_date, format_timedelta
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.utils import timezone, translation

from notifications import preferences, templating, whatsapp
from notifications.channels import OutgoingMessage, sms
from notifications.models import Channel, MessageTemplate, Notification
from policies import languages
from policies.models import Customer, Policy, ProductLine


def render(notification: Notification, lines: "ProductLines | None" = None) -> OutgoingMessage:
    """The message of `notification`. `lines`: its batch's product lines, loaded once."""
    policy = notification.policy
    lines = lines or ProductLines([policy.product_line])
    return compose(
        notification.template,
        policy=policy,
        customer=notification.customer,
        expiry_date=notification.expiry_date,
        lead_days=notification.lead_days,
        notification_id=notification.pk,
        product_line=lines.get(policy.product_line),
    )


def render_digest(
    template: MessageTemplate,
    notifications: list[Notification],
    lines: "ProductLines | None" = None,
) -> OutgoingMessage:
    """One message for several reminders of one customer on one channel, from the channel's
    digest `template`: `policies` lists each, soonest expiry first, and the single values
    (policy, expiry_date, days_left...) are the soonest's. Its digest id is the caller's to
    set (notifications.digests)."""
    first, *others = sorted(
        notifications, key=lambda n: (n.expiry_date, n.policy.policy_number, n.pk)
    )
    lines = lines or ProductLines(n.policy.product_line for n in notifications)
    return compose(
        template,
        policy=first.policy,
        customer=first.customer,
        expiry_date=first.expiry_date,
        lead_days=first.lead_days,
        notification_id=first.pk,
        product_line=lines.get(first.policy.product_line),
        others=[(n.policy, n.expiry_date, lines.get(n.policy.product_line)) for n in others],
    )


def digest_template(channel: str) -> MessageTemplate | None:
    """The channel's digest template (at most one: a constraint), with its translations."""
    return (
        MessageTemplate.objects.prefetch_related("translations")
        .filter(channel=channel, kind=MessageTemplate.Kind.DIGEST)
        .first()
    )


class ProductLines:
    """Product lines with their names, by code: one load for a batch of reminders."""

    def __init__(self, codes: Iterable[str]):
        self._lines = ProductLine.objects.prefetch_related("names").in_bulk(
            set(codes), field_name="code"
        )

    def get(self, code: str) -> ProductLine | None:
        return self._lines.get(code)


# A preview's links are not the customer's: a signed link is their key to their consent.
PREVIEW_TOKEN = "preview"


def preview(
    template: MessageTemplate,
    policy: Policy,
    *,
    lead_days: int | None = None,
    links_shortened: bool | None = None,
    others: list[Policy] = (),
):
    """What `policy`'s customer would read from `template` today, with links that open no
    customer's page; nothing is saved or sent. `links_shortened`: as compose. `others`: the
    other policies a digest lists."""
    today = timezone.localdate(timezone=policy.customer.timezone)
    lines = ProductLines([policy.product_line, *(other.product_line for other in others)])
    return compose(
        template,
        policy=policy,
        customer=policy.customer,
        expiry_date=policy.expiry_date,
        lead_days=lead_days if lead_days is not None else (policy.expiry_date - today).days,
        notification_id=0,
        product_line=lines.get(policy.product_line),
        token=lambda: PREVIEW_TOKEN,
        links_shortened=links_shortened,
        others=[(other, other.expiry_date, lines.get(other.product_line)) for other in others],
    )


def compose(
    template: MessageTemplate,
    *,
    policy: Policy,
    customer: Customer,
    expiry_date: datetime.date,
    lead_days: int,
    notification_id: int,
    product_line: ProductLine | None = None,
    token: Callable[[], str] | None = None,
    links_shortened: bool | None = None,
    others: list[tuple[Policy, datetime.date, ProductLine | None]] = (),
) -> OutgoingMessage:
    """The message `template` makes for this reminder, in the language its words are in (the
    customer's, or the closest the template has: MessageTemplate.in_language). `token`: the
    signed token of the customer's links (by default, theirs). `links_shortened`: whether an
    SMS's links will be shortened (by default, as the settings say), which decides if it
    carries the renew link. `others`: the other policies (with their expiry and product line)
    of a digest, listed after this one in `policies`."""
    words = template.in_language(customer.language)
    text = words.text
    is_email = template.channel == Channel.EMAIL
    parts = {
        "subject": templating.compiled(text.subject) if is_email else None,
        "body": templating.compiled(text.body),
        "html_body": templating.compiled(text.html_body) if is_email else None,
    }
    # Signing the customer's links costs more than the rest of the values: once per message,
    # and only when a template or the unsubscribe header asks for one.
    token = token or functools.cache(functools.partial(preferences.token_for, customer))
    names = set().union(*(part.names for part in parts.values() if part))
    # WhatsApp sends its approved content instead, the variables filled from the same values,
    # in the content's language.
    content, language = None, words.language
    if template.channel == Channel.WHATSAPP:
        content = whatsapp.content_for(template, customer.language)
        if content:
            names |= whatsapp.variable_names(content)
            language = languages.canonical(content.language)
    # Django's own formatting (the date filter's month names) in the words' language too.
    with translation.override(language):
        values = values_for(
            policy,
            customer,
            expiry_date,
            lead_days,
            language=language,
            product_line=product_line,
            token=token,
            with_preferences_url="preferences_url" in names,
        )
        values["policies"] += [
            policy_item(other, customer, other_expiry, words.language, other_line)
            for other, other_expiry, other_line in others
        ]
        if template.channel == Channel.SMS:
            if links_shortened is None:
                links_shortened = sms.shortens_links()
            for item in [values, *values["policies"]]:
                item["renew_url"] = sms.renew_link_for_sms(
                    item["renew_url"], links_shortened=links_shortened
                )
        filled = {
            name: part.render(values, autoescape=name == "html_body").strip() if part else ""
            for name, part in parts.items()
        }
        variables = whatsapp.fill(content, values) if content else {}
    return OutgoingMessage(
        notification_id=notification_id,
        to=customer.email if is_email else customer.phone,
        subject=" ".join(filled["subject"].split()),  # a subject is one line
        body=filled["body"],
        html_body=filled["html_body"],
        metadata={"notification_id": str(notification_id), "policy": policy.policy_number},
        headers=unsubscribe_headers(customer, token=token()) if is_email else {},
        content_sid=content.content_sid if content else "",
        content_variables=variables,
    )


def values_for(
    policy,
    customer,
    expiry_date,
    lead_days,
    *,
    language: str = "",
    product_line: ProductLine | None = None,
    token=None,
    with_preferences_url=True,
) -> dict:
    """The values a template may use (templating.VARIABLES), as plain strings, numbers and
    dates; the texts among them in `language`, the language of the words they go into (by
    default the customer's). `token`: a callable returning the customer's signed token."""
    language = language or customer.language
    item = policy_item(policy, customer, expiry_date, language, product_line)
    agent = policy.agent
    values = {
        "customer": {
            "name": customer.name,
            "email": customer.email,
            "phone": customer.phone,
            "language": customer.language,
        },
        "policy": {
            "policy_number": policy.policy_number,
            "product_line": policy.product_line,
            "product_name": item["product_name"],
            "start_date": policy.start_date,
            "expiry_date": policy.expiry_date,
        },
        "agent": {"name": agent.name, "email": agent.email, "phone": agent.phone},
        "expiry_date": expiry_date,
        "expiry_date_text": item["expiry_date_text"],
        "days_left": item["days_left"],
        "days_left_text": item["days_left_text"],
        "lead_days": lead_days,
        "renew_url": item["renew_url"],
        # A reminder's own policy alone; a digest's adds the others (compose's `others`).
        "policies": [item],
    }
    if with_preferences_url:
        token = token or functools.partial(preferences.token_for, customer)
        values["preferences_url"] = preferences.preferences_url(customer, token())
    return values


def policy_item(
    policy: Policy,
    customer: Customer,
    expiry_date: datetime.date,
    language: str,
    product_line: ProductLine | None = None,
) -> dict:
    """One policy as `policies` lists it (templating.POLICY_ITEM), its texts in `language`."""
    # "Today" is the customer's today: late evening in Los Angeles is tomorrow in UTC.
    days_left = (expiry_date - timezone.localdate(timezone=customer.timezone)).days
    return {
        "policy_number": policy.policy_number,
        "product_line": policy.product_line,
        "product_name": product_line.name_in(language) if product_line else policy.product_line,
        "expiry_date": expiry_date,
        "expiry_date_text": date_text(expiry_date, language),
        "days_left": days_left,
        "days_left_text": days_left_text(days_left, language),
        "renew_url": renew_url(policy, product_line),
    }


@functools.lru_cache(maxsize=1024)
def date_text(day: datetime.date, language: str) -> str:
    """A date written out in a language by CLDR's long format ("1. Dezember 2026", "1 décembre
    2026", "December 1, 2026"); a day's reminders share a handful of dates."""
    return format_date(day, "long", locale=_locale(language))


# Django's own catalogs (django.contrib.humanize's naturalday) have these words in about a
# hundred languages; CLDR, through Babel, has "in 3 days" in every language it knows, by its
# plural rules, but not these.
NEAR_DAYS = {-1: "yesterday", 0: "today", 1: "tomorrow"}


@functools.lru_cache(maxsize=4096)
def days_left_text(days: int, language: str) -> str:
    """How long until the expiry date, as a person says it: "today", "tomorrow", "in 3 days"
    (and "yesterday", "3 days ago" for a reminder that went out late), in `language`."""
    locale = _locale(language)
    if days in NEAR_DAYS:
        with translation.override(language):
            said = translation.gettext(NEAR_DAYS[days])
        if said != NEAR_DAYS[days] or locale.language == "en":  # else: no catalog has it
            return said
    return format_timedelta(
        datetime.timedelta(days=days),
        granularity="day",
        threshold=1000,  # days stay days: "in 45 days", not "in 2 months"
        add_direction=True,
        locale=locale,
    )


def _locale(language: str):
    try:
        return languages.babel_locale(language)
    except languages.UnknownLanguage:
        return languages.babel_locale(settings.LANGUAGE_CODE)


@receiver(setting_changed)
def _forget_texts(**kwargs) -> None:
    date_text.cache_clear()  # a test changed the default language
    days_left_text.cache_clear()


def renew_url(policy: Policy, product_line: ProductLine | None = None) -> str:
    """The product line's renew link, else RENEW_URL_TEMPLATE, filled in for this policy: the
    insurer's renewal portal, or by default an email to the policy's agent."""
    link = (product_line.renew_url if product_line else "") or settings.RENEW_URL_TEMPLATE
    return link.format(
        policy_number=quote(policy.policy_number),
        agent_email=policy.agent.email,
        product_line=quote(policy.product_line),
    )


def unsubscribe_headers(customer, *, token: str | None = None) -> dict:
    """RFC 8058 one-click unsubscribe: mail clients show an Unsubscribe button that POSTs."""
    return {
        "List-Unsubscribe": f"<{preferences.unsubscribe_url(customer, token)}>",
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }
