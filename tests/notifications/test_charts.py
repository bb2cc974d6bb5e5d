"""Both charts come out of one SVG writer: well-formed, every text escaped, bars to scale."""

from datetime import date, timedelta
from xml.etree import ElementTree

from notifications.charts import Figure, figures_chart, weekly_chart
from workspace.selectors import Week  # the dashboard's weeks, as the chart gets them

SVG = "{http://www.w3.org/2000/svg}"


def test_the_reports_chart_is_a_file_whose_texts_are_escaped_and_bars_to_scale():
    chart = figures_chart(
        'Ann <&> "Bo", week of 02 Mar 2026',
        [Figure("Sent", 4), Figure("Failed <1>", 2, alarming=True), Figure("Opted out", 0)],
    )
    svg = ElementTree.fromstring(chart)
    assert svg.tag == f"{SVG}svg"
    assert svg.find(f"{SVG}title").text == 'Ann <&> "Bo", week of 02 Mar 2026'
    assert "Failed <1>" in [text.text for text in svg.iter(f"{SVG}text")]
    bars = [(rect.get("width"), rect.get("fill")) for rect in svg.iter(f"{SVG}rect")][1:]
    assert bars == [("380.0", "#0b6bcb"), ("190.0", "#b42318"), ("0.0", "#0b6bcb")]


def test_the_dashboards_chart_stacks_the_outcomes_beside_the_expiries():
    monday = date(2026, 3, 2)
    weeks = [Week(monday, expiries=4, delivered=1, sent=1), Week(monday + timedelta(7))]
    # Placed in a page, the chart names no namespace: HTML gives it.
    inline = str(weekly_chart(weeks)).replace("<svg", f'<svg xmlns="{SVG[1:-1]}"', 1)
    svg = ElementTree.fromstring(inline)
    assert svg.find(f"{SVG}title").text.endswith("2026-03-02 onwards")
    rects = list(svg.iter(f"{SVG}rect"))
    assert [rect.get("class") for rect in rects] == [
        "bar-expiries",
        "bar-delivered",
        "bar-sent",
        "bar-expiries",  # the second week's, empty: no outcome bars over nothing
    ]
    bars = {rect.get("class"): rect for rect in rects[:3]}
    assert bars["bar-expiries"].get("height") == "204.0"  # the tallest: the whole plot
    assert bars["bar-delivered"].find(f"{SVG}title").text == "Week of 02 Mar: 1 delivered"


def test_a_dashboard_with_no_weeks_draws_an_empty_chart():
    assert "<rect" not in weekly_chart([])
