"""Renewly's charts, drawn on the server as plain SVG: no charting library, no script. Both
charts are written the same way (escaped text and attributes, bars with a tooltip, one scale):
the dashboard's weekly columns, placed in the page and coloured by the site's CSS, and the
weekly report's horizontal bars, a file that stands alone and is coloured here."""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

SVG_NAMESPACE = "http://www.w3.org/2000/svg"

# --- SVG, written once ----------------------------------------------------------------------


@dataclass(frozen=True)
class Bar:
    """A rectangle of a chart, with the tooltip a browser shows over it."""

    x: float
    y: float
    width: float
    height: float
    title: str = ""
    css_class: str = ""  # coloured by the page's CSS...
    fill: str = ""  # ...or here, in a file that stands alone


def _tag(name: str, content: str | None = None, /, **attributes) -> str:
    """One element; `content` is markup, already escaped (None: an empty element). Attributes
    are keywords, `class_` for class and underscores for hyphens; an empty one is left out."""
    written = "".join(
        f' {key.rstrip("_").replace("_", "-")}="{_attribute(value)}"'
        for key, value in attributes.items()
        if value != ""
    )
    return f"<{name}{written}/>" if content is None else f"<{name}{written}>{content}</{name}>"


def _attribute(value) -> str:
    # Positions are rounded to one decimal by the scale; they are written so.
    return f"{value:.1f}" if isinstance(value, float) else escape(value)


def _text(x: float, y: float, words, **attributes) -> str:
    return _tag("text", escape(words), x=x, y=y, **attributes)


def _bar(bar: Bar) -> str:
    return _tag(
        "rect",
        _tag("title", escape(bar.title)) if bar.title else None,
        x=bar.x,
        y=bar.y,
        width=bar.width,
        height=bar.height,
        class_=bar.css_class,
        fill=bar.fill,
    )


def _scale(largest: int, length: float) -> Callable[[int], float]:
    """From values 0..largest (at least 1) to lengths 0..length, rounded to one decimal."""
    largest = max(largest, 1)
    return lambda value: round(value / largest * length, 1)


def _svg(
    view_width: int, view_height: int, title: str, parts: list[str], *, title_id="", **attributes
) -> str:
    """The SVG element around `parts`, its title first."""
    body = "\n".join([_tag("title", escape(title), id=title_id), *parts])
    view_box = f"0 0 {view_width} {view_height}"
    return _tag("svg", f"\n{body}\n", viewBox=view_box, **attributes)


# --- The dashboard's weeks ------------------------------------------------------------------

WEEKLY_WIDTH, WEEKLY_HEIGHT = 720, 260
TOP, BOTTOM, LEFT = 16, 40, 36  # room for the labels
# Stacked outcome bar, bottom to top, with the CSS class that colours each part.
OUTCOME_LAYERS = (("delivered", "bar-delivered"), ("sent", "bar-sent"), ("failed", "bar-failed"))


class WeekFigures(Protocol):
    """One week of the dashboard (workspace.selectors.Week)."""

    starts_on: date
    expiries: int
    delivered: int
    sent: int
    failed: int


def weekly_chart(weeks: Sequence[WeekFigures]) -> SafeString:
    """Per week, an expiries bar and, beside it, the reminders' outcomes stacked. For the page:
    its size and the bars' colours come from the site's CSS."""
    baseline = WEEKLY_HEIGHT - BOTTOM
    largest = max(
        [1] + [max(week.expiries, week.delivered + week.sent + week.failed) for week in weeks]
    )
    scaled = _scale(largest, WEEKLY_HEIGHT - TOP - BOTTOM)
    slot = (WEEKLY_WIDTH - LEFT) / max(len(weeks), 1)
    bar_width = slot * 0.38
    bars, labels = [], []
    for index, week in enumerate(weeks):
        x = LEFT + index * slot + slot * 0.1
        label = f"{week.starts_on:%d %b}"
        height = scaled(week.expiries)
        bars.append(
            Bar(
                x,
                baseline - height,
                bar_width,
                height,
                title=f"Week of {label}: {week.expiries} expiries",
                css_class="bar-expiries",
            )
        )
        stacked = baseline
        for name, css_class in OUTCOME_LAYERS:
            value = getattr(week, name)
            height = scaled(value)
            stacked -= height
            if value:
                bars.append(
                    Bar(
                        x + bar_width,
                        stacked,
                        bar_width,
                        height,
                        title=f"Week of {label}: {value} {name}",
                        css_class=css_class,
                    )
                )
        if index % 2 == 0:  # every other week, so the labels fit on a phone
            labels.append(
                _text(
                    round(x + bar_width, 1),
                    baseline + 18,
                    label,
                    class_="axis-label",
                    text_anchor="middle",
                )
            )
    since = f", {weeks[0].starts_on:%Y-%m-%d} onwards" if weeks else ""
    parts = [
        _tag("line", x1=LEFT, y1=baseline, x2=WEEKLY_WIDTH, y2=baseline, class_="axis"),
        _text(LEFT - 4, TOP, largest, class_="axis-label", text_anchor="end"),
        _text(LEFT - 4, baseline, 0, class_="axis-label", text_anchor="end"),
        *map(_bar, bars),
        *labels,
    ]
    svg = _svg(
        WEEKLY_WIDTH,
        WEEKLY_HEIGHT,
        f"Expiries and reminder outcomes per week{since}",
        parts,
        title_id="chart-title",
        role="img",
        aria_labelledby="chart-title",
        class_="chart",
    )
    return mark_safe(svg)  # every text and attribute in it went through _tag's escaping


# --- The weekly report's figures ------------------------------------------------------------

FIGURES_WIDTH = 760
LABELS_WIDTH, BARS_WIDTH, ROW_HEIGHT, HEADER_HEIGHT = 300, 380, 30, 44
PLAIN, ALARMING = "#0b6bcb", "#b42318"


@dataclass(frozen=True)
class Figure:
    label: str
    value: int
    alarming: bool = False  # drawn in red


def figures_chart(title: str, figures: Sequence[Figure]) -> str:
    """A horizontal bar per figure, as a self-contained SVG file: no script, no external file,
    its colours in it."""
    scaled = _scale(max([figure.value for figure in figures], default=1), BARS_WIDTH)
    height = HEADER_HEIGHT + ROW_HEIGHT * len(figures) + 10
    parts = [
        _tag("rect", width="100%", height="100%", fill="#ffffff"),
        _text(10, 24, title, font_size=16, font_weight="bold"),
    ]
    for row, figure in enumerate(figures):
        y = HEADER_HEIGHT + row * ROW_HEIGHT
        width = scaled(figure.value)
        parts += [
            _text(10, y + 17, figure.label),
            _bar(
                Bar(
                    LABELS_WIDTH,
                    y + 4,
                    width,
                    18,
                    fill=ALARMING if figure.alarming else PLAIN,
                )
            ),
            _text(LABELS_WIDTH + width + 6, y + 17, figure.value),
        ]
    svg = _svg(
        FIGURES_WIDTH,
        height,
        title,
        parts,
        xmlns=SVG_NAMESPACE,
        width=FIGURES_WIDTH,
        height=height,
        font_family="sans-serif",
        font_size=14,
    )
    return svg + "\n"
