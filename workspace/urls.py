"""The agents' workspace, at the site's root. Every view here is scoped by book_of(user);
tests/workspace/test_workspace_permissions.py tries each of these URLs as an outsider."""

from django.urls import path

from workspace import views

app_name = "workspace"

urlpatterns = [
    path("", views.notices, name="notices"),
    path("notices.csv", views.notices_csv, name="notices-csv"),
    path("expiries/", views.expiries, name="expiries"),
    path("dashboard/", views.dashboard, name="dashboard"),
    path("calls/", views.call_list, name="calls"),
    path("calls/<int:policy_id>/", views.record_call, name="record-call"),
    path("experiments/", views.experiments, name="experiments"),
    path("policies/<int:policy_id>/", views.policy_detail, name="policy"),
    path("policies/<int:policy_id>/renew/", views.renew_policy, name="renew"),
    path(
        "notifications/<int:notification_id>/retry/",
        views.retry_notification,
        name="retry",
    ),
]
