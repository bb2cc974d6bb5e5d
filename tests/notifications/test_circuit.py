"""A provider outage: after a run of transient errors the channel's circuit breaker opens, its
reminders wait in the database without spending their tries or their place in the broker, one
send at a time probes the provider at growing intervals, and once it answers everything that
waited goes. Through the real twilio SDK and anymail's Postmark backend, over HTTP to the fake
provider."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from notifications import circuit, dispatch, leases, lifecycle, planning
from notifications.models import Channel, CircuitBreaker, Notification
from notifications.tasks import release_reminders
from policies.models import Policy
from tests.factories import make_agent, make_customer, make_notification, make_policy, make_staff
from tests.fake_provider import ALL
from tests.notifications.conftest import retry_for_hours, run_at_once

pytestmark = pytest.mark.django_db

EMAIL, SMS = Channel.EMAIL, Channel.SMS
Status = Notification.Status
State = CircuitBreaker.State
COUNT = 30  # the day's SMS reminders, in batches of 10
THRESHOLD = 5


@pytest.fixture
def providers(providers, settings):
    settings.REMINDER_SEND_THREADS = 4
    settings.REMINDER_SEND_BATCH_SIZE = 10
    settings.PROVIDER_BREAKER_FAILURES = THRESHOLD
    settings.PROVIDER_PROBE_SECONDS = 30
    settings.PROVIDER_PROBE_MAX_SECONDS = 120
    retry_for_hours(settings, 24)
    return providers


def phone(n: int) -> str:
    return f"+1415555{n:04d}"


@pytest.fixture
def planned(rules) -> list[Notification]:
    """COUNT customers due a 7-day SMS reminder today, planned by today's scan, oldest first."""
    rules(7, SMS)
    agent = make_agent()
    for n in range(COUNT):
        customer = make_customer(f"customer{n}@mail.example", phone=phone(n), timezone="UTC")
        make_policy(
            f"P-{n}",
            customer=customer,
            agent=agent,
            expiry_date=timezone.localdate() + timedelta(7),
        )
    planning.plan_due(run_date=timezone.localdate())
    return list(Notification.objects.order_by("pk"))


def breaker(channel: str = SMS) -> CircuitBreaker:
    return circuit.breakers([channel])[channel]


def probe_due() -> None:
    """The time to the next probe passes."""
    assert CircuitBreaker.objects.filter(channel=SMS).update(next_probe_at=timezone.now())


def backoffs_over() -> None:
    """Every retry's backoff passes."""
    Notification.objects.filter(status=Status.DEFERRED).update(send_after=timezone.now())


def provider_requests(providers) -> int:
    return sum(providers.attempts.values())


def reload(notifications: list[Notification]) -> list[Notification]:
    return list(Notification.objects.filter(pk__in=[n.pk for n in notifications]).order_by("pk"))


@pytest.mark.usefixtures("eager_tasks")
def test_an_outage_pauses_the_channel_and_everything_goes_once_the_provider_is_back(
    providers, planned
):
    providers.always(ALL, "503")

    assert release_reminders.apply().get() == COUNT  # the day's fan-out: three batches

    # The first batch's errors opened the breaker; the other two waited without a try.
    assert breaker().state == State.OPEN
    assert provider_requests(providers) == 10
    first_batch, held = reload(planned[:10]), reload(planned[10:])
    assert {(n.status, n.attempts) for n in first_batch} == {(Status.DEFERRED, 1)}
    assert {(n.status, n.attempts, n.failing_since) for n in held} == {(Status.DEFERRED, 0, None)}

    # Paused, nothing goes to the broker, even once every backoff is over...
    backoffs_over()
    assert release_reminders.apply().get() == 0
    # ...but one probe at each probe time, further apart after each failure.
    for expected_interval in (60, 120, 120):
        probe_due()
        assert release_reminders.apply().get() == 1
        assert (breaker().state, breaker().probe_interval_seconds) == (
            State.OPEN,
            expected_interval,
        )
    assert provider_requests(providers) == 13

    providers.always(ALL, "ok")
    probe_due()
    backoffs_over()
    assert release_reminders.apply().get() == COUNT  # the probe, then all that waited

    assert breaker().state == State.CLOSED
    everything = reload(planned)
    assert {n.status for n in everything} == {Status.SENT}
    assert all(providers.accepted[phone(n)] == 1 for n in range(COUNT))
    assert provider_requests(providers) == 13 + COUNT
    # What waited through the pause spent no try on it.
    assert {n.attempts for n in reload(planned[10:])} == {1}


def test_a_run_of_errors_broken_by_a_success_keeps_the_channel_sending(providers, planned):
    outcomes = ["503"] * (THRESHOLD - 1) + ["ok"] + ["503"] * (THRESHOLD - 1)
    for notification, outcome in zip(planned, outcomes, strict=False):
        providers.script(notification.customer.phone, [outcome])
        dispatch.send_many(planning.claim_for_enqueue(limit=1, stalled_after=timedelta(hours=1)))

    assert (breaker().state, breaker().consecutive_failures) == (State.CLOSED, THRESHOLD - 1)

    providers.script(planned[len(outcomes)].customer.phone, ["503"])
    dispatch.send_many(planning.claim_for_enqueue(limit=1, stalled_after=timedelta(hours=1)))

    assert breaker().state == State.OPEN
    assert "503" in breaker().last_error


def test_a_provider_that_stops_answering_in_time_is_paused_too(providers, planned, settings):
    settings.PROVIDER_BREAKER_FAILURES = 1
    settings.TWILIO_TIMEOUT_SECONDS = 1
    providers.hang_seconds = 2
    providers.script(planned[0].customer.phone, ["timeout"])

    dispatch.send_many(planning.claim_for_enqueue(limit=1, stalled_after=timedelta(hours=1)))

    assert breaker().state == State.OPEN
    # The send may have reached the provider: recovery asks it before any other try.
    assert Notification.objects.get(pk=planned[0].pk).status == Status.SENDING


def test_a_provider_that_answers_never_writes_its_breaker(providers, planned):
    dispatch.send_many(planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1)))

    assert Notification.objects.filter(status=Status.SENT).count() == COUNT
    assert not CircuitBreaker.objects.exists()


def paused(provider: str, **fields) -> CircuitBreaker:
    """The SMS provider's breaker, as a run of errors left it: open, its probe 30 s away."""
    now = timezone.now()
    opened = {
        "state": State.OPEN,
        "consecutive_failures": THRESHOLD,
        "opened_at": now,
        "probe_interval_seconds": 30,
        "next_probe_at": now + timedelta(seconds=30),
    }
    return CircuitBreaker.objects.create(channel=SMS, provider=provider, **{**opened, **fields})


def test_a_paused_sms_provider_holds_sms_and_not_email(providers, planned):
    sms = planned[0]
    lifecycle.move(sms.pk, Status.QUEUED)  # enqueued before the provider was paused
    paused("twilio")
    email = make_notification(sms.policy, channel=EMAIL, lead_days=7)

    # The paused channel's reminders stay in the database; the other channel's go.
    assert planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1)) == [email.pk]
    outcomes = dispatch.send_many([email.pk, sms.pk])

    assert outcomes[email.pk].status == Status.SENT
    assert outcomes[sms.pk].status == Status.DEFERRED
    assert Notification.objects.get(pk=sms.pk).attempts == 0
    assert provider_requests(providers) == 1


def test_a_provider_switched_in_during_an_outage_sends_at_once(providers, planned, settings):
    paused("twilio")
    settings.SMS_BACKEND = "outbox"  # the site moved SMS to another provider

    ids = planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1))

    assert len(ids) == COUNT


@pytest.mark.django_db(transaction=True)
def test_two_batches_racing_for_a_due_probe_send_one_message(providers, rules):
    rules(7, SMS)
    agent = make_agent()
    for n in range(10):
        customer = make_customer(f"racer{n}@mail.example", phone=phone(n), timezone="UTC")
        make_policy(
            f"R-{n}",
            customer=customer,
            agent=agent,
            expiry_date=timezone.localdate() + timedelta(7),
        )
    planning.plan_due(run_date=timezone.localdate())
    ids = sorted(Notification.objects.values_list("pk", flat=True))
    planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1))  # before the pause
    paused("twilio", next_probe_at=timezone.now())
    providers.always(ALL, "503")

    run_at_once(lambda: dispatch.send_many(ids[:5]), lambda: dispatch.send_many(ids[5:]))

    assert provider_requests(providers) == 1
    assert (breaker().state, breaker().probe_interval_seconds) == (State.OPEN, 60)
    attempts = sorted(Notification.objects.values_list("attempts", flat=True))
    assert attempts == [0] * 9 + [1]


def test_a_probe_that_cannot_go_gives_its_turn_back(providers, planned):
    paused("twilio", next_probe_at=timezone.now())
    probe = planned[0]
    Policy.objects.filter(pk=probe.policy_id).update(status=Policy.Status.CANCELLED)

    ids = planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1))
    assert ids == [probe.pk]  # the release's probe...
    assert breaker().probe_notification_id == probe.pk
    dispatch.send_many(ids)  # ...is cancelled at the send instead

    assert breaker().state == State.OPEN
    assert breaker().next_probe_at <= timezone.now()  # another may probe at once
    assert planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1)) == [
        planned[1].pk
    ]


# --- Waiting is not stalling ------------------------------------------------------------------


def test_a_notification_waiting_out_its_backoff_is_never_taken_for_a_stalled_one(
    providers, planned
):
    notification = planned[0]
    providers.script(notification.customer.phone, ["503"])
    ids = planning.claim_for_enqueue(limit=1, stalled_after=timedelta(minutes=30))
    dispatch.send_many(ids)
    waiting = Notification.objects.filter(pk=notification.pk)
    (deferred,) = waiting
    assert (deferred.status, deferred.attempts) == (Status.DEFERRED, 1)
    # Hours in deferred, far past the stall time, its backoff still to run.
    long_ago = timezone.now() - timedelta(hours=3)
    waiting.update(status_changed_at=long_ago, send_after=timezone.now() + timedelta(minutes=20))

    assert notification.pk not in planning.claim_for_enqueue(
        limit=100, stalled_after=timedelta(minutes=30)
    )
    assert (waiting.get().status, waiting.get().attempts) == (Status.DEFERRED, 1)
    assert waiting.get().failing_since == deferred.failing_since


def test_a_notification_waiting_for_a_paused_provider_is_never_taken_for_a_stalled_one(
    providers, planned
):
    lifecycle.move(planned[0].pk, Status.QUEUED)  # enqueued before the provider was paused
    paused("twilio")
    assert dispatch.send(planned[0].pk).status == Status.DEFERRED  # it waits, untried
    waiting = Notification.objects.filter(pk=planned[0].pk)
    waiting.update(status_changed_at=timezone.now() - timedelta(hours=3))

    assert planning.claim_for_enqueue(limit=100, stalled_after=timedelta(minutes=30)) == []
    assert (waiting.get().status, waiting.get().attempts) == (Status.DEFERRED, 0)


# --- The admin --------------------------------------------------------------------------------


def test_the_admin_lists_the_breakers_and_resumes_one_by_hand(
    providers, planned, client, staff_roles
):
    paused("twilio", last_error="Twilio HTTP 503")
    client.force_login(make_staff("ops", roles=["Renewal admins"]))
    url = reverse("admin:notifications_circuitbreaker_changelist")

    page = client.get(url).content.decode()
    assert "Open: paused, waiting to probe" in page
    assert "Twilio HTTP 503" in page

    response = client.post(
        url, {"action": "resume", "_selected_action": [breaker().pk]}, follow=True
    )

    assert "1 resumed" in response.content.decode()
    assert breaker().state == State.CLOSED
    assert len(planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1))) == COUNT


def test_support_sees_the_breakers_but_cannot_resume_one(providers, planned, client, staff_roles):
    paused("twilio")
    client.force_login(make_staff("support", roles=["Support (read-only)"]))
    url = reverse("admin:notifications_circuitbreaker_changelist")

    page = client.get(url)
    assert page.status_code == 200
    assert "Resume sending now" not in page.content.decode()
    client.post(url, {"action": "resume", "_selected_action": [breaker().pk]})

    assert breaker().state == State.OPEN


def test_the_probe_is_a_reminder_still_worth_sending(providers, planned):
    """After a long outage the oldest waiting reminders may be stale (their policy expired):
    they would give the probe's turn back unsent, one release at a time."""
    paused("twilio", next_probe_at=timezone.now())
    today = timezone.localdate()
    stale = [n.pk for n in planned[:5]]
    Notification.objects.filter(pk__in=stale).update(
        expiry_date=today - timedelta(days=1), due_on=today - timedelta(days=8)
    )

    (probe,) = planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1))

    assert probe not in stale


def test_a_probe_that_never_reported_is_claimed_again_after_two_leases(providers, planned):
    lost = planned[0]
    started = timezone.now() - 2 * leases.lease_duration() - timedelta(seconds=1)
    paused("twilio", state=State.PROBING, probe_notification=lost, probe_started_at=started)
    lifecycle.move(lost.pk, Status.CANCELLED)  # cancelled while queued: it never went

    ids = planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1))

    assert len(ids) == 1
    assert breaker().probe_notification_id == ids[0] != lost.pk


def test_a_rate_limit_that_cannot_be_counted_costs_neither_breaker_nor_budget(
    providers, planned, settings
):
    settings.SEND_RATE_LIMITS = {"email": 0, "sms": 5}
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    batch = [n.pk for n in planned[: THRESHOLD + 2]]
    lifecycle.move(batch, Status.QUEUED)

    outcomes = dispatch.send_many(batch)

    assert {outcome.status for outcome in outcomes.values()} == {Status.DEFERRED}
    assert breaker().state == State.CLOSED
    assert breaker().consecutive_failures == 0
    assert {(n.attempts, n.failing_since) for n in reload(planned[: THRESHOLD + 2])} == {(0, None)}
    assert provider_requests(providers) == 0
