"""The agents' workspace. Thin views: each reads the user's book (workspace.selectors.book_of,
the one scoping rule), calls one selector or service, and renders."""

from datetime import date
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_date
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from notifications import calls, services
from notifications import retention as retention_figures
from notifications.charts import weekly_chart
from policies.services import RenewalError
from workspace import selectors
from workspace.exports import notice_csv_lines
from workspace.forms import ExpiryFilterForm, NoticeFilterForm, RenewForm, RetentionPeriodForm


def not_allowed(request, action: str):
    """A user who may see this part of the book but not act on it."""
    return render(request, "workspace/not_allowed.html", {"action": action}, status=403)


def workspace_view(view):
    """Log in first; then the view gets the user's book, or a user with no book (neither an
    agent nor allowed to see every book) gets a page that says so, with no data."""

    @login_required
    @wraps(view)
    def with_book(request, *args, **kwargs):
        book = selectors.book_of(request.user)
        if book is None:
            return render(request, "workspace/no_book.html", status=403)
        return view(request, book, *args, **kwargs)

    # Marks the view for tests/workspace/test_workspace_permissions.py, which tries every one.
    with_book.scoped_by_book = True
    return with_book


@workspace_view
@require_GET
def notices(request, book):
    form = NoticeFilterForm(request.GET, product_lines=selectors.product_lines(book))
    page = selectors.keyset_page(
        selectors.pending_notices(book, form.filters()),
        date_field="due_on",
        after=request.GET.get("after", ""),
        before=request.GET.get("before", ""),
    )
    return render(
        request,
        "workspace/notices.html",
        {"book": book, "form": form, "page": page, "query": _query_without_cursor(request)},
    )


@workspace_view
@require_GET
def notices_csv(request, book):
    form = NoticeFilterForm(request.GET, product_lines=selectors.product_lines(book))
    response = StreamingHttpResponse(
        notice_csv_lines(selectors.pending_notices(book, form.filters())),
        content_type="text/csv; charset=utf-8",
    )
    filename = f"renewly-notices-{timezone.localdate():%Y-%m-%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@workspace_view
@require_GET
def expiries(request, book):
    form = ExpiryFilterForm(request.GET, product_lines=selectors.product_lines(book))
    form.is_valid()  # an invalid field is left out of cleaned_data: it narrows nothing
    page = selectors.keyset_page(
        selectors.upcoming_expiries(
            book,
            today=timezone.localdate(),
            search=form.cleaned_data.get("q", ""),
            product_line=form.cleaned_data.get("product_line", ""),
        ),
        date_field="expiry_date",
        after=request.GET.get("after", ""),
        before=request.GET.get("before", ""),
    )
    return render(
        request,
        "workspace/expiries.html",
        {
            "book": book,
            "form": form,
            "page": page,
            "days": selectors.UPCOMING_DAYS,
            "query": _query_without_cursor(request),
        },
    )


@workspace_view
@require_GET
def policy_detail(request, book, policy_id: int):
    policy = get_object_or_404(
        book.policies.select_related("customer", "agent__user"), pk=policy_id
    )
    return render(
        request,
        "workspace/policy_detail.html",
        {
            "book": book,
            "policy": policy,
            "timeline": selectors.policy_timeline(policy),
            "outcomes": policy.outcomes.select_related("last_touch_template", "last_call"),
            "calls": calls.policy_calls(policy),
            "call_outcomes": calls.Outcome.choices,
            "renew_form": RenewForm(),
        },
    )


@workspace_view
@require_POST
def renew_policy(request, book, policy_id: int):
    policy = get_object_or_404(book.policies, pk=policy_id)
    if not book.may_renew:
        return not_allowed(request, "mark policies renewed")
    form = RenewForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Give the new expiry date as YYYY-MM-DD.")
    else:
        new_expiry_date = form.cleaned_data["new_expiry_date"]
        try:
            cancelled = services.renew_policy(policy=policy, new_expiry_date=new_expiry_date)
        except RenewalError as error:
            messages.error(request, str(error))
        else:
            messages.success(
                request,
                f"{policy.policy_number} renewed to {new_expiry_date:%Y-%m-%d}; "
                f"{cancelled} pending reminder(s) about the old expiry cancelled.",
            )
    return redirect("workspace:policy", policy_id=policy.pk)


@workspace_view
@require_POST
def retry_notification(request, book, notification_id: int):
    notification = get_object_or_404(book.notifications, pk=notification_id)
    if not book.may_retry:
        return not_allowed(request, "retry failed notices")
    try:
        services.retry_failed(notification=notification)
    except services.RetryError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"Notice {notification.pk} is queued to be sent again.")
    return redirect(
        _safe_next(request)
        or reverse("workspace:policy", kwargs={"policy_id": notification.policy_id})
    )


@workspace_view
@require_GET
def call_list(request, book):
    page = selectors.keyset_page(
        selectors.needs_a_call(book, today=timezone.localdate()),
        date_field="expiry_date",
        after=request.GET.get("after", ""),
        before=request.GET.get("before", ""),
    )
    return render(
        request,
        "workspace/calls.html",
        {
            "book": book,
            "page": page,
            "entries": calls.entries(page.rows),
            "call_outcomes": calls.Outcome.choices,
            "days": calls.CallListRule.current().days_before_expiry,
            "query": _query_without_cursor(request),
        },
    )


@workspace_view
@require_POST
def record_call(request, book, policy_id: int):
    policy = get_object_or_404(book.policies.select_related("customer"), pk=policy_id)
    if not book.may_call:
        return not_allowed(request, "record calls")
    try:
        call = calls.record_call(
            policy=policy,
            outcome=request.POST.get("outcome", ""),
            # The number the page showed: an import may have changed it since.
            phone=request.POST.get("phone"),
            term=_posted_date(request, "expiry_date"),
            called_by=request.user,
            note=request.POST.get("note", ""),
        )
    except calls.CallError as error:
        messages.error(request, str(error))
    else:
        messages.success(
            request,
            f"{policy.policy_number}: {call.get_outcome_display().lower()} recorded.",
        )
    return redirect(_safe_next(request) or reverse("workspace:calls"))


@workspace_view
@require_GET
def dashboard(request, book):
    today = timezone.localdate()
    summary = selectors.dashboard(book, today=today)
    period = RetentionPeriodForm(request.GET)
    days = period.days()
    return render(
        request,
        "workspace/dashboard.html",
        {
            "book": book,
            "summary": summary,
            "chart": weekly_chart(summary.weeks),
            "period": period,
            "days": days,
            "retention": selectors.retention(book, today=today, days=days),
            "few": retention_figures.FEW,
        },
    )


@workspace_view
@require_GET
def experiments(request, book):
    return render(
        request,
        "workspace/experiments.html",
        {"book": book, "results": selectors.experiment_results(book)},
    )


def _query_without_cursor(request) -> str:
    """The filters in the query string, for the pager's links to carry on."""
    query = request.GET.copy()
    query.pop("after", None)
    query.pop("before", None)
    return query.urlencode()


def _posted_date(request, name: str) -> date | None:
    """A date the form posted, or None when it posted none or no real date."""
    try:
        return parse_date(request.POST.get(name, ""))
    except ValueError:  # well formed, but no such day
        return None


def _safe_next(request) -> str:
    target = request.POST.get("next", "")
    allowed = url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )
    return target if allowed else ""
