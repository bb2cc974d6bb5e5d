from django.urls import path, re_path
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from api import problems, views

app_name = "api"
urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    # The split view serves Swagger UI's set-up script as a file: the CSP allows no inline one.
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api:schema"), name="docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api:schema"), name="redoc"),
    path("agents/<str:email>", views.AgentView.as_view(), name="agent"),
    path("policies", views.PolicyListView.as_view(), name="policies"),
    path("policies/bulk", views.BulkPolicyView.as_view(), name="policies-bulk"),
    path(
        "policies/<str:policy_number>/renewal",
        views.PolicyRenewalView.as_view(),
        name="policy-renewal",
    ),
    path(
        "policies/<str:policy_number>/cancellation",
        views.PolicyCancellationView.as_view(),
        name="policy-cancellation",
    ),
    path(
        "policies/<str:policy_number>/lapse", views.PolicyLapseView.as_view(), name="policy-lapse"
    ),
    path("policies/<str:policy_number>", views.PolicyView.as_view(), name="policy"),
    path("customers/<int:customer_id>/consent", views.ConsentView.as_view(), name="consent"),
    path("notifications", views.NotificationListView.as_view(), name="notifications"),
    re_path(r"^.*$", problems.not_found),
]
