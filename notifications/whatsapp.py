"""A WhatsApp reminder's approved content: which Content SID a customer's language sends, and
its numbered variables filled from the plain values every template reads (rendering.values_for),
as the strings WhatsApp takes."""

from notifications import templating
from notifications.models import MessageTemplate, WhatsAppContent
from policies import languages

# WhatsApp refuses an empty variable (Twilio error 21656): what stands for a value left empty.
EMPTY_VALUE = "-"


def content_for(template: MessageTemplate, language: str) -> WhatsAppContent | None:
    """The approved content a customer reading `language` gets, by the same fallbacks as a
    template's words (policies.languages.closest), or None when the template has none in that
    language nor in the default one. Reads the prefetched contents, if any."""
    contents = languages.by_language(template.whatsapp_contents.all())
    return contents.get(languages.closest(language, contents))


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
