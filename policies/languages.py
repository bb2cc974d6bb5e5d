"""Customers' languages: any language tag the Unicode CLDR knows (through Babel), such as de, fr,
pt-BR or zh-Hans, whether or not Renewly has words in it yet. A customer's language is a wish
about how to be written to, never a reason to refuse their policy: what is written in which
language, and why, is decided by `fallbacks`, once, for messages and pages alike."""

from collections.abc import Iterable
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

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
    the broader ones it belongs to (zh-Hant-TW, zh-Hant, zh), then the site's default
    (LANGUAGE_CODE)."""
    try:
        chain = [canonical(tag), *broader(tag)]
    except UnknownLanguage:
        chain = []
    default = canonical(settings.LANGUAGE_CODE)
    return chain + ([default] if default not in chain else [])


def broader(tag: str) -> list[str]:
    """The languages a tag belongs to, narrowest first: pt-BR → [pt]; zh-Hant-TW → [zh-Hant,
    zh]."""
    parts = canonical(tag).split("-")
    return ["-".join(parts[:end]) for end in range(len(parts) - 1, 0, -1)]


def closest(tag: str, available: Iterable[str]) -> str:
    """Of the `available` languages (canonical tags), the one to write in to a reader of
    `tag`: the first of its fallbacks there is; the site's default when none is."""
    have = set(available)
    for candidate in fallbacks(tag):
        if candidate in have:
            return candidate
    return canonical(settings.LANGUAGE_CODE)


def by_language(items: Iterable) -> dict:
    """Items that have a `language` (translations, names, contents), by its canonical tag; one
    stored in a form no longer known (Babel upgraded, a shell's insert) is left out, not an
    error that would stop every reminder of its template."""
    found = {}
    for item in items:
        try:
            found[canonical(item.language)] = item
        except UnknownLanguage:
            continue
    return found


def site_language(tag: str) -> str:
    """The language of the site's own pages (LANGUAGES, those it has words for) for `tag`."""
    return closest(tag, (canonical(code) for code, _ in settings.LANGUAGES))


def babel_locale(tag: str) -> Locale:
    """Babel's locale for a tag `canonical` accepted (dates, numbers and plurals in it)."""
    return Locale.parse(canonical(tag), sep="-")


class LanguageTagFormField(forms.CharField):
    def to_python(self, value):
        return tidied(super().to_python(value))


class CanonicalLanguageField(models.CharField):
    """A language a translation, a name or a content is written in, stored in its canonical
    form (pt_br is pt-BR) by forms and full_clean alike: so that the unique language of each
    row is checked as stored, and two spellings of one language are one language."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", MAX_LENGTH)
        kwargs.setdefault("validators", [validate_language])
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        kwargs.pop("validators", None)
        if kwargs.get("max_length") == MAX_LENGTH:
            kwargs.pop("max_length")
        return name, path, args, kwargs

    def to_python(self, value):
        return tidied(super().to_python(value)) if value else value

    def formfield(self, **kwargs):
        return super().formfield(**{"form_class": LanguageTagFormField, **kwargs})
