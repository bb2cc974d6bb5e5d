"""Under the Content-Security-Policy, the pages with the most moving parts still work in
Chromium and report no violation: the admin's change form and its "Preview & test" page (the
email's HTML in a sandboxed srcdoc frame), and an upload's progress poller (an inline script)."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from notifications.models import MessageTemplate
from policies.models import ImportJob
from policies.services import ensure_agent
from tests.factories import make_agent, make_customer, make_policy

pytestmark = pytest.mark.django_db(transaction=True)

PASSWORD = "s3cret-pass-csp"


@pytest.fixture
def violations(page):
    """What Chromium refused under the policy, in the page and in its frames: each violation is
    logged to the console, and the page's documents also hear `securitypolicyviolation`."""
    seen: list[str] = []
    page.on(
        "console",
        lambda message: (
            seen.append(message.text) if "Content Security Policy" in message.text else None
        ),
    )
    page.add_init_script(
        """document.addEventListener("securitypolicyviolation", (event) => {
            console.error("Content Security Policy violation: " + event.violatedDirective
                          + " " + event.blockedURI);
        });"""
    )
    return seen


def log_in(page, live_server, path: str, username: str) -> None:
    page.goto(f"{live_server.url}{path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.locator("form [type=submit]").click()
    page.wait_for_load_state()


def test_the_admin_change_form_and_preview_work_with_no_violation(
    page, live_server, seeded_defaults, violations
):
    get_user_model().objects.create_superuser("boss", "boss@insurer.example", PASSWORD)
    customer = make_customer("luz@mail.example", name="Luz Ortega", language="es")
    today = timezone.localdate()
    make_policy("HOME-3", customer=customer, agent=make_agent(), expiry_date=today + timedelta(30))
    template = (
        MessageTemplate.objects.filter(channel="email", kind="reminder")
        .exclude(html_body="")
        .first()
    )

    log_in(page, live_server, "/admin/login/", "boss")
    page.wait_for_url(f"{live_server.url}/admin/")
    change = f"{live_server.url}/admin/notifications/messagetemplate/{template.pk}/change/"
    page.goto(change)
    assert page.locator("#id_subject").input_value() == template.subject
    page.click("text=Preview & test")
    page.fill("#id_policy_number", "HOME-3")
    page.click("#preview-form input[type=submit]")

    page.wait_for_selector(".preview-subject")
    frame = page.frame_locator("iframe.preview-html")
    assert "Luz Ortega" in frame.locator("body").text_content()
    # The email's own inline styles apply inside the frame.
    footer = frame.locator("p[style]").last
    assert footer.evaluate("p => getComputedStyle(p).fontSize") == "13px"
    assert violations == []


def test_the_upload_progress_poller_runs_with_no_violation(page, live_server, violations):
    agent = ensure_agent(username="ana", email="ana@agency.example", password=PASSWORD)
    job = ImportJob.objects.create(
        uploaded_by=agent.user, agent=agent, original_name="book.csv", stored_name="book.csv"
    )
    log_in(page, live_server, "/accounts/login/", "ana")

    with page.expect_request(f"**/uploads/{job.pk}/progress/") as polled:
        page.goto(f"{live_server.url}/uploads/{job.pk}/")
    assert polled.value.response().status == 200
    assert violations == []
