"""A WhatsApp reminder's approved content: which Content SID a customer's language sends, and
its numbered variables filled from the plain values every template reads (rendering.values_for),
as the strings WhatsApp takes."""

from django.conf import settings

from notifications import templating
from notifications.models import MessageTemplate, WhatsAppContent

# WhatsApp refuses an empty variable (Twilio error 21656): what stands for a value left empty.
EMPTY_VALUE = "-"


def languages_to_try(language: str) -> list[str]:
    """The languages to look for, in order: the customer's exact tag, its base language, the
    site's default. (TemplateTranslation's own lookup will follow the same order: keep them
    one function when both exist.)"""
    tried = [language, language.partition("-")[0], settings.LANGUAGE_CODE]
    return list(dict.fromkeys(tag for tag in tried if tag))


def content_for(template: MessageTemplate, language: str) -> WhatsAppContent | None:
    """The approved content a customer reading `language` gets, or None when the template has
    none in that language nor in the default one. Reads the prefetched contents, if any."""
    contents = {content.language: content for content in template.whatsapp_contents.all()}
    for tag in languages_to_try(language):
        if tag in contents:
            return contents[tag]
    return None


def variable_names(content: WhatsAppContent) -> frozenset[str]:
    """The values the content's variables use (so that a preferences link is signed only when
    one of them asks for it)."""
    return frozenset().union(
        *(templating.compiled(line).names for line in content.variable_lines())
    )


def fill(content: WhatsAppContent, values: dict) -> dict[str, str]:
    """{"1": ..., "2": ...}: each variable rendered with `values`, on one line, as WhatsApp
    takes it (no newline, tab or run of spaces, never empty: Twilio error 21656)."""
    filled = {}
    for number, line in enumerate(content.variable_lines(), start=1):
        text = templating.compiled(line).render(values, autoescape=False)
        filled[str(number)] = " ".join(text.split()) or EMPTY_VALUE
    return filled
