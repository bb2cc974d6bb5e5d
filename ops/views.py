"""The probes machines call: /healthz (the process answers), /readyz (it can do its work) and
/metrics (Prometheus). Answered ahead of the Host check by ops.middleware.ProbeMiddleware."""

import hmac

from django.conf import settings
from django.http import Http404, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ops import health, metrics


@never_cache
@require_safe
def healthz(request):
    return JsonResponse({"status": "alive"})


@never_cache
@require_safe
def readyz(request):
    """Anyone may ask whether each check passes (and which passes but is degraded: a paused
    provider, a failing policy feed); only a caller bearing METRICS_TOKEN reads how long each
    took and why (the last scan's time, say)."""
    checks = health.run_checks()
    failing = [name for name, result in checks.items() if not result["ok"]]
    degraded = [name for name, result in checks.items() if result["degraded"]]
    if not bears_metrics_token(request):
        checks = {name: {"ok": result["ok"]} for name, result in checks.items()}
    return JsonResponse(
        {
            "status": "not ready" if failing else "ready",
            "failing": failing,
            "degraded": degraded,
            "checks": checks,
        },
        status=503 if failing else 200,
    )


def metrics_view(request):
    """Prometheus' text format, for a scraper bearing METRICS_TOKEN."""
    if not settings.METRICS_TOKEN:
        raise Http404("METRICS_TOKEN is not set.")
    if not bearer_token(request):
        response = HttpResponse("A bearer token is required.", status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if not bears_metrics_token(request):
        return HttpResponse("Wrong token.", status=403)
    return HttpResponse(generate_latest(metrics.registry()), content_type=CONTENT_TYPE_LATEST)


def bearer_token(request) -> str:
    """The token of an `Authorization: Bearer <token>` header; "" without one."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def bears_metrics_token(request) -> bool:
    token = bearer_token(request)
    expected = settings.METRICS_TOKEN
    return bool(expected and token) and hmac.compare_digest(token.encode(), expected.encode())
