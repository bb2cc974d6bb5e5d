"""Every page carries the Content-Security-Policy: our own scripts, styles and images only,
inline script only with the request's nonce, and no page in anyone's frame. Through Django's
test client, and over every template of ours."""

import re

import pytest
from django.contrib.auth import get_user_model

from notifications.models import MessageTemplate
from policies.models import ImportJob
from policies.services import ensure_agent
from tests.workers import BASE_DIR

pytestmark = pytest.mark.django_db

# Every app's templates, config's included: a new app's pages are checked without being named.
OUR_TEMPLATES = sorted(BASE_DIR.glob("*/templates/**/*.html"))


def directives(response) -> dict[str, list[str]]:
    policy = response["Content-Security-Policy"]
    return {
        name: sources
        for name, *sources in (part.split() for part in policy.split(";") if part.strip())
    }


def test_pages_allow_only_their_own_scripts_and_no_framing(client):
    policy = directives(client.get("/accounts/login/"))

    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no nonce: this page has no inline script
    assert policy["style-src"] == ["'self'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["object-src"] == ["'none'"]
    assert policy["form-action"] == ["'self'"]


def test_the_lockout_page_carries_the_policy_too(client):
    for attempt in range(10):
        response = client.post("/accounts/login/", {"username": "x", "password": str(attempt)})

    assert response.status_code == 429
    assert directives(response)["frame-ancestors"] == ["'none'"]


def test_the_upload_poller_runs_by_the_nonce_the_header_names(client):
    agent = ensure_agent(username="ana", email="ana@agency.example")
    job = ImportJob.objects.create(
        uploaded_by=agent.user, agent=agent, original_name="book.csv", stored_name="book.csv"
    )
    client.force_login(agent.user)

    response = client.get(f"/uploads/{job.pk}/")

    nonce = directives(response)["script-src"][1].removeprefix("'nonce-").removesuffix("'")
    assert directives(response)["script-src"][0] == "'self'"
    scripts = re.findall(r"<script[^>]*>", response.content.decode())
    assert scripts == [f'<script nonce="{nonce}">']


def test_only_the_admins_email_preview_allows_inline_styles(client, seeded_defaults):
    boss = get_user_model().objects.create_superuser("boss", "boss@insurer.example", "pw")
    client.force_login(boss)
    template = MessageTemplate.objects.filter(channel="email", kind="reminder").first()
    change = f"/admin/notifications/messagetemplate/{template.pk}/change/"

    assert directives(client.get(change))["style-src"] == ["'self'"]
    preview = directives(client.get(change.replace("/change/", "/preview/")))
    assert preview["style-src"] == ["'self'", "'unsafe-inline'"]
    assert preview["script-src"] == ["'self'"]  # never inline script
    assert preview["frame-ancestors"] == ["'none'"]


@pytest.mark.parametrize(
    "template", OUR_TEMPLATES, ids=lambda path: str(path.relative_to(BASE_DIR))
)
def test_no_template_of_ours_has_script_the_policy_would_block(template):
    text = template.read_text()

    for tag in re.findall(r"<script\b[^>]*>", text):
        assert "src=" in tag or 'nonce="{{ request.csp_nonce }}"' in tag, tag
    assert not re.search(r"\son[a-z]+\s*=", text), "an inline event handler"
    assert "javascript:" not in text
