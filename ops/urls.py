"""The probes' paths. ProbeMiddleware answers them (ahead of the Host check) by resolving a
request against this URLconf; config/urls.py includes it so that they reverse like any page."""

from django.urls import path

from ops import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("metrics", views.metrics_view, name="metrics"),
]
