"""A template experiment's results in a real browser: a manager reads every book's figures and
which variant leads; an agent reads their own book's, on a phone."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications import experiments, outcomes, planning, services
from notifications.models import (
    Channel,
    MessageTemplate,
    Notification,
    PolicyOutcome,
    ReminderRule,
)
from tests.e2e.conftest import screenshot
from tests.e2e.test_people_browser import PASSWORD, agent_with_login
from tests.factories import make_customer, make_experiment, make_policy, make_staff

pytestmark = pytest.mark.django_db(transaction=True)
Status = Notification.Status
TODAY = timezone.localdate()
# Per variant, the share of its terms that renew before their expiry: A clearly keeps more.
RENEWS_ONE_IN = {"A": 1, "B": 3}


def email_template(name: str, greeting: str) -> MessageTemplate:
    return MessageTemplate.objects.create(
        name=name,
        channel=Channel.EMAIL,
        subject=greeting + " {{ policy.policy_number }}",
        body=greeting + ", {{ customer.name }}.",
    )


@pytest.fixture
def trial(seeded_defaults, staff_roles):
    """Rosa's and Omar's books, 60 policies due a 7-day email of the "Greeting" experiment,
    delivered; A's terms all renew before their expiry, one in three of B's, the others lapse.
    An ended experiment on the SMS rule has nothing to show."""
    rosa = agent_with_login("rosa", "rosa@agency.example")
    omar = agent_with_login("omar", "omar@agency.example")
    make_staff("manager", roles=["Support (read-only)"], password=PASSWORD)
    email_rule = ReminderRule.objects.get(channel=Channel.EMAIL, lead_days=7, product_line="")
    trial = make_experiment(
        email_rule,
        email_template("greeting hello", "Hello"),
        email_template("greeting hi", "Hi"),
        name="Greeting",
    )
    sms_rule = ReminderRule.objects.get(channel=Channel.SMS, lead_days=7, product_line="")
    sms_b = MessageTemplate.objects.create(name="sms b", channel=Channel.SMS, body="B")
    experiments.end(make_experiment(sms_rule, sms_rule.template, sms_b, name="Short SMS"))
    for number in range(60):
        agent = rosa if number % 2 else omar
        make_policy(
            f"{agent.user.username.upper()}-{number}",
            customer=make_customer(f"c{number}@mail.example", name=f"Customer {number}"),
            agent=agent,
            expiry_date=TODAY + timedelta(days=7),
        )
    planning.plan_due(run_date=TODAY)
    earlier = timezone.now() - timedelta(hours=1)
    Notification.objects.update(status=Status.DELIVERED, sent_at=earlier, delivered_at=earlier)
    taken = Notification.objects.filter(variant__isnull=False).select_related("variant", "policy")
    for index, notification in enumerate(taken.order_by("policy_id")):
        policy = notification.policy
        if index % RENEWS_ONE_IN[notification.variant.label] == 0:
            services.renew_policy(policy=policy, new_expiry_date=TODAY + timedelta(days=372))
        else:
            term = outcomes.Term(policy.pk, policy.expiry_date)
            outcomes.record([term], kind=PolicyOutcome.Kind.LAPSED, source="scan")
    experiments.tally()  # the daily scan's count
    return trial


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_selector("#main-nav")  # every reminder delivered: no notices to list


def figures(page, experiment_id: int) -> dict[str, dict]:
    rows = page.eval_on_selector_all(
        f"#experiment-{experiment_id}-variants tbody tr",
        """trs => trs.map(tr => ({
            label: tr.dataset.variant,
            decided: tr.querySelector('.decided').innerText,
            renewed: tr.querySelector('.renewed').innerText,
            rate: tr.querySelector('.rate').innerText,
        }))""",
    )
    return {row["label"]: row for row in rows}


def recount(**scope) -> dict[str, tuple[str, str]]:
    """Per variant, the decided terms and the renewals before expiry, counted from the rows."""
    counted = {}
    for label in RENEWS_ONE_IN:
        reached = Notification.objects.filter(variant__label=label, **scope)
        ended = PolicyOutcome.objects.filter(
            policy__in=reached.values("policy"), expiry_date=TODAY + timedelta(days=7)
        )
        renewed = ended.filter(kind="renewed", days_before_expiry__gte=0).count()
        counted[label] = (str(ended.count()), str(renewed))
    return counted


def test_a_manager_reads_which_variant_leads(page, live_server, trial):
    log_in(page, live_server, "manager")
    page.click("#nav-experiments")
    page.wait_for_selector(f"#experiment-{trial.pk}")

    shown = figures(page, trial.pk)
    assert {label: (row["decided"], row["renewed"]) for label, row in shown.items()} == recount(
        variant__experiment=trial
    )
    assert shown["A"]["rate"] == "100.0 %"
    assert page.inner_text(f"#experiment-{trial.pk}-verdict").startswith("A leads")
    assert "every agent" in page.inner_text("#experiments-scope")
    ended = page.locator("[data-experiment='Short SMS']")
    assert "ended" in ended.inner_text()
    assert "No result yet" in ended.inner_text()
    screenshot(page, "experiment-results")


def test_an_agent_reads_their_own_books_results_on_a_phone(phone_page, live_server, trial):
    log_in(phone_page, live_server, "rosa")
    phone_page.goto(f"{live_server.url}/experiments/")
    phone_page.wait_for_selector(f"#experiment-{trial.pk}")

    shown = figures(phone_page, trial.pk)
    rosas = recount(variant__experiment=trial, policy__agent__user__username="rosa")
    assert {label: (row["decided"], row["renewed"]) for label, row in shown.items()} == rosas
    assert "rosa" in phone_page.inner_text("#experiments-scope").lower()
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390 + 1  # nothing runs off the side of the screen
    screenshot(phone_page, "experiment-results-phone")
