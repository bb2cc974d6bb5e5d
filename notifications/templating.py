"""The template language of reminders, locked down: admins write the words, and a template may
only format the facts of one reminder that rendering hands it as plain values.

Its own Engine has no loaders, nothing to `{% load %}`, and only the tags and filters below: no
`include`, `extends`, `debug`, `url` or `csrf_token`, and no `safe` nor `autoescape`, so the
HTML body escapes every value. `check` refuses, with its line, a template that does not compile
or names a value that does not exist; the models validate with it, so a broken template never
reaches a send.
"""

import functools
import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.template import Context, Library, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import FilterExpression, Node, Template, Variable, VariableNode
from django.template.engine import Engine

# The values a reminder template may use: a name, or a name and its fields. rendering.values_for
# fills in exactly these.
VARIABLES: dict[str, tuple[str, ...] | None] = {
    "customer": ("name", "email", "phone", "language"),
    "policy": ("policy_number", "product_line", "start_date", "expiry_date"),
    "agent": ("name", "email", "phone"),
    "expiry_date": None,
    "expiry_date_text": None,
    "days_left": None,
    "lead_days": None,
    "renew_url": None,
    "preferences_url": None,
}
AVAILABLE = ", ".join(
    f"{name}.{field}" if fields else name
    for name, fields in VARIABLES.items()
    for field in (fields or (None,))
)

TAGS = {
    "if": defaulttags.do_if,
    "firstof": defaulttags.firstof,
    "comment": defaulttags.comment,
    "spaceless": defaulttags.spaceless,
    "filter": defaulttags.do_filter,
    "now": defaulttags.now,
    "templatetag": defaulttags.templatetag,
    "verbatim": defaulttags.verbatim,
}
FILTERS = [
    *("add", "capfirst", "center", "cut", "date", "default", "default_if_none", "divisibleby"),
    *("escape", "first", "floatformat", "force_escape", "join", "last", "length", "linebreaks"),
    *("linebreaksbr", "ljust", "lower", "phone2numeric", "pluralize", "rjust", "slugify"),
    *("stringformat", "striptags", "time", "timesince", "timeuntil", "title", "truncatechars"),
    *("truncatewords", "upper", "urlencode", "urlize", "wordcount", "wordwrap", "yesno"),
]

register = Library()
for _name, _compile in TAGS.items():
    register.tag(_name, _compile)
for _name in FILTERS:
    register.filter(_name, defaultfilters.register.filters[_name])


class ReminderEngine(Engine):
    default_builtins = []  # not Django's tags and filters: only this module's


ENGINE = ReminderEngine(loaders=[], debug=True, builtins=[__name__])


class TemplateProblem(ValueError):
    """A reminder template cannot be used; the message names the line and what to change."""


@dataclass(frozen=True)
class CompiledTemplate:
    template: Template
    names: frozenset[str]  # the values it uses ("customer", "preferences_url", ...)

    def render(self, values: dict, *, autoescape: bool) -> str:
        return self.template.render(Context(values, autoescape=autoescape))


@functools.lru_cache(maxsize=256)
def compiled(source: str) -> CompiledTemplate:
    """Parse and check a template once per process; the same few serve every reminder."""
    return check(source)


def check(source: str) -> CompiledTemplate:
    """Compile `source` with the reminder engine and check every value it names, or raise
    TemplateProblem saying which line is wrong and why."""
    try:
        template = ENGINE.from_string(source)
    except TemplateSyntaxError as error:
        raise TemplateProblem(_syntax_problem(error)) from None
    names = set()
    for node in template.nodelist.get_nodes_by_type(Node):
        for variable in _variables_of(node):
            names.add(_checked(variable, line=node.token.lineno))
    return CompiledTemplate(template, frozenset(names))


def _syntax_problem(error: TemplateSyntaxError) -> str:
    line = getattr(error, "template_debug", {}).get("line")
    message = str(error).split(". Did you forget to register or load")[0]
    message = re.sub(r" on line \d+", "", message)
    if "Invalid block tag" in message:
        message += f" (reminder templates have only: {', '.join(TAGS)})"
    elif "Invalid filter" in message:
        message += " (see Django's built-in filters; safe and the like are not available)"
    return f"Line {line}: {message}" if line else message


def _checked(variable: Variable, *, line: int) -> str:
    name, *fields = variable.lookups
    if name in VARIABLES:
        known_fields = VARIABLES[name]
        if known_fields is None and not fields:
            return name
        if known_fields and len(fields) == 1 and fields[0] in known_fields:
            return name
    raise TemplateProblem(
        f"Line {line}: there is no value {variable.var!r}; a template can use {AVAILABLE}."
    )


def _variables_of(node: Node):
    """The looked-up variables (not literals) of one node's expressions."""
    if isinstance(node, VariableNode):
        expressions = [node.filter_expression]
    elif isinstance(node, defaulttags.IfNode):
        expressions = [
            expression
            for condition, _ in node.conditions_nodelists
            for expression in _expressions_of_condition(condition)
        ]
    elif isinstance(node, defaulttags.FirstOfNode):
        expressions = node.vars
    elif isinstance(node, defaulttags.FilterNode):
        # Its own expression filters the block's output, named "var": only the filters' arguments
        # can name a value.
        yield from _argument_variables(node.filter_expr)
        return
    else:
        return
    for expression in expressions:
        if isinstance(expression.var, Variable) and expression.var.lookups:
            yield expression.var
        yield from _argument_variables(expression)


def _argument_variables(expression: FilterExpression):
    for _, arguments in expression.filters:
        for is_variable, argument in arguments:
            if is_variable and argument.lookups:
                yield argument


def _expressions_of_condition(condition):
    """An {% if %} condition is a tree of operators over literals that hold expressions."""
    if condition is None:  # {% else %}
        return
    if isinstance(condition, defaulttags.TemplateLiteral):
        yield condition.value
        return
    for operand in (getattr(condition, "first", None), getattr(condition, "second", None)):
        if operand is not None:
            yield from _expressions_of_condition(operand)


def validate(source: str) -> None:
    """A model field's validator: the admin's form shows the problem next to the field."""
    try:
        check(source)
    except TemplateProblem as problem:
        raise ValidationError(str(problem), code="invalid_template") from None
