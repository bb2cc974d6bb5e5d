"""HTTPS behind a trusted proxy: SECURE_* settings from the environment, and what a request
sees under them through Django's whole middleware."""

import json
import os
import subprocess
import sys

import pytest

from tests.workers import BASE_DIR

pytestmark = pytest.mark.django_db

BEHIND_PROXY = ("HTTP_X_FORWARDED_PROTO", "https")


def https_settings(**environment: str) -> dict:
    script = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({name: getattr(s, name) for name in ("
        "'SECURE_PROXY_SSL_HEADER', 'SECURE_SSL_REDIRECT', 'SECURE_HSTS_SECONDS', "
        "'SESSION_COOKIE_SECURE', 'CSRF_COOKIE_SECURE')}))"
    )
    inherited = {name: value for name, value in os.environ.items() if "SECURE" not in name}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=BASE_DIR,
        env={**inherited, "DJANGO_SETTINGS_MODULE": "config.settings", **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_https_settings_are_off_by_default_but_cookies_are_secure_in_production():
    assert https_settings(DEBUG="0", SECRET_KEY="x" * 50) == {
        "SECURE_PROXY_SSL_HEADER": None,
        "SECURE_SSL_REDIRECT": False,
        "SECURE_HSTS_SECONDS": 0,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
    }


def test_https_settings_come_from_the_environment():
    assert https_settings(
        DEBUG="1",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
        SECURE_SSL_REDIRECT="1",
        SECURE_HSTS_SECONDS="3600",
        SECURE_COOKIES="1",
    ) == {
        "SECURE_PROXY_SSL_HEADER": list(BEHIND_PROXY),
        "SECURE_SSL_REDIRECT": True,
        "SECURE_HSTS_SECONDS": 3600,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
    }


@pytest.fixture
def behind_proxy(settings):
    settings.SECURE_PROXY_SSL_HEADER = BEHIND_PROXY
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600


def test_behind_the_proxy_https_requests_get_hsts_and_plain_ones_are_redirected(
    client, behind_proxy
):
    secure = client.get("/accounts/login/", headers={"x-forwarded-proto": "https"})
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=3600"

    plain = client.get("/accounts/login/")
    assert plain.status_code == 301
    assert plain["Location"] == "https://testserver/accounts/login/"


def test_without_the_proxy_setting_a_client_cannot_claim_https(client, settings):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600

    response = client.get("/accounts/login/", headers={"x-forwarded-proto": "https"})

    assert response.status_code == 301
    assert "Strict-Transport-Security" not in response
