from django.contrib import admin
from django.urls import path

admin.site.site_header = "Renewly"
admin.site.site_title = "Renewly admin"
admin.site.index_title = "Policies, reminders and schedules"

urlpatterns = [
    path("admin/", admin.site.urls),
]
