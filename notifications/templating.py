"""The template language of reminders, locked down: admins write the words, and a template may
only format the facts of one reminder that rendering hands it as plain values.

One loop is allowed: `{% for policy in policies %}` over the reminders of a digest (one message
listing several policies), not nested, over nothing else; the list is as long as a batch at
most, so the output stays bounded by the template's size times that.

Its own Engine has no loaders, nothing to `{% load %}`, and only the tags and filters below: no
`include`, `extends`, `debug`, `url` or `csrf_token`, and no `safe` nor `autoescape`, so the
HTML body escapes every value; no filter that pads, repeats or joins, so a short template cannot
write megabytes. `check` refuses, with its line, a template that does not compile, names a value
that does not exist, or cannot format the values it is given; the models validate with it, so a
broken template never reaches a send. Whatever happens while rendering is a TemplateProblem.
"""

import contextvars
import datetime
import functools
import re
from dataclasses import dataclass

from django.core.exceptions import ValidationError
from django.template import Context, Library, TemplateSyntaxError, defaultfilters, defaulttags
from django.template.base import FilterExpression, Node, Template, Variable, VariableNode
from django.template.engine import Engine

# The values a reminder template may use: a name, or a name and its fields. rendering.values_for
# fills in exactly these; SAMPLE_VALUES are of the same kinds, for check to render with.
VARIABLES: dict[str, tuple[str, ...] | None] = {
    "customer": ("name", "email", "phone", "language"),
    "policy": ("policy_number", "product_line", "product_name", "start_date", "expiry_date"),
    "agent": ("name", "email", "phone"),
    "expiry_date": None,
    "expiry_date_text": None,
    "days_left": None,
    "days_left_text": None,
    "lead_days": None,
    "renew_url": None,
    "preferences_url": None,
    "policies": None,  # a digest's policies (a reminder's own alone): only to loop over
}
# The fields of each item of `policies`, as `{% for policy in policies %}` names them.
POLICY_ITEM = (
    *("policy_number", "product_line", "product_name", "expiry_date", "expiry_date_text"),
    *("days_left", "days_left_text", "renew_url"),
)
LOOP_FIELDS = ("counter", "counter0", "revcounter", "revcounter0", "first", "last")
AVAILABLE = ", ".join(
    f"{name}.{field}" if fields else name
    for name, fields in VARIABLES.items()
    for field in (fields or (None,))
)
CONSTANTS = {"True", "False", "None"}  # Django's context has these of its own
SAMPLE_VALUES = {
    "customer": {"name": "Alex Sample", "email": "alex@mail.example", "phone": "+14155550100"}
    | {"language": "en"},
    "policy": {"policy_number": "P-1", "product_line": "auto", "product_name": "car insurance"}
    | {"start_date": datetime.date(2025, 12, 2), "expiry_date": datetime.date(2026, 12, 2)},
    "agent": {"name": "Sam Agent", "email": "sam@agency.example", "phone": ""},
    "expiry_date": datetime.date(2026, 12, 2),
    "expiry_date_text": "December 2, 2026",
    "days_left": 30,
    "days_left_text": "in 30 days",
    "lead_days": 30,
    "renew_url": "mailto:sam@agency.example",
    "preferences_url": "https://renewly.example/preferences/token/",
    "policies": [
        {
            "policy_number": "P-1",
            "product_line": "auto",
            "product_name": "car insurance",
            "expiry_date": datetime.date(2026, 12, 2),
            "expiry_date_text": "December 2, 2026",
            "days_left": 30,
            "days_left_text": "in 30 days",
            "renew_url": "mailto:sam@agency.example",
        },
        {
            "policy_number": "H-2",
            "product_line": "home",
            "product_name": "home insurance",
            "expiry_date": datetime.date(2026, 12, 5),
            "expiry_date_text": "December 5, 2026",
            "days_left": 33,
            "days_left_text": "in 33 days",
            "renew_url": "mailto:sam@agency.example",
        },
    ],
}
MAX_SOURCE_CHARACTERS = 20_000
MAX_RENDERED_CHARACTERS = 100_000

TAGS = {
    "if": defaulttags.do_if,
    "for": defaulttags.do_for,  # over `policies` only, not nested: see _loop_variable
    "firstof": defaulttags.firstof,
    "comment": defaulttags.comment,
    "spaceless": defaulttags.spaceless,
    "filter": defaulttags.do_filter,
    "now": defaulttags.now,
    "templatetag": defaulttags.templatetag,
    "verbatim": defaulttags.verbatim,
}
FILTERS = [
    *("add", "capfirst", "cut", "date", "default", "default_if_none", "divisibleby", "escape"),
    *("force_escape", "length", "linebreaks", "linebreaksbr", "lower", "pluralize", "slugify"),
    *("striptags", "time", "timesince", "timeuntil", "title", "truncatechars", "truncatewords"),
    *("upper", "urlencode", "urlize", "wordcount", "yesno"),
]

# Set while check renders with SAMPLE_VALUES: a filter that cannot format its value says so.
_checking = contextvars.ContextVar("checking_a_reminder_template", default=False)


class TemplateProblem(ValueError):
    """A reminder template cannot be used; the message names the line and what to change."""


def _never_raising(name: str, function):
    """A filter given a value it cannot format (`days_left|date:"H"`) writes nothing, rather
    than failing the reminder; check reports it."""

    @functools.wraps(function)  # keeps is_safe, needs_autoescape and the arguments Django checks
    def formatted(value, *arguments, **options):
        try:
            return function(value, *arguments, **options)
        except Exception as error:
            if _checking.get():
                given = f" with {arguments[0]!r}" if arguments else ""
                raise TemplateProblem(
                    f"the filter {name!r} cannot format {value!r}{given} ({error})."
                ) from None
            return ""

    return formatted


register = Library()
for _name, _compile in TAGS.items():
    register.tag(_name, _compile)
for _name in FILTERS:
    register.filter(_name, _never_raising(_name, defaultfilters.register.filters[_name]))


class ReminderEngine(Engine):
    default_builtins = []  # not Django's tags and filters: only this module's


ENGINE = ReminderEngine(loaders=[], debug=True, builtins=[__name__])


@dataclass(frozen=True)
class CompiledTemplate:
    template: Template
    names: frozenset[str]  # the values it uses ("customer", "preferences_url", ...)

    def render(self, values: dict, *, autoescape: bool) -> str:
        # A copy: `{% firstof ... as name %}` sets a name for the rest of this part only.
        context = Context(dict(values), autoescape=autoescape)
        try:
            text = self.template.render(context)
        except TemplateProblem:
            raise
        except Exception as error:  # RecursionError too: a template nested past all reason
            raise TemplateProblem(f"the template cannot be rendered: {error!r}") from None
        if len(text) > MAX_RENDERED_CHARACTERS:
            raise TemplateProblem(
                f"the template writes {len(text):,} characters, more than the "
                f"{MAX_RENDERED_CHARACTERS:,} a reminder may have."
            )
        return text


@functools.lru_cache(maxsize=256)
def compiled(source: str) -> CompiledTemplate:
    """Parse and check a template once per process; the same few serve every reminder."""
    return check(source)


def check(source: str) -> CompiledTemplate:
    """Compile `source` with the reminder engine, check every value it names and render it with
    sample values, or raise TemplateProblem saying which line is wrong and why."""
    if len(source) > MAX_SOURCE_CHARACTERS:
        raise TemplateProblem(
            f"the template has {len(source):,} characters; a reminder template may have "
            f"{MAX_SOURCE_CHARACTERS:,}."
        )
    try:
        template = ENGINE.from_string(source)
        names = set()
        in_loop = {}  # id(node) -> the loop variable its loop names
        for loop in template.nodelist.get_nodes_by_type(defaulttags.ForNode):
            loop_variable = _loop_variable(loop)
            for node in loop.nodelist_loop.get_nodes_by_type(Node):
                in_loop[id(node)] = loop_variable
        for node in template.nodelist.get_nodes_by_type(Node):
            _check_node(node, loop_variables=set(in_loop.values()))
            for variable in _variables_of(node):
                names.add(
                    _checked(variable, line=node.token.lineno, loop_variable=in_loop.get(id(node)))
                )
    except TemplateSyntaxError as error:
        raise TemplateProblem(_syntax_problem(error)) from None
    except TemplateProblem:
        raise
    except Exception as error:  # Django's own tags raise a few others, and deep nesting this
        raise TemplateProblem(f"the template cannot be read: {error!r}") from None
    checked = CompiledTemplate(template, frozenset(names))
    for autoescape in (False, True):
        token = _checking.set(True)
        try:
            checked.render(SAMPLE_VALUES, autoescape=autoescape)
        finally:
            _checking.reset(token)
    return checked


def _syntax_problem(error: TemplateSyntaxError) -> str:
    line = getattr(error, "template_debug", {}).get("line")
    message = str(error).split(". Did you forget to register or load")[0]
    message = re.sub(r" on line \d+", "", message)
    if "Invalid block tag" in message:
        message += f" (reminder templates have only: {', '.join(TAGS)})"
    elif "Invalid filter" in message:
        message += f" (reminder templates have only: {', '.join(FILTERS)})"
    return f"Line {line}: {message}" if line else message


def _check_node(node: Node, *, loop_variables: set[str]) -> None:
    """What no value check sees: `{% firstof ... as policies %}` would put a text where the
    loop expects the policies (a loop over its characters), and `{{ policies }}` would write
    Python's own view of them; the list is for looping over and counting (|length)."""
    line = node.token.lineno
    alias = getattr(node, "asvar", None)
    if alias and (alias in VARIABLES or alias in loop_variables or alias == "forloop"):
        raise TemplateProblem(f"Line {line}: 'as {alias}' would hide the value {alias}.")
    if isinstance(node, VariableNode):
        expression = node.filter_expression
        printed = isinstance(expression.var, Variable) and expression.var.lookups == ("policies",)
        filters = [function.__name__ for function, _ in expression.filters]
        if printed and filters[:1] != ["length"]:
            raise TemplateProblem(
                f"Line {line}: the policies are listed with {{% for policy in policies %}} "
                "and counted with {{ policies|length }}; they are not written as they are."
            )


def _loop_variable(loop: defaulttags.ForNode) -> str:
    """The one loop a template may have: over `policies`, as it is, with one name, and no loop
    inside (a loop in a loop, or over a text, would multiply what a short template writes)."""
    line = loop.token.lineno
    sequence = loop.sequence
    if (
        not isinstance(sequence.var, Variable)
        or sequence.var.lookups != ("policies",)
        or sequence.filters
        or len(loop.loopvars) != 1
    ):
        raise TemplateProblem(
            f"Line {line}: a loop may only go over policies, one at a time: "
            "{% for policy in policies %}."
        )
    if loop.nodelist_loop.get_nodes_by_type(defaulttags.ForNode):
        raise TemplateProblem(f"Line {line}: a loop may not hold another loop.")
    return loop.loopvars[0]


def _checked(variable: Variable, *, line: int, loop_variable: str | None = None) -> str:
    name, *fields = variable.lookups
    if name in CONSTANTS and not fields:
        return name
    if loop_variable and name == loop_variable:
        if len(fields) == 1 and fields[0] in POLICY_ITEM:
            return "policies"
        raise TemplateProblem(
            f"Line {line}: there is no value {variable.var!r}; each of the policies has "
            f"{', '.join(POLICY_ITEM)}."
        )
    if loop_variable and name == "forloop" and len(fields) == 1 and fields[0] in LOOP_FIELDS:
        return "policies"
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
    elif isinstance(node, defaulttags.ForNode):
        expressions = [node.sequence]
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
