"""The dashboard's weekly chart as plain SVG geometry, drawn on the server: no charting library,
no script. The template only places the rectangles computed here."""

from dataclasses import dataclass

from workspace.selectors import Week

WIDTH, HEIGHT = 720, 260
TOP, BOTTOM, LEFT = 16, 40, 36  # room for the labels
# Stacked outcome bar, bottom to top, with the CSS class that colours each part.
OUTCOME_LAYERS = (("delivered", "bar-delivered"), ("sent", "bar-sent"), ("failed", "bar-failed"))


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css_class: str
    title: str


@dataclass(frozen=True)
class WeekChart:
    width: int
    height: int
    bars: list[Bar]
    labels: list[tuple[float, str]]  # (x, text) under the axis
    baseline: float
    top_value: int
    top_y: float
    left: int


def weekly_chart(weeks: list[Week]) -> WeekChart:
    """Per week, an expiries bar and, beside it, the reminders' outcomes stacked."""
    plot_height = HEIGHT - TOP - BOTTOM
    baseline = HEIGHT - BOTTOM
    largest = max(
        [1] + [max(week.expiries, week.delivered + week.sent + week.failed) for week in weeks]
    )
    slot = (WIDTH - LEFT) / max(len(weeks), 1)
    bar_width = slot * 0.38

    def scaled(value: int) -> float:
        return round(value / largest * plot_height, 1)

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
                "bar-expiries",
                f"Week of {label}: {week.expiries} expiries",
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
                        css_class,
                        f"Week of {label}: {value} {name}",
                    )
                )
        if index % 2 == 0:  # every other week, so the labels fit on a phone
            labels.append((round(x + bar_width, 1), label))
    return WeekChart(
        width=WIDTH,
        height=HEIGHT,
        bars=bars,
        labels=labels,
        baseline=baseline,
        top_value=largest,
        top_y=TOP,
        left=LEFT,
    )
