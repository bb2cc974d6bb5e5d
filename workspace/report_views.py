"""The weekly reports in the workspace: the list, and each report's CSV and chart, served by
these views (never as public files) to those whose book the report covers. Staff see every
agent's and the all-agents reports; an agent their own."""

from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from notifications.models import WeeklyReport
from notifications.reports import FIGURES, LABELS, report_path
from workspace.selectors import Book
from workspace.views import workspace_view

LISTED = 200


def _reports_of(book: Book):
    reports = WeeklyReport.objects.select_related("agent__user")
    return reports if book.is_everyone else reports.filter(agent=book.agent)


@workspace_view
@require_GET
def report_list(request, book: Book):
    return render(
        request,
        "workspace/reports/list.html",
        {
            "reports": _reports_of(book)[:LISTED],
            "figures": [(name, LABELS[name]) for name in FIGURES],
        },
    )


@workspace_view
@require_GET
def report_file(request, book: Book, report_id: int, kind: str):
    report = get_object_or_404(_reports_of(book), pk=report_id)
    name = report.csv_name if kind == "csv" else report.chart_name
    path = report_path(name)
    if not path.is_file():
        raise Http404("The report's file is missing.")
    who = f"agent-{report.agent_id}" if report.agent_id else "all-agents"
    return FileResponse(
        open(path, "rb"),  # FileResponse closes it
        as_attachment=kind == "csv",
        filename=f"renewly-report-{report.week_start.isoformat()}-{who}.{kind}",
        content_type="text/csv" if kind == "csv" else "image/svg+xml",
    )
