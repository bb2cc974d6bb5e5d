"""Template filters of the workspace: provider errors in plain words (the words themselves
live in notifications.explanations), shares as percentages."""

from django import template

from notifications.explanations import explain_error, explain_event

register = template.Library()


@register.filter
def event_reason(event) -> str:
    return explain_event(event)


@register.filter
def error_reason(last_error: str) -> str:
    return explain_error(last_error)


@register.filter
def percent(share: float | None) -> str:
    """A share as a percentage with one decimal ("62.5 %"), a dash when there is none."""
    return "\u2013" if share is None else f"{share * 100:.1f} %"
