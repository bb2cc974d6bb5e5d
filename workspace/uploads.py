"""Policy uploads in the browser: the upload form, each job's page with its live progress (the
page polls `progress`), the rejected rows as CSV, and running a failed job again. Each view
parses the request and calls one service in policies.import_jobs. Scoped like the workspace
(workspace.selectors.book_of): an agent uploads to and sees only their own book; a user who may
see every book sees every upload, and uploads for any agent with the permission to."""

from django import forms
from django.contrib import messages
from django.core.files.uploadhandler import FileUploadHandler, SkipFile
from django.http import HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from policies import import_jobs
from policies.importers import COLUMNS
from policies.models import ImportJob
from workspace.selectors import Book
from workspace.views import not_allowed, workspace_view

REJECTED_ROWS_SHOWN = 100


class UploadForm(forms.Form):
    file = forms.FileField(
        label="Policy CSV", widget=forms.ClearableFileInput(attrs={"accept": ".csv,text/csv"})
    )


class UploadSizeLimit(FileUploadHandler):
    """Drops an uploaded file once it passes max_bytes, while the request streams: the handlers
    after this one (memory, temporary file) never receive more than the limit."""

    def __init__(self, request, max_bytes: int):
        super().__init__(request)
        self.max_bytes = max_bytes
        self.refused = False

    def receive_data_chunk(self, raw_data: bytes, start: int) -> bytes:
        if start + len(raw_data) > self.max_bytes:
            self.refused = True
            # Not StopUpload(connection_reset=True): a browser shown a reset gets no error page.
            raise SkipFile
        return raw_data

    def file_complete(self, file_size: int) -> None:
        return None


def _jobs_of(book: Book):
    jobs = ImportJob.objects.select_related("agent__user", "uploaded_by")
    return jobs if book.is_everyone else jobs.filter(agent=book.agent)


def _job_for(book: Book, job_id: int) -> ImportJob:
    """The book's job, or 404: another agent's job is not found, not forbidden."""
    return import_jobs.current_state(get_object_or_404(_jobs_of(book), pk=job_id))


@csrf_exempt  # _upload checks it: that check reads the body, and no handler can be added after
@workspace_view
@require_http_methods(["GET", "POST"])
def upload(request, book: Book):
    if request.method == "POST" and not book.may_upload:  # refused before the file is read
        return not_allowed(request, "upload policy files for every agent's book")
    size_limit = UploadSizeLimit(request, import_jobs.max_upload_bytes())
    request.upload_handlers.insert(0, size_limit)
    return _upload(request, book, size_limit)


@csrf_protect
def _upload(request, book: Book, size_limit: UploadSizeLimit):
    posted = request.method == "POST"
    form = UploadForm(request.POST, request.FILES) if posted else UploadForm()
    if size_limit.refused:
        # The file was dropped as it streamed: say why it is missing.
        form.fields["file"].error_messages["required"] = str(import_jobs.UploadTooLargeError())
    if posted and form.is_valid():
        file = form.cleaned_data["file"]
        try:
            job = import_jobs.start_import(
                upload=file, original_name=file.name, uploaded_by=request.user, agent=book.agent
            )
        except import_jobs.ImportJobError as error:
            form.add_error("file", str(error))
        else:
            return redirect("uploads:job", job_id=job.pk)
    return render(
        request,
        "workspace/uploads/upload.html",
        {"form": form, "jobs": _jobs_of(book)[:50], "book": book, "columns": ",".join(COLUMNS)},
    )


@workspace_view
@require_GET
def job(request, book: Book, job_id: int):
    job = _job_for(book, job_id)
    return render(
        request,
        "workspace/uploads/job.html",
        {
            "job": job,
            "rejected_rows": job.rejected_rows[:REJECTED_ROWS_SHOWN],
            "rejected_hidden": max(0, len(job.rejected_rows) - REJECTED_ROWS_SHOWN),
            "can_rerun": book.may_upload and import_jobs.progress_of(job)["can_rerun"],
        },
    )


@workspace_view
@require_GET
def progress(request, book: Book, job_id: int):
    job = _job_for(book, job_id)
    state = import_jobs.progress_of(job)
    state["rejected_csv_url"] = reverse("uploads:rejected", kwargs={"job_id": job.pk})
    return JsonResponse(state, headers={"Cache-Control": "no-store"})


@workspace_view
@require_GET
def rejected_rows(request, book: Book, job_id: int):
    job = _job_for(book, job_id)
    response = HttpResponse(import_jobs.rejected_rows_csv(job), content_type="text/csv")
    response["Content-Disposition"] = f'attachment; filename="rejected-rows-{job.pk}.csv"'
    return response


@workspace_view
@require_POST
def rerun(request, book: Book, job_id: int):
    job = _job_for(book, job_id)
    if not book.may_upload:
        return not_allowed(request, "run imports again")
    try:
        import_jobs.rerun_import(job=job)
    except import_jobs.ImportJobError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, "The import runs again.")
    return redirect("uploads:job", job_id=job.pk)
