from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_update
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
    path(
        "docs/",
        SpectacularSwaggerSplitView.as_view(
            url_name="api:schema", template_name="api/swagger_ui.html"
        ),
        name="docs",
    ),
    # Redoc styles itself with <style> elements it writes (styled-components), and searches in
    # a worker it makes from a blob: styles and that worker only, never inline script.
    path(
        "redoc/",
        csp_update({"style-src": [UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})(
            SpectacularRedocView.as_view(url_name="api:schema", template_name="api/redoc.html")
        ),
        name="redoc",
    ),
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
