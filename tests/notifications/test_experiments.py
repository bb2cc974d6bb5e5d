"""Template experiments: each policy's variant chosen by a fixed rule and kept across scans,
recorded on its reminder and sent in its words, attributed on the term's outcome, and counted
per variant with a Wilson interval and a plain verdict; ending one keeps its history."""

import threading
import time
from collections import Counter
from datetime import timedelta
from email import policy as email_policy
from email.parser import BytesParser

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.models import ProtectedError
from django.utils import timezone

from notifications import dispatch, experiments, fallback, outcomes, planning, services, tasks
from notifications.experiments import ExperimentResult, VariantResult, wilson
from notifications.models import (
    Channel,
    Digest,
    ExperimentTally,
    MessageTemplate,
    Notification,
    PolicyOutcome,
    ReminderRun,
    TemplateExperiment,
    TemplateTranslation,
    TemplateVariant,
)
from tests.factories import make_agent, make_customer, make_experiment, make_policy

Status = Notification.Status
TODAY = timezone.localdate()
pytestmark = pytest.mark.django_db


def email_template(name: str, greeting: str) -> MessageTemplate:
    return MessageTemplate.objects.create(
        name=name,
        channel=Channel.EMAIL,
        subject=greeting + " {{ policy.policy_number }}",
        body=greeting + ", {{ customer.name }}: {{ policy.policy_number }} expires soon.",
    )


@pytest.fixture
def trial(rules):
    """A 7-day email rule running an experiment of two wordings, "Hello" (A) and "Hi" (B)."""
    rule = rules(7, Channel.EMAIL)
    return make_experiment(
        rule, email_template("hello", "Hello"), email_template("hi", "Hi"), name="Greeting"
    )


def due_policies(agent, count: int, *, prefix: str = "P", days: int = 7, **customer_fields):
    return [
        make_policy(
            f"{prefix}-{number}",
            customer=make_customer(f"{prefix.lower()}{number}@mail.example", **customer_fields),
            agent=agent,
            expiry_date=TODAY + timedelta(days=days),
        )
        for number in range(count)
    ]


def variant_by_policy() -> dict[int, int | None]:
    return dict(Notification.objects.values_list("policy_id", "variant_id"))


# --- The choice -------------------------------------------------------------------------------


def test_the_choice_is_a_pure_function_of_policy_experiment_and_weights():
    weights = ((11, 1), (12, 1))
    chosen = [
        experiments.variant_for(policy_id=pk, experiment_id=3, weights=weights)
        for pk in range(1, 9)
    ]
    # Fixed for good: a change here would move running experiments' policies between variants.
    assert chosen == [11, 12, 11, 11, 12, 11, 12, 12]
    again = [
        experiments.variant_for(policy_id=pk, experiment_id=3, weights=tuple(reversed(weights)))
        for pk in range(1, 9)
    ]
    assert again == chosen  # the variants' order as given does not matter
    other_experiment = [
        experiments.variant_for(policy_id=pk, experiment_id=4, weights=weights)
        for pk in range(1, 9)
    ]
    assert other_experiment != chosen


@pytest.mark.parametrize("weights", [(1, 1), (1, 3), (2, 1, 1)])
def test_policies_are_shared_between_variants_roughly_by_weight(weights):
    pairs = tuple((100 + index, weight) for index, weight in enumerate(weights))
    counts = Counter(
        experiments.variant_for(policy_id=pk, experiment_id=7, weights=pairs)
        for pk in range(1, 20001)
    )
    for variant_id, weight in pairs:
        expected = 20000 * weight / sum(weights)
        assert abs(counts[variant_id] - expected) < 0.03 * 20000, (counts, pairs)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the SQL form is PostgreSQL's")
def test_the_sql_form_of_the_rule_chooses_the_same_buckets():
    expression = experiments.BUCKET_SQL.format(
        policy_id="pk", experiment_id="%s", total_weight="%s"
    )
    with connection.cursor() as cursor:
        for experiment_id, total in [(1, 2), (42, 7)]:
            cursor.execute(
                f"SELECT pk, {expression} FROM generate_series(1, 5000) AS pk "
                "UNION ALL SELECT 4000000000, "
                + expression.replace("(pk)", "(4000000000)")
                + " ORDER BY 1",
                [experiment_id, total, experiment_id, total],
            )
            for pk, bucket in cursor.fetchall():
                assert int(bucket) == experiments.bucket(
                    policy_id=pk, experiment_id=experiment_id, total_weight=total
                )


# --- Planning, rendering, sending -------------------------------------------------------------


def test_planning_records_each_reminders_variant_by_the_rule(trial, agent):
    policies = due_policies(agent, 40)

    planning.plan_due(run_date=TODAY)

    weights = tuple(trial.variants.values_list("id", "weight"))
    assert variant_by_policy() == {
        policy.pk: experiments.variant_for(
            policy_id=policy.pk, experiment_id=trial.pk, weights=weights
        )
        for policy in policies
    }
    assert len(set(variant_by_policy().values())) == 2


def test_a_policys_variant_is_the_same_in_every_scan_and_after_replanning(trial, agent):
    due_policies(agent, 30)
    planning.plan_due(run_date=TODAY)
    first = variant_by_policy()

    planning.plan_due(run_date=TODAY)  # a second scan the same day plans nothing new
    assert variant_by_policy() == first
    Notification.objects.all().delete()
    ReminderRun.objects.all().delete()
    planning.plan_due(run_date=TODAY)  # planned again from scratch, as if never before

    assert variant_by_policy() == first


def test_a_rule_without_an_experiment_plans_no_variant(rules, agent):
    rules(7, Channel.EMAIL)
    due_policies(agent, 3)

    planning.plan_due(run_date=TODAY)

    assert set(variant_by_policy().values()) == {None}


def test_a_reminder_is_sent_in_its_variants_words(trial, agent, outbox):
    policies = due_policies(agent, 6)
    planning.plan_due(run_date=TODAY)
    planning.claim_for_enqueue(limit=100, stalled_after=timedelta(minutes=5))

    dispatch.send_many(list(Notification.objects.values_list("pk", flat=True)))

    greetings = {"A": "Hello", "B": "Hi"}
    for notification in Notification.objects.select_related("variant", "policy"):
        assert notification.status == Status.SENT
        path = outbox / "email" / f"notification-{notification.pk}.eml"
        message = BytesParser(policy=email_policy.default).parsebytes(path.read_bytes())
        greeting = greetings[notification.variant.label]
        assert message["Subject"] == f"{greeting} {notification.policy.policy_number}"
        assert message.get_content().startswith(f"{greeting}, Pat Doe:")
    assert len(policies) == 6


def test_a_variants_template_speaks_the_customers_language(trial, agent, outbox):
    for variant in trial.variants.select_related("template"):
        TemplateTranslation.objects.create(
            template=variant.template,
            language="es",
            subject=f"Hola ({variant.label}) {{{{ policy.policy_number }}}}",
            body="Hola, {{ customer.name }}.",
        )
    due_policies(agent, 4, language="es")
    planning.plan_due(run_date=TODAY)
    planning.claim_for_enqueue(limit=100, stalled_after=timedelta(minutes=5))

    dispatch.send_many(list(Notification.objects.values_list("pk", flat=True)))

    for notification in Notification.objects.select_related("variant", "policy"):
        path = outbox / "email" / f"notification-{notification.pk}.eml"
        message = BytesParser(policy=email_policy.default).parsebytes(path.read_bytes())
        label = notification.variant.label
        assert message["Subject"] == f"Hola ({label}) {notification.policy.policy_number}"


def test_a_reminder_sent_in_place_of_a_variant_goes_in_the_rules_fallback(rules, agent):
    sms_rule = rules(7, Channel.SMS)
    sms_rule.fallback_template = email_template("fallback", "Fallback")
    sms_rule.save()
    sms = MessageTemplate.objects.create(
        name="sms b", channel=Channel.SMS, body="B {{ lead_days }}"
    )
    make_experiment(sms_rule, sms_rule.template, sms)
    due_policies(agent, 1)
    planning.plan_due(run_date=TODAY)
    failed = Notification.objects.get()
    assert failed.variant is not None

    in_place = Notification.objects.get(pk=fallback.plan_fallback(failed))

    assert in_place.variant is None
    assert in_place.template == sms_rule.fallback_template
    assert failed.template == failed.variant.template


# --- Outcomes ---------------------------------------------------------------------------------


def test_a_renewal_credits_the_last_touchs_variant_and_its_template(trial, agent):
    (policy,) = due_policies(agent, 1)
    planning.plan_due(run_date=TODAY)
    touch = Notification.objects.select_related("variant__template").get()
    earlier = timezone.now() - timedelta(hours=1)
    Notification.objects.update(status=Status.DELIVERED, sent_at=earlier, delivered_at=earlier)

    services.renew_policy(policy=policy, new_expiry_date=policy.expiry_date + timedelta(days=365))

    outcome = PolicyOutcome.objects.get()
    assert outcome.last_touch_variant == touch.variant
    assert outcome.last_touch_template == touch.variant.template
    assert outcome.last_touch_template != trial.rule.template


def test_a_renewal_after_a_digest_credits_no_variant(trial, agent):
    (policy,) = due_policies(agent, 1)
    planning.plan_due(run_date=TODAY)
    earlier = timezone.now() - timedelta(hours=1)
    digest = Digest.objects.create(
        customer=policy.customer, channel=Channel.EMAIL, to="p0@mail.example", body="both"
    )
    Notification.objects.update(
        status=Status.DELIVERED, sent_at=earlier, delivered_at=earlier, digest=digest
    )

    services.renew_policy(policy=policy, new_expiry_date=policy.expiry_date + timedelta(days=365))

    outcome = PolicyOutcome.objects.get()
    assert outcome.last_touch is not None
    assert outcome.last_touch_variant is None


# --- Results ----------------------------------------------------------------------------------


def seeded_trial(trial, agent, *, count: int = 40):
    """Reminders of the trial planned and delivered for `count` policies; a third of the terms
    renewed before their expiry, a third lapsed, a sixth renewed late, the rest undecided."""
    policies = due_policies(agent, count)
    planning.plan_due(run_date=TODAY)
    earlier = timezone.now() - timedelta(days=1)
    delivered = Notification.objects.exclude(policy=policies[-1])  # one never delivered
    delivered.update(status=Status.DELIVERED, sent_at=earlier, delivered_at=earlier)
    after_expiry = timezone.now() + timedelta(days=10)
    for index, policy in enumerate(policies):
        term = [outcomes.Term(policy.pk, policy.expiry_date, policy.expiry_date + timedelta(365))]
        if index % 3 == 0:
            outcomes.record(term, kind=PolicyOutcome.Kind.RENEWED, source="agent")
        elif index % 3 == 1:
            outcomes.record(
                [outcomes.Term(policy.pk, policy.expiry_date)], kind="lapsed", source="scan"
            )
        elif index % 2 == 0:
            outcomes.record(term, kind="renewed", source="import", at=after_expiry)
    return policies


def recount(experiment: TemplateExperiment, notifications=None) -> dict[str, tuple[int, ...]]:
    """The figures counted again from the rows, one by one."""
    notifications = notifications if notifications is not None else Notification.objects.all()
    figures = {}
    for variant in experiment.variants.all():
        delivered = [n for n in notifications.filter(variant=variant) if n.delivered_at]
        decided = renewed = 0
        for notification in delivered:
            ended = PolicyOutcome.objects.filter(
                policy_id=notification.policy_id, expiry_date=notification.expiry_date
            )
            decided += ended.exists()
            renewed += ended.filter(kind="renewed", days_before_expiry__gte=0).exists()
        figures[variant.label] = (len(delivered), decided, renewed)
    return figures


def figures_of(result: ExperimentResult) -> dict[str, tuple[int, ...]]:
    return {v.label: (v.delivered, v.decided, v.renewed) for v in result.variants}


def counted(trial, agent=None) -> ExperimentResult:
    experiments.tally()
    (result,) = experiments.results([trial], agent=agent)
    return result


def test_results_match_a_recount_from_the_rows_in_every_book_and_in_each(trial, agent):
    seeded_trial(trial, agent)
    other = make_agent("other", "other@agency.example")
    seeded_trial_policies = due_policies(other, 10, prefix="O")
    planning.plan_due(run_date=TODAY)
    Notification.objects.filter(policy__in=seeded_trial_policies).update(
        status=Status.DELIVERED, delivered_at=timezone.now()
    )
    for policy in seeded_trial_policies[:4]:
        services.renew_policy(policy=policy, new_expiry_date=TODAY + timedelta(days=400))

    everyone = counted(trial)
    theirs = counted(trial, other)

    assert figures_of(everyone) == recount(trial)
    assert figures_of(theirs) == recount(trial, Notification.objects.filter(policy__agent=other))
    assert sum(v.delivered for v in everyone.variants) == 39 + 10
    assert sum(v.renewed for v in theirs.variants) == 4
    assert sum(v.decided for v in everyone.variants) > sum(v.renewed for v in everyone.variants)


def test_a_reminder_that_went_in_a_digest_is_not_counted_for_its_variant(trial, agent):
    seeded_trial(trial, agent)
    before = figures_of(counted(trial))
    notification = Notification.objects.filter(delivered_at__isnull=False).first()
    digest = Digest.objects.create(
        customer=notification.customer, channel=Channel.EMAIL, to="x@mail.example", body="both"
    )
    Notification.objects.filter(pk=notification.pk).update(digest=digest)

    after = figures_of(counted(trial))

    label = notification.variant.label
    assert after[label][0] == before[label][0] - 1


def test_the_daily_scan_counts_the_results(trial, agent):
    seeded_trial(trial, agent)
    assert trial.counted_at is None

    tasks.daily_scan(TODAY.isoformat())

    trial.refresh_from_db()
    assert trial.counted_at is not None
    (result,) = experiments.results([trial])
    assert figures_of(result) == recount(trial)


def test_a_new_count_replaces_the_last(trial, agent):
    policies = seeded_trial(trial, agent)
    before = figures_of(counted(trial))
    late = policies[2]  # renewed late: decided, not renewed before its expiry
    PolicyOutcome.objects.filter(policy=late).update(days_before_expiry=1)

    after = figures_of(counted(trial))

    assert sum(v[2] for v in after.values()) == sum(v[2] for v in before.values()) + 1


def test_ending_an_experiment_keeps_its_reminders_and_results_and_stops_new_variants(trial, agent):
    seeded_trial(trial, agent)
    before = counted(trial)
    with_variant = variant_by_policy()

    assert experiments.end(trial) is True
    assert experiments.end(trial) is False  # ended once
    later = due_policies(agent, 5, prefix="L", days=6)
    planning.plan_due(run_date=TODAY + timedelta(days=-1))

    trial.refresh_from_db()
    assert not trial.is_running
    assert {pk: v for pk, v in variant_by_policy().items() if pk in with_variant} == with_variant
    assert {variant_by_policy()[policy.pk] for policy in later} == {None}
    assert figures_of(counted(trial)) == figures_of(before)
    with pytest.raises(ProtectedError):
        trial.variants.first().delete()


def test_a_new_experiment_can_run_on_the_rule_once_the_last_ended(trial):
    experiments.end(trial)

    again = make_experiment(trial.rule, *[v.template for v in trial.variants.all()])

    assert again.is_running


# --- Wilson interval and the verdict ------------------------------------------------------------


@pytest.mark.parametrize(
    ("successes", "trials", "expected"),
    [
        (8, 10, (0.4902, 0.9433)),
        (0, 10, (0.0, 0.2775)),
        (10, 10, (0.7225, 1.0)),
        (50, 100, (0.4038, 0.5962)),
        (0, 0, (0.0, 1.0)),
    ],
)
def test_the_wilson_interval_has_the_textbook_values(successes, trials, expected):
    low, high = wilson(successes, trials)
    assert (round(low, 4), round(high, 4)) == expected


def result_of(*figures: tuple[str, int, int]) -> ExperimentResult:
    return ExperimentResult(
        TemplateExperiment(name="x"),
        [
            VariantResult(index, label, "t", 1, decided, decided, renewed)
            for index, (label, decided, renewed) in enumerate(figures)
        ],
    )


def test_a_clear_difference_names_the_leader():
    result = result_of(("A", 200, 160), ("B", 200, 120))

    assert result.significant
    assert result.verdict.startswith("B leads") is False
    assert result.verdict.startswith("A leads")


def test_a_small_difference_is_called_not_yet_significant():
    result = result_of(("A", 10, 8), ("B", 10, 6))

    assert result.leader.label == "A"
    assert not result.significant
    assert result.verdict.startswith("Not yet significant: A has the highest rate so far")


def test_the_leader_must_beat_every_other_variant():
    # A is well above C, but not clearly above B.
    result = result_of(("A", 200, 160), ("B", 200, 150), ("C", 200, 100))

    assert not result.significant


def test_no_decided_term_means_no_result_yet():
    result = result_of(("A", 0, 0), ("B", 0, 0))

    assert result.leader is None
    assert result.verdict.startswith("No result yet")


# --- The database's rules ---------------------------------------------------------------------


def test_the_database_refuses_a_zero_weight_and_a_repeated_label(trial):
    template = trial.variants.first().template
    for fields in ({"label": "C", "weight": 0}, {"label": "A", "weight": 1}):
        with pytest.raises(IntegrityError), transaction.atomic():
            TemplateVariant.objects.create(experiment=trial, template=template, **fields)


def test_the_database_refuses_a_second_running_experiment_on_a_rule(trial):
    with pytest.raises(IntegrityError), transaction.atomic():
        TemplateExperiment.objects.create(rule=trial.rule, name="another")


def test_the_database_refuses_an_end_before_the_start(trial):
    with pytest.raises(IntegrityError), transaction.atomic():
        TemplateExperiment.objects.filter(pk=trial.pk).update(
            ended_at=trial.started_at - timedelta(days=1)
        )


@pytest.mark.django_db(transaction=True)
def test_two_counts_at_once_both_finish_and_leave_one_tally_per_variant_and_agent(
    trial, agent, monkeypatch
):
    # The daily scan and the admin's "count now" may count at the same moment.
    seeded_trial(trial, agent, count=6)
    inserted, go = threading.Event(), threading.Event()
    bulk_create = ExperimentTally.objects.bulk_create

    def held_open(*args, **kwargs):
        rows = bulk_create(*args, **kwargs)
        if threading.current_thread().name == "first":
            inserted.set()
            go.wait(timeout=30)  # its transaction stays open while the second count runs
        return rows

    monkeypatch.setattr(ExperimentTally.objects, "bulk_create", held_open)
    errors = []

    def count() -> None:
        try:
            experiments.tally()
        except Exception as error:
            errors.append(error)
        finally:
            connection.close()

    first = threading.Thread(target=count, name="first")
    second = threading.Thread(target=count, name="second")
    first.start()
    assert inserted.wait(timeout=30)
    second.start()
    time.sleep(1)  # the second count waits on the first's rows
    go.set()
    first.join(timeout=60)
    second.join(timeout=60)

    assert errors == []
    assert ExperimentTally.objects.count() == 2  # A and B, one agent


def test_a_rule_running_an_experiment_keeps_its_channel_until_the_experiment_ends(trial):
    rule = trial.rule
    rule.channel = Channel.SMS
    rule.template = MessageTemplate.objects.create(name="sms words", channel=Channel.SMS, body="x")

    with pytest.raises(ValidationError) as refused:
        rule.full_clean()

    assert "end it before changing the channel" in str(refused.value.message_dict["channel"])
    experiments.end(trial)
    rule.full_clean()  # its variants' words are no longer sent
