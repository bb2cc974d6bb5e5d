from django.urls import path

from workspace import report_views

app_name = "reports"
urlpatterns = [
    path("", report_views.report_list, name="list"),
    path("<int:report_id>/report.csv", report_views.report_file, {"kind": "csv"}, name="csv"),
    path("<int:report_id>/chart.svg", report_views.report_file, {"kind": "svg"}, name="chart"),
]
