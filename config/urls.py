from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from notifications import views, webhooks

admin.site.site_header = "Renewly"
admin.site.site_title = "Renewly admin"
admin.site.index_title = "Policies, reminders and schedules"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("api.urls")),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("unsubscribe/<str:token>/", views.one_click_unsubscribe, name="one-click-unsubscribe"),
    path("preferences/<str:token>/", views.customer_preferences, name="customer-preferences"),
    path("webhooks/twilio/status/", webhooks.twilio_status, name="twilio-status"),
    path("webhooks/twilio/inbound/", webhooks.twilio_inbound, name="twilio-inbound"),
    path("uploads/", include("workspace.upload_urls")),
    path("reports/", include("workspace.report_urls")),
    # /healthz, /readyz, /metrics: answered ahead of the Host check by ops' ProbeMiddleware.
    path("", include("ops.urls")),
    # The agents' workspace is the site's home page.
    path("", include("workspace.urls")),
]
if settings.ANYMAIL["WEBHOOK_SECRET"]:
    # anymail's tracking webhooks, e.g. /anymail/postmark/tracking/, behind basic auth. Without
    # a secret anymail would accept anyone's events, so they are not served at all.
    urlpatterns.append(path("anymail/", include((webhooks.counted_anymail_urls(), "anymail"))))
