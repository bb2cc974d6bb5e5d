"""Login throttling (django-axes): which address a login comes from, and the page a locked-out
person reads."""

import ipaddress

from axes.helpers import get_cool_off
from django.conf import settings
from django.shortcuts import render
from django.utils import timezone
from django.utils.timesince import timeuntil


def client_ip(request) -> str | None:
    """Behind the trusted proxy (SECURE_PROXY_SSL_HEADER set) every request comes from the
    proxy, so the client is the last X-Forwarded-For entry: the one the proxy added, not one
    a client wrote itself."""
    if settings.SECURE_PROXY_SSL_HEADER:
        added_by_proxy = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(added_by_proxy))
        except ValueError:  # none, or a misconfigured proxy: axes stores an address column
            pass
    return request.META.get("REMOTE_ADDR")


def locked_out(request, original_response=None, credentials=None):
    """axes' lockout response, on /accounts/login/ and /admin/login/ alike. It says neither
    whether the password was right nor which of the account and the address is locked."""
    cool_off = get_cool_off(request)
    now = timezone.now()
    response = render(
        request,
        "registration/locked_out.html",
        {"retry_in": timeuntil(now + cool_off, now)},
        status=429,
    )
    response["Retry-After"] = str(int(cool_off.total_seconds()))
    return response
