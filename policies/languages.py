"""Customers' languages: any language tag the Unicode CLDR knows (through Babel), such as de, fr,
pt-BR or zh-Hans, whether or not Renewly has words in it yet. A customer's language is a wish
about how to be written to, never a reason to refuse their policy: what is written in which
language, and why, is decided by `fallbacks`, once, for messages and pages alike."""

from collections.abc import Iterable
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from django.conf import settings
from django.core.exceptions import ValidationError

MAX_LENGTH = 35  # BCP 47's practical limit for a language-script-region tag
# Tags CLDR reads as a language that say nothing about one.
UNDETERMINED = {"und", "root", "mul", "zxx"}


class UnknownLanguage(ValueError):
    """Not a language tag, or one no one has data for; the message says which."""


@lru_cache(maxsize=1024)  # a book has a few dozen languages
def canonical(tag: str) -> str:
    """The tag in BCP 47's usual form ("pt_br" -> "pt-BR", "ZH-HANS" -> "zh-Hans"), or
    UnknownLanguage naming what is wrong with it."""
    cleaned = tag.strip()
    if not cleaned:
        raise UnknownLanguage("an empty language tag")
    if len(cleaned) > MAX_LENGTH:
        raise UnknownLanguage(f"language tag {tag!r} is longer than {MAX_LENGTH} characters")
    if cleaned.split("-")[0].split("_")[0].lower() in UNDETERMINED:
        raise UnknownLanguage(f"language tag {tag!r} names no language")
    try:
        locale = Locale.parse(cleaned.replace("_", "-"), sep="-")
    except UnknownLocaleError:
        raise UnknownLanguage(f"unknown language {tag!r} (not a language CLDR knows)") from None
    except (ValueError, TypeError):
        raise UnknownLanguage(f"{tag!r} is not a language tag (e.g. de, fr, pt-BR)") from None
    return "-".join(part for part in (locale.language, locale.script, locale.territory) if part)


def tidied(tag: str) -> str:
    """A form's tag in its canonical form, or as given when it is not one (the field's
    validator then says why)."""
    try:
        return canonical(tag)
    except UnknownLanguage:
        return tag


def validate_language(tag: str) -> None:
    """A model field's validator."""
    try:
        canonical(tag)
    except UnknownLanguage as problem:
        raise ValidationError(str(problem), code="unknown_language") from None


def fallbacks(tag: str) -> list[str]:
    """The languages to write to someone who reads `tag`, best first: the tag itself, then
    ever broader ones (zh-Hant-TW, zh-Hant, zh), then the site's default (LANGUAGE_CODE)."""
    try:
        parts = canonical(tag).split("-")
    except UnknownLanguage:
        parts = []
    chain = ["-".join(parts[:end]) for end in range(len(parts), 0, -1)]
    default = canonical(settings.LANGUAGE_CODE)
    return chain + ([default] if default not in chain else [])


def closest(tag: str, available: Iterable[str]) -> str:
    """Of the `available` languages (canonical tags), the one to write in to a reader of
    `tag`: the first of its fallbacks there is; the site's default when none is."""
    have = set(available)
    for candidate in fallbacks(tag):
        if candidate in have:
            return candidate
    return canonical(settings.LANGUAGE_CODE)


def site_language(tag: str) -> str:
    """The language of the site's own pages (LANGUAGES, those it has words for) for `tag`."""
    return closest(tag, (canonical(code) for code, _ in settings.LANGUAGES))


def babel_locale(tag: str) -> Locale:
    """Babel's locale for a tag `canonical` accepted (dates, numbers and plurals in it)."""
    return Locale.parse(canonical(tag), sep="-")
