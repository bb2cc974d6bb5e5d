import importlib
import os
import socket
from urllib.parse import urlsplit

import pytest
from django.apps import apps as django_apps
from django.http import HttpRequest
from django.test import Client

from events import outbox
from notifications import leases
from tests.factories import make_agent


def service_reachable(url: str, timeout: float = 2.0) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port), timeout=timeout):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def require_service():
    """Skip a test whose server is down on a developer's machine; fail it in CI, where the
    servers are part of the contract and a skip would hide a broken run."""

    def require(name: str, url: str) -> str:
        if not service_reachable(url):
            message = f"{name} is not reachable at {urlsplit(url).netloc}"
            if os.environ.get("CI"):
                pytest.fail(message + " (CI requires it)")
            pytest.skip(message)
        return url

    return require


@pytest.fixture
def agent(db):
    return make_agent("agent", "agent@agency.example")


@pytest.fixture
def uploads_dir(settings, tmp_path):
    """Uploaded policy files kept in this test's own directory."""
    settings.UPLOADS_DIR = tmp_path / "uploads"
    return settings.UPLOADS_DIR


@pytest.fixture
def seeded_defaults(db):
    """The data migration's defaults (templates, rules, the daily scan's PeriodicTask), applied
    again: a transactional test's flush removes them for the tests that follow it."""
    for migration, seed in [
        ("0002_defaults", "create_defaults"),
        ("0003_template_languages_and_html", "update_default_templates"),
        ("0018_any_language_and_plain_wording", "reword_shipped_templates"),
        ("0020_sms_renew_link", "add_renew_link"),
        ("0021_german_french_portuguese", "add_translations"),
        ("0024_digests", "create_digest_templates"),
        ("0026_digests_in_more_languages", "add_translations"),
    ]:
        module = importlib.import_module(f"notifications.migrations.{migration}")
        getattr(module, seed)(django_apps, schema_editor=None)


@pytest.fixture
def staff_roles(db):
    """The role groups of migration notifications 0011 (with what later migrations granted
    them), made again: a transactional test's flush removes them for the tests that follow it."""
    module = importlib.import_module("notifications.migrations.0011_staff_roles")
    module.create_roles(django_apps, schema_editor=None)
    later = importlib.import_module("notifications.migrations.0014_outage_resilience")
    later.grant_breaker_permissions(django_apps, schema_editor=None)
    integration = importlib.import_module("api.migrations.0002_integration_roles")
    integration.grant_integration_permissions(django_apps, schema_editor=None)
    lines = importlib.import_module("notifications.migrations.0019_product_line_roles")
    lines.grant_product_line_permissions(django_apps, schema_editor=None)
    outcomes = importlib.import_module("notifications.migrations.0029_outcome_roles")
    outcomes.grant_outcome_permissions(django_apps, schema_editor=None)
    call_list = importlib.import_module("notifications.migrations.0031_call_list_defaults")
    call_list.grant_call_permissions(django_apps, schema_editor=None)
    experiments = importlib.import_module("notifications.migrations.0032_template_experiments")
    experiments.grant_experiment_permissions(django_apps, schema_editor=None)
    return module.ROLES


@pytest.fixture(autouse=True)
def test_client_login_brings_a_request(monkeypatch):
    """axes checks each authenticate() against the client it came from, and refuses one with no
    request; the test client's login() has none, so it gets an empty one, as axes advises."""
    login = Client.login

    def login_with_request(self, **credentials):
        return login(self, request=HttpRequest(), **credentials)

    monkeypatch.setattr(Client, "login", login_with_request)


@pytest.fixture(autouse=True)
def a_lease_of_its_own(monkeypatch):
    """Each test's sends claim under a lease of their own: the process keeps its lease's id
    from test to test, and a row an earlier test's connection may still hold is not renewed."""
    monkeypatch.setattr(leases, "_lease", leases.ProcessLease())


@pytest.fixture(autouse=True)
def subscriptions_read_afresh():
    """Each test reads the events' subscriptions from its own database: a process keeps them
    for EVENTS_SUBSCRIPTIONS_REFRESH_SECONDS, and a flush or a rollback sends no signal."""
    outbox.forget_subscribers()
