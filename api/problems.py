"""Every error the API answers is an RFC 9457 problem (application/problem+json): a title, the
status, a detail a person can act on, and for invalid input the errors, each with a JSON
pointer to the field at fault. Nothing the API refuses answers with a traceback."""

from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions
from rest_framework.views import exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"
TITLES = {
    400: "Invalid request",
    401: "Not authenticated",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    422: "Unprocessable request",
    429: "Too many requests",
}


class Problem(exceptions.APIException):
    """An error with RFC 9457's members: `errors` lists [{"pointer", "detail"}]."""

    def __init__(self, status_code: int, detail: str, errors: list[dict] | None = None):
        self.status_code = status_code
        self.errors = errors or []
        super().__init__(detail)


def problem(status_code: int, detail: str, *, errors: list[dict] | None = None, **members):
    body = {
        "type": "about:blank",
        "title": TITLES.get(status_code, "Error"),
        "status": status_code,
        "detail": detail,
        **members,
    }
    if errors:
        body["errors"] = errors
    return body


def problem_exception_handler(exc, context):
    # DRF answers Django's own two as its own; they are described as those.
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    response = exception_handler(exc, context)
    if response is None:
        return None  # not an API error: Django's own handling (and a 500 for a bug)
    request = context.get("request")
    errors = exc.errors if isinstance(exc, Problem) else []
    if isinstance(exc, exceptions.ValidationError):
        errors = list(_pointers(exc.detail, ""))
        detail = "; ".join(f"{e['pointer'] or '/'}: {e['detail']}" for e in errors[:5])
    else:
        detail = str(exc.detail) if not isinstance(exc.detail, list | dict) else str(exc)
    response.data = problem(
        response.status_code,
        detail,
        errors=errors,
        instance=request.path if request else None,
    )
    response.content_type = PROBLEM_CONTENT_TYPE
    return response


def _pointers(detail, prefix: str):
    """(pointer, message) for each leaf of DRF's nested validation errors."""
    if isinstance(detail, dict):
        for name, inner in detail.items():
            where = prefix if name == "non_field_errors" else f"{prefix}/{_escape(str(name))}"
            yield from _pointers(inner, where)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            for item in detail:
                yield {"pointer": prefix, "detail": str(item)}
        else:
            for index, inner in enumerate(detail):
                yield from _pointers(inner, f"{prefix}/{index}")
    else:
        yield {"pointer": prefix, "detail": str(detail)}


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@csrf_exempt  # like every API view: keys, not cookies; else a PUT here answers CSRF's HTML 403
def not_found(request, *args, **kwargs):
    """Any /api/ path the API does not have."""
    body = problem(404, f"There is no API endpoint at {request.path}.", instance=request.path)
    return JsonResponse(body, status=404, content_type=PROBLEM_CONTENT_TYPE)
