from django.urls import path

from workspace import uploads

app_name = "uploads"
urlpatterns = [
    path("", uploads.upload, name="upload"),
    path("<int:job_id>/", uploads.job, name="job"),
    path("<int:job_id>/progress/", uploads.progress, name="progress"),
    path("<int:job_id>/rejected.csv", uploads.rejected_rows, name="rejected"),
    path("<int:job_id>/rerun/", uploads.rerun, name="rerun"),
]
