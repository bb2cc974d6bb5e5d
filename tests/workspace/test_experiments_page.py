"""The experiments page of the workspace, counted over the user's book, and the experiments'
admin: variants checked in plain words, an End action, an ended experiment kept read-only."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from notifications import experiments, outcomes
from notifications.models import (
    Channel,
    ExperimentTally,
    MessageTemplate,
    Notification,
    PolicyOutcome,
    ReminderRun,
    TemplateExperiment,
)
from tests.factories import (
    PASSWORD,
    make_agent,
    make_customer,
    make_experiment,
    make_policy,
    make_rule,
    make_staff,
    with_password,
)

TODAY = timezone.localdate()
pytestmark = pytest.mark.django_db


def email_template(name: str) -> MessageTemplate:
    return MessageTemplate.objects.create(
        name=name, channel=Channel.EMAIL, subject=f"{name} {{{{ policy.policy_number }}}}", body="x"
    )


@pytest.fixture
def trial(db):
    rule = make_rule(9, Channel.EMAIL, template=email_template("plain"))
    return make_experiment(rule, email_template("warm"), email_template("short"), name="Warmth")


def delivered_reminders(agent, trial, count: int, *, renewed: int) -> None:
    """`count` policies of `agent` with a delivered reminder of the trial's variant A; the first
    `renewed` renewed before their expiry, the others lapsed."""
    variant = trial.variants.get(label="A")
    now = timezone.now()
    run = ReminderRun.objects.create(run_date=TODAY)
    for number in range(count):
        policy = make_policy(
            f"{agent.user.username.upper()}-{number}",
            customer=make_customer(f"{agent.user.username}{number}@mail.example"),
            agent=agent,
            expiry_date=TODAY + timedelta(days=7),
        )
        Notification.objects.create(
            policy=policy,
            customer=policy.customer,
            rule=trial.rule,
            run=run,
            channel=Channel.EMAIL,
            expiry_date=policy.expiry_date,
            lead_days=9,
            due_on=TODAY - timedelta(days=2),
            status=Notification.Status.DELIVERED,
            sent_at=now - timedelta(hours=2),
            delivered_at=now - timedelta(hours=1),
            variant=variant,
        )
        term = outcomes.Term(policy.pk, policy.expiry_date, policy.expiry_date + timedelta(365))
        if number < renewed:
            outcomes.record([term], kind=PolicyOutcome.Kind.RENEWED, source="agent")
        else:
            outcomes.record(
                [outcomes.Term(policy.pk, policy.expiry_date)], kind="lapsed", source="scan"
            )


@pytest.fixture
def agents(trial):
    alice = with_password(make_agent("alice", "alice@agency.example"))
    bruno = with_password(make_agent("bruno", "bruno@agency.example"))
    delivered_reminders(alice, trial, 4, renewed=3)
    delivered_reminders(bruno, trial, 6, renewed=1)
    experiments.tally()
    return alice, bruno


def variant_row(page: str, label: str) -> str:
    start = page.index(f'data-variant="{label}"')
    return page[start : page.index("</tr>", start)]


def test_an_agent_sees_their_own_books_figures(client, trial, agents):
    client.login(username="alice", password=PASSWORD)

    page = client.get(reverse("workspace:experiments")).content.decode()

    assert "Warmth" in page
    assert "Counted over Alice" in page or "book only" in page
    row = variant_row(page, "A")
    assert '<td data-label="Terms decided" class="decided">4</td>' in row
    assert '<td data-label="Renewed before expiry" class="renewed">3</td>' in row
    assert "75.0 %" in row
    assert "Not yet significant" in page
    assert "BRUNO" not in page


def test_a_user_who_sees_every_book_sees_everyones_figures(client, trial, agents, staff_roles):
    client.force_login(make_staff("helpdesk", roles=["Support (read-only)"]))

    page = client.get(reverse("workspace:experiments")).content.decode()

    row = variant_row(page, "A")
    assert '<td data-label="Terms decided" class="decided">10</td>' in row
    assert '<td data-label="Renewed before expiry" class="renewed">4</td>' in row
    assert "40.0 %" in row
    assert "every agent" in page


def test_an_experiment_not_counted_yet_says_so(client, trial, agent):
    with_password(agent)
    client.login(username="agent", password=PASSWORD)

    page = client.get(reverse("workspace:experiments")).content.decode()

    assert "Not counted yet: the next daily scan counts it." in page
    assert "No result yet" in page


def test_the_page_says_so_when_there_is_no_experiment(client, agent):
    with_password(agent)
    client.login(username="agent", password=PASSWORD)

    page = client.get(reverse("workspace:experiments")).content.decode()

    assert 'id="no-experiments"' in page


# --- Admin ------------------------------------------------------------------------------------


def experiment_form(rule, variants: list[tuple[str, int, int]], **fields) -> dict:
    form = {
        "name": "Trial",
        "rule": rule.pk,
        "variants-TOTAL_FORMS": len(variants),
        "variants-INITIAL_FORMS": 0,
        "variants-MIN_NUM_FORMS": 0,
        "variants-MAX_NUM_FORMS": 1000,
        **fields,
    }
    for index, (label, template_id, weight) in enumerate(variants):
        form |= {
            f"variants-{index}-label": label,
            f"variants-{index}-template": template_id,
            f"variants-{index}-weight": weight,
        }
    return form


@pytest.fixture
def rule(db):
    return make_rule(11, Channel.EMAIL, template=email_template("rule words"))


def test_an_experiment_is_created_with_its_variants_in_the_admin(admin_client, rule):
    a, b = email_template("a"), email_template("b")

    response = admin_client.post(
        reverse("admin:notifications_templateexperiment_add"),
        experiment_form(rule, [("A", a.pk, 1), ("B", b.pk, 3)]),
    )

    assert response.status_code == 302
    experiment = TemplateExperiment.objects.get()
    assert experiment.is_running
    assert list(experiment.variants.values_list("label", "weight")) == [("A", 1), ("B", 3)]


@pytest.mark.parametrize(
    ("variants", "message"),
    [
        ("one", "An experiment compares two or more variants: add at least two."),
        ("sms", "Choose an Email template: the rule sends by Email."),
        ("zero", "A weight is a whole number of at least 1."),
        ("same label", "Please correct the duplicate data for label"),
    ],
)
def test_bad_variants_are_refused_in_plain_words(admin_client, rule, variants, message):
    a, b = email_template("a"), email_template("b")
    sms = MessageTemplate.objects.create(name="sms", channel=Channel.SMS, body="x")
    chosen = {
        "one": [("A", a.pk, 1)],
        "sms": [("A", a.pk, 1), ("B", sms.pk, 1)],
        "zero": [("A", a.pk, 1), ("B", b.pk, 0)],
        "same label": [("A", a.pk, 1), ("A", b.pk, 1)],
    }[variants]

    response = admin_client.post(
        reverse("admin:notifications_templateexperiment_add"), experiment_form(rule, chosen)
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not TemplateExperiment.objects.exists()


def test_a_second_running_experiment_on_a_rule_is_refused_in_plain_words(admin_client, trial):
    a, b = email_template("a"), email_template("b")

    response = admin_client.post(
        reverse("admin:notifications_templateexperiment_add"),
        experiment_form(trial.rule, [("A", a.pk, 1), ("B", b.pk, 1)]),
    )

    assert response.status_code == 200
    assert "This rule runs an experiment already: end it first." in response.content.decode()
    assert TemplateExperiment.objects.count() == 1


def test_the_end_action_ends_it_and_the_ended_experiment_is_read_only(admin_client, trial):
    changelist = reverse("admin:notifications_templateexperiment_changelist")

    response = admin_client.post(
        changelist, {"action": "end_experiments", "_selected_action": [trial.pk]}, follow=True
    )

    assert "1 experiment(s) ended; their variants and results are kept." in (
        response.content.decode()
    )
    trial.refresh_from_db()
    assert not trial.is_running
    change = reverse("admin:notifications_templateexperiment_change", args=[trial.pk])
    page = admin_client.get(change).content.decode()
    assert 'name="_save"' not in page  # kept as it was
    assert reverse("workspace:experiments") + f"#experiment-{trial.pk}" in page
    assert experiments.end(trial) is False


def test_the_admin_counts_the_results_at_once(admin_client, trial, agents):
    ExperimentTally.objects.all().delete()
    changelist = reverse("admin:notifications_templateexperiment_changelist")

    admin_client.post(changelist, {"action": "count_results", "_selected_action": [trial.pk]})

    trial.refresh_from_db()
    assert trial.counted_at is not None
    assert sum(ExperimentTally.objects.values_list("decided", flat=True)) == 10


def test_the_admin_previews_every_variants_words(admin_client, trial):
    make_policy(
        "PREVIEW-1",
        customer=make_customer("preview@mail.example"),
        agent=make_agent("previewer", "previewer@agency.example"),
        expiry_date=TODAY + timedelta(days=9),
    )
    change = reverse("admin:notifications_templateexperiment_change", args=[trial.pk])
    preview = reverse("admin:notifications_templateexperiment_preview", args=[trial.pk])
    assert preview in admin_client.get(change).content.decode()

    page = admin_client.get(preview, {"policy_number": "PREVIEW-1"}).content.decode()

    assert "warm PREVIEW-1" in page
    assert "short PREVIEW-1" in page


def change_form(trial, variants: list[tuple[int | None, str, int, int]], **extra) -> dict:
    """The change form of `trial`, its variants as (id or None for a new one, label, template
    id, weight)."""
    form = {
        "name": trial.name,
        "variants-TOTAL_FORMS": len(variants),
        "variants-INITIAL_FORMS": sum(pk is not None for pk, *_ in variants),
        "variants-MIN_NUM_FORMS": 0,
        "variants-MAX_NUM_FORMS": 1000,
        **extra,
    }
    for index, (pk, label, template_id, weight) in enumerate(variants):
        form |= {
            f"variants-{index}-id": pk or "",
            f"variants-{index}-experiment": trial.pk,
            f"variants-{index}-label": label,
            f"variants-{index}-template": template_id,
            f"variants-{index}-weight": weight,
        }
    return form


@pytest.mark.parametrize("change", ["weight", "new variant"])
def test_a_policy_keeps_its_variant_the_weights_and_variants_are_fixed_once_reminders_went(
    admin_client, trial, agent, change
):
    delivered_reminders(agent, trial, 1, renewed=0)
    a, b = trial.variants.order_by("label")
    assignment = experiments.running_assignments([trial.rule])[trial.rule_id]
    before = {pk: assignment.variant_for(pk) for pk in range(1, 200)}
    variants = [(a.pk, "A", a.template_id, 1), (b.pk, "B", b.template_id, 1)]
    if change == "weight":
        variants[1] = (b.pk, "B", b.template_id, 5)
    else:
        variants.append((None, "C", email_template("third").pk, 1))

    response = admin_client.post(
        reverse("admin:notifications_templateexperiment_change", args=[trial.pk]),
        change_form(trial, variants),
    )

    assert response.status_code == 200
    assert "end the experiment and start another" in response.content.decode()
    assignment = experiments.running_assignments([trial.rule])[trial.rule_id]
    assert {pk: assignment.variant_for(pk) for pk in range(1, 200)} == before


def test_before_any_reminder_went_the_weights_may_still_change(admin_client, trial):
    a, b = trial.variants.order_by("label")

    response = admin_client.post(
        reverse("admin:notifications_templateexperiment_change", args=[trial.pk]),
        change_form(trial, [(a.pk, "A", a.template_id, 1), (b.pk, "B", b.template_id, 3)]),
    )

    assert response.status_code == 302
    assert b.__class__.objects.get(pk=b.pk).weight == 3
