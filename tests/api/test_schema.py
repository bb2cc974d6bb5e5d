"""The integration API against its own OpenAPI schema: the schema it serves is valid OpenAPI 3 and
names every endpoint; its docs pages load from our own static files under the site's
Content-Security-Policy; and schemathesis, fuzzing every operation with valid and invalid input,
finds no 5xx and no answer the schema does not describe (status, media type and body; problems
are validated as the application/problem+json the schema documents for every 4xx).

How the fuzzer reaches the API: in-process, through Django's WSGI application
(schemathesis.openapi.from_wsgi), on a `transaction=True` database. A live server would add a
thread and a socket for nothing; the in-process call runs the same middleware, URLconf and
views. The database must be transactional, not the usual per-test transaction: the WSGI
handler, unlike Django's test client, closes a connection left outside autocommit at the end of
each request, and a database error inside one shared transaction would poison every request
after it. With autocommit each request commits or rolls back on its own, as in production.

The schema is loaded as the module is collected (its view reads no database), not through
schemathesis.pytest.from_fixture, whose lazy loader sets `request.node._nodeid`, which pytest 9
no longer has. Each operation is then a test of its own, with a fresh database and key; the key
goes with each call because schemathesis builds its coverage-phase cases at collection.

405s for methods an operation lacks, and 415s for other media types, are schemathesis' own
probes, judged by it (the schema documents neither, as drf-spectacular does not); 429 is
switched off, so that every request reaches a view.
"""

import json
import re
from html.parser import HTMLParser

import hypothesis
import pytest
import schemathesis
from django.contrib.staticfiles import finders
from django.core.wsgi import get_wsgi_application
from django.templatetags.static import static
from django.test import Client
from django.urls import URLPattern
from django.utils import timezone
from hypothesis import strategies as st
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from api import urls as api_urls
from api.models import ApiKey
from tests.factories import make_notification, two_books

SCHEMA_URL = "/api/v1/schema/?format=json"
PREFIX = "/api/v1/"
DOCS_PAGES = ["/api/v1/docs/", "/api/v1/redoc/"]
# Per operation, with valid and with invalid input: enough to find the odd value, few enough
# to keep this file near a minute on two cores. A fixed seed: CI fuzzes what a developer did.
EXAMPLES_PER_OPERATION = 20
SEED = 13
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]


def schema_paths_of(patterns, prefix: str = PREFIX) -> set[str]:
    """api/urls.py's routes as OpenAPI paths ("policies/<str:policy_number>" ->
    "/api/v1/policies/{policy_number}"), without the schema, its docs and the catch-all."""
    paths = set()
    for pattern in patterns:
        assert isinstance(pattern, URLPattern)
        route = str(pattern.pattern)
        if pattern.name in {"schema", "docs", "redoc"} or route.startswith("^"):
            continue
        paths.add(prefix + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))
    return paths


# --- The schema -----------------------------------------------------------------------------


def served_schema() -> dict:
    response = Client().get(SCHEMA_URL)
    assert response.status_code == 200
    return json.loads(response.content)


def test_the_served_schema_is_valid_openapi_3_and_names_every_endpoint():
    schema = served_schema()

    validate(schema)
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == schema_paths_of(api_urls.urlpatterns)
    for pattern in api_urls.urlpatterns:
        view = getattr(pattern.callback, "view_class", None)
        if view is None or pattern.name in {"schema", "docs", "redoc"}:
            continue
        [path] = schema_paths_of([pattern])
        methods = {m for m in view.http_method_names if hasattr(view, m)} - {"options", "head"}
        assert set(schema["paths"][path]) == methods, path


def test_every_error_the_schema_documents_is_a_problem_document():
    schema = served_schema()

    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                media_types = set(response.get("content", {}))
                if status.startswith(("4", "5")):
                    assert media_types == {"application/problem+json"}, (method, path, status)
                else:
                    assert media_types == {"application/json"}, (method, path, status)
            assert "401" in operation["responses"], (method, path)


# --- The docs pages ---------------------------------------------------------------------------


class PageAssets(HTMLParser):
    """What a page loads and runs: script and stylesheet addresses, inline scripts and styles."""

    def __init__(self):
        super().__init__()
        self.addresses: list[str] = []
        self.inline_scripts: list[dict] = []
        self.inline_styles: list[dict] = []
        self._open: tuple[str, dict] | None = None

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        for name in ("src", "href"):
            if attributes.get(name) and tag in {"script", "link", "img", "iframe"}:
                self.addresses.append(attributes[name])
        if tag in {"script", "style"}:
            self._open = (tag, attributes)

    def handle_data(self, data):
        if self._open and data.strip():
            tag, attributes = self._open
            found = self.inline_scripts if tag == "script" else self.inline_styles
            found.append({**attributes, "body": data})

    def handle_endtag(self, tag):
        self._open = None


@pytest.mark.parametrize("page", DOCS_PAGES)
def test_the_docs_pages_load_only_our_own_assets_under_the_csp(client, page):
    response = client.get(page)

    assert response.status_code == 200
    policy = response.headers["Content-Security-Policy"]
    assets = PageAssets()
    assets.feed(response.content.decode())
    assert assets.addresses, "the page loads its viewer"
    for address in assets.addresses:
        if address.startswith("data:"):
            continue  # an empty favicon, no request at all
        assert address.startswith((static(""), page)), f"{address} is not one of our own"
        if address.startswith(static("")):
            # collectstatic gathers what the finders find (tests run without collected files).
            assert finders.find(address.removeprefix(static("")).split("?")[0]), address
    # Inline code runs only with the request's nonce; the policy allows no other.
    assert "'unsafe-inline'" not in directive(policy, "script-src")
    assert not {"https:", "http:", "*"} & {*directive(policy, "script-src")}
    for script in assets.inline_scripts:
        assert script.get("nonce"), script["body"]
        assert f"'nonce-{script['nonce']}'" in policy, script["body"]
    for style in assets.inline_styles:
        allowed = directive(policy, "style-src")
        assert "'unsafe-inline'" in allowed or f"'nonce-{style.get('nonce')}'" in allowed, style


def directive(policy: str, name: str) -> list[str]:
    for part in policy.split(";"):
        words = part.split()
        if words and words[0] == name:
            return words[1:]
    raise AssertionError(f"no {name} in {policy}")


def test_swagger_ui_set_up_script_is_a_file_of_its_own(client):
    """The split view: Swagger UI's settings come as a script of their own, which 'self' allows."""
    response = client.get("/api/v1/docs/?script=")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert "SwaggerUIBundle(" in response.content.decode()


# --- The fuzzer -----------------------------------------------------------------------------

FUZZ_CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "generation": {
            "mode": "all",  # valid input and invalid
            "max-examples": EXAMPLES_PER_OPERATION,
            "deterministic": True,
            "database": "none",
            # Every request sends the test's own key (below), never one the fuzzer made up.
            "with-security-parameters": False,
        },
    }
)
# Loaded as the module is collected: the schema view reads no database.
fuzzed = schemathesis.openapi.from_wsgi(SCHEMA_URL, get_wsgi_application(), config=FUZZ_CONFIG)
# The rows the fixture made, that a path may name.
made: dict = {}


@fuzzed.hook
def flatmap_path_parameters(context, path_parameters):
    """Now and then the path names a row that exists, as it is or oddly written (padded, in
    capitals, with a NUL character); its own value the rest of the time."""
    choices = [st.just(path_parameters)]
    for name, value in (path_parameters or {}).items():
        existing = made["existing"].get(name, [])
        if existing and type(value) is type(existing[0]):  # a negative case stays negative
            found = st.sampled_from(existing)
            if isinstance(value, str):
                found = found.flatmap(
                    lambda row: st.sampled_from([row, f" {row} ", row.upper(), f"{row}\x00"])
                )
            choices.append(found.map(lambda row, name=name: {**path_parameters, name: row}))
    return st.one_of(choices)


@pytest.fixture
def fuzzed_key(transactional_db, settings) -> str:
    """An all-books read-write key, and two agents' books for it to reach (a policy, its
    customer and a failed notice each, and a planned SMS for Alice's)."""
    settings.API_RATE_LIMIT_PER_MINUTE = 0  # a 429 would hide what the fuzzer asks
    books = two_books(timezone.localdate())
    make_notification(books.my_policy, channel="sms", lead_days=7)
    _, key = ApiKey.objects.create_key(name="fuzzer")
    made["existing"] = {
        "policy_number": [books.my_policy.policy_number, books.their_policy.policy_number],
        "email": [books.mine.email, books.theirs.email],
        "customer_id": [books.my_policy.customer_id, books.their_policy.customer_id],
    }
    yield key
    made.clear()


@fuzzed.parametrize()
# One database and key per operation, shared by its examples, as a client's would be.
@hypothesis.settings(suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture])
def test_every_operation_answers_as_its_schema_says_whatever_it_is_sent(case, fuzzed_key):
    # The key goes with the call: the coverage phase builds its cases at collection, before it.
    case.call_and_validate(headers={"Authorization": f"Api-Key {fuzzed_key}"}, checks=CHECKS)
