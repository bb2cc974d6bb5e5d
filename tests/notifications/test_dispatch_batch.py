"""Sending a batch: dispatch.send_many and the send_batch task the fan-out publishes, through the
real twilio SDK and anymail's Postmark backend talking to the local fake provider. A batch keeps
every promise a single send makes: each notification goes once, whatever claimed it first wins,
and each outcome (sent, cancelled, deferred, failed, retried) is recorded as `send` records it."""

from datetime import UTC, timedelta

import pytest
from anymail.backends.postmark import EmailBackend as PostmarkBackend
from anymail.exceptions import AnymailSerializationError
from django.utils import timezone

from notifications import circuit, dispatch, lifecycle, planning, recovery
from notifications.channels.sms import TwilioSmsChannel
from notifications.models import Channel, MessageTemplate, Notification, ReminderRule
from notifications.tasks import fan_out, release_reminders, send_batch
from policies.models import Customer, Policy
from tests.factories import make_agent, make_customer, make_policy, make_rule
from tests.notifications.conftest import retry_for_hours

pytestmark = pytest.mark.django_db

EMAIL, SMS = Channel.EMAIL, Channel.SMS
Status = Notification.Status


@pytest.fixture
def providers(providers, settings):
    """The shared fake-provider setup; SMS may go at any hour unless a test says not."""
    settings.SMS_WINDOW_START_HOUR, settings.SMS_WINDOW_END_HOUR = 0, 24
    settings.REMINDER_SEND_THREADS = 4
    return providers


def phone(n: int) -> str:
    return f"+1415555{n:04d}"


def email(n: int) -> str:
    return f"customer{n}@mail.example"


@pytest.fixture
def queued(db) -> dict[tuple[str, int], Notification]:
    """Three customers due a 7-day reminder by email and by SMS, planned and queued by the
    fan-out's claim: {(channel, customer number): Notification}."""
    ReminderRule.objects.all().delete()
    make_rule(7, EMAIL)
    make_rule(7, SMS)
    agent = make_agent()
    expiry = timezone.localdate() + timedelta(7)
    for n in (1, 2, 3):
        customer = make_customer(email(n), phone=phone(n), name=f"Pat {n}", timezone="UTC")
        make_policy(f"P-{n}", customer=customer, agent=agent, expiry_date=expiry)
    planning.plan_due(run_date=timezone.localdate())
    planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1))
    notifications = Notification.objects.select_related("policy")
    return {(n.channel, int(n.policy.policy_number[2:])): n for n in notifications}


def ids(queued) -> list[int]:
    return sorted(notification.pk for notification in queued.values())


def reload(notification: Notification) -> Notification:
    return Notification.objects.get(pk=notification.pk)


def test_a_batch_sends_each_notification_once(providers, queued):
    outcomes = dispatch.send_many(ids(queued))

    assert {outcome.status for outcome in outcomes.values()} == {Status.SENT}
    assert set(outcomes) == set(ids(queued))
    assert sum(providers.accepted.values()) == 6
    assert all(
        providers.accepted[recipient] == 1 for n in (1, 2, 3) for recipient in (email(n), phone(n))
    )
    sent_ids = {message.id for message in providers.messages}
    for notification in map(reload, queued.values()):
        assert (notification.status, notification.attempts) == (Status.SENT, 1)
        assert notification.provider_message_id in sent_ids
        assert outcomes[notification.pk].detail == notification.provider_message_id
        assert notification.sent_at is not None
        assert notification.last_error == ""


def test_the_same_batch_sent_again_sends_nothing(providers, queued):
    dispatch.send_many(ids(queued))
    recorded = {n.pk: (n.status, n.provider_message_id) for n in map(reload, queued.values())}

    again = dispatch.send_many(ids(queued))

    assert dispatch.summary(again) == {"not claimed": 6}
    assert sum(providers.attempts.values()) == 6
    assert {n.pk: (n.status, n.provider_message_id) for n in map(reload, queued.values())} == (
        recorded
    )
    assert {reload(n).attempts for n in queued.values()} == {1}


def test_a_notification_someone_else_claimed_is_skipped(providers, queued):
    taken = queued[(SMS, 2)]
    assert lifecycle.move(taken.pk, Status.SENDING) == 1  # another worker, mid-send

    outcomes = dispatch.send_many(ids(queued))

    assert outcomes[taken.pk] == dispatch.NotClaimed()
    assert providers.attempts[phone(2)] == 0
    assert reload(taken).status == Status.SENDING
    assert sum(providers.accepted.values()) == 5
    others = [n for key, n in queued.items() if key != (SMS, 2)]
    assert {reload(n).status for n in others} == {Status.SENT}


def test_one_batch_records_a_permanent_error_a_transient_one_and_a_success(providers, queued):
    providers.script(phone(1), ["unsubscribed"])  # Twilio 21610: the customer replied STOP
    providers.script(phone(2), ["503"])
    batch = [queued[(SMS, 1)], queued[(SMS, 2)], queued[(SMS, 3)]]

    outcomes = dispatch.send_many([n.pk for n in batch])

    rejected, unavailable, accepted = map(reload, batch)
    assert outcomes[rejected.pk].status == Status.FAILED
    assert (rejected.status, rejected.attempts) == (Status.FAILED, 1)
    assert "21610" in rejected.last_error
    assert Customer.objects.get(pk=rejected.customer_id).sms_consent is False

    assert outcomes[unavailable.pk].status == Status.DEFERRED
    assert (unavailable.status, unavailable.attempts) == (Status.DEFERRED, 1)
    assert unavailable.send_after > timezone.now()
    assert "503" in unavailable.last_error
    assert unavailable.sent_at is None

    assert outcomes[accepted.pk].status == Status.SENT
    assert accepted.status == Status.SENT
    assert accepted.provider_message_id == outcomes[accepted.pk].detail
    assert Customer.objects.get(pk=accepted.customer_id).sms_consent is True


def test_an_unexpected_error_on_one_message_fails_it_and_records_the_others(
    providers, queued, monkeypatch
):
    send_sms = TwilioSmsChannel.send

    def send_or_break(channel, message):
        if message.to == phone(2):
            raise ValueError("a bug in the SMS channel")
        return send_sms(channel, message)

    monkeypatch.setattr(TwilioSmsChannel, "send", send_or_break)

    outcomes = dispatch.send_many(ids(queued))

    broken = reload(queued[(SMS, 2)])
    # Failed, for a person to look at and retry: left sending, it would go again every stall.
    assert broken.status == Status.FAILED
    assert outcomes[broken.pk].status == Status.FAILED
    assert "a bug in the SMS channel" in broken.last_error
    others = [reload(n) for key, n in queued.items() if key != (SMS, 2)]
    assert {n.status for n in others} == {Status.SENT}
    assert sum(providers.accepted.values()) == 5


@pytest.mark.usefixtures("eager_tasks")
def test_a_transient_error_in_a_batch_waits_its_backoff_then_goes_with_the_release(
    providers, queued
):
    providers.script(phone(2), ["503", "ok"])

    counts = send_batch.apply(args=[ids(queued)]).get()

    assert counts == {Status.SENT: 5, Status.DEFERRED: 1}
    assert release_reminders.apply().get() == 0  # not before its backoff is over
    Notification.objects.filter(pk=queued[(SMS, 2)].pk).update(send_after=timezone.now())
    assert release_reminders.apply().get() == 1
    retried = reload(queued[(SMS, 2)])
    assert (retried.status, retried.attempts, retried.last_error) == (Status.SENT, 2, "")
    assert providers.accepted[phone(2)] == 1
    assert sum(providers.accepted.values()) == 6


def test_a_transient_error_with_no_retry_budget_fails(providers, queued, settings):
    retry_for_hours(settings, 0)
    providers.script(phone(2), ["503"])
    notification = queued[(SMS, 2)]

    outcome = dispatch.send_many([notification.pk])[notification.pk]

    notification = reload(notification)
    assert outcome.status == Status.FAILED
    assert notification.status == Status.FAILED
    assert notification.last_error.startswith("gave up after 0 h of provider errors: ")
    assert notification.failed_transiently


@pytest.mark.usefixtures("eager_tasks")
def test_a_permanently_failed_sms_in_a_batch_falls_back_to_email(providers, queued):
    sms = queued[(SMS, 1)]
    rule = sms.rule
    rule.fallback_template = MessageTemplate.objects.filter(channel=EMAIL, kind="reminder").first()
    rule.save()
    queued[(EMAIL, 1)].delete()  # only the SMS rule's reminder is part of this story
    providers.script(phone(1), ["invalid"])

    send_batch.apply(args=[[sms.pk]]).get()

    assert reload(sms).status == Status.FAILED
    fallback = Notification.objects.get(fallback_for=sms)
    assert (fallback.channel, fallback.status) == (EMAIL, Status.SENT)
    assert providers.accepted[email(1)] == 1


def test_a_notification_no_longer_due_is_cancelled_with_its_reason(providers, queued):
    Policy.objects.filter(policy_number="P-3").update(status=Policy.Status.CANCELLED)

    outcomes = dispatch.send_many(ids(queued))

    for channel in (EMAIL, SMS):
        cancelled = reload(queued[(channel, 3)])
        assert (cancelled.status, cancelled.last_error) == (Status.CANCELLED, "policy is cancelled")
        assert outcomes[cancelled.pk] == dispatch.Outcome(Status.CANCELLED, "policy is cancelled")
    assert providers.attempts[email(3)] == providers.attempts[phone(3)] == 0
    assert sum(providers.accepted.values()) == 4


def test_sms_outside_the_customers_hours_is_deferred_while_email_goes(providers, queued, settings):
    hour = timezone.now().astimezone(UTC).hour  # the customers live in UTC
    settings.SMS_WINDOW_START_HOUR, settings.SMS_WINDOW_END_HOUR = (
        (hour + 1, 24) if hour < 23 else (0, 23)
    )

    outcomes = dispatch.send_many(ids(queued))

    for n in (1, 2, 3):
        deferred, sent = reload(queued[(SMS, n)]), reload(queued[(EMAIL, n)])
        assert (deferred.status, deferred.attempts) == (Status.DEFERRED, 0)
        assert deferred.send_after > timezone.now()
        assert outcomes[deferred.pk].status == Status.DEFERRED
        assert sent.status == Status.SENT
    assert sum(providers.attempts[phone(n)] for n in (1, 2, 3)) == 0
    assert sum(providers.accepted.values()) == 3


@pytest.mark.usefixtures("eager_tasks")
def test_fan_out_sends_everything_in_batches_of_the_configured_size(
    providers, settings, monkeypatch
):
    settings.REMINDER_SEND_BATCH_SIZE = 4
    ReminderRule.objects.all().delete()
    make_rule(7, EMAIL)
    make_rule(7, SMS)
    agent = make_agent()
    for n in range(1, 6):
        customer = make_customer(email(n), phone=phone(n), timezone="UTC")
        make_policy(
            f"F-{n}",
            customer=customer,
            agent=agent,
            expiry_date=timezone.localdate() + timedelta(7),
        )
    planning.plan_due(run_date=timezone.localdate())
    batches = []
    send_many = dispatch.send_many
    monkeypatch.setattr(dispatch, "send_many", lambda ids: batches.append(ids) or send_many(ids))

    assert fan_out() == 10

    assert [len(batch) for batch in batches] == [4, 4, 2]
    assert set(Notification.objects.values_list("status", flat=True)) == {Status.SENT}
    assert sum(providers.accepted.values()) == 10


def test_a_template_using_the_agents_name_renders_in_a_batch(providers, queued):
    """Rendering reads the database (the agent's login, for their name) on the batch's own
    connection, never a send thread's (a send thread's connection would be one more per
    thread, never closed, and blind to this test's transaction)."""
    template = MessageTemplate.objects.get(pk=queued[(SMS, 1)].rule.template_id)
    template.body = "{{ customer.name }}: {{ agent.name }}"
    template.save()

    outcomes = dispatch.send_many(ids(queued))

    assert {outcome.status for outcome in outcomes.values()} == {Status.SENT}
    sms_bodies = {m.body for m in providers.messages if m.channel == "sms"}
    assert sms_bodies == {"Pat 1: Agent", "Pat 2: Agent", "Pat 3: Agent"}


def email_ids(queued) -> list[int]:
    return [queued[(EMAIL, n)].pk for n in (1, 2, 3)]


def test_a_batchs_emails_go_to_postmark_in_one_request_each_recorded_with_its_own_id(
    providers, queued
):
    dispatch.send_many(ids(queued))

    assert providers.send_requests == {"postmark email/batch": 1, "twilio messages": 3}
    message_id = {message.recipient: message.id for message in providers.messages}
    for n in (1, 2, 3):
        notification = reload(queued[(EMAIL, n)])
        assert notification.status == Status.SENT
        assert notification.provider_message_id == message_id[email(n)]
    assert len(set(message_id.values())) == 6


def test_an_address_postmark_refuses_in_a_batch_fails_alone(providers, queued):
    providers.script(email(2), ["invalid"])

    outcomes = dispatch.send_many(email_ids(queued))

    refused = reload(queued[(EMAIL, 2)])
    assert refused.status == Status.FAILED
    assert refused.last_error == f"recipient refused: Invalid 'To' address: '{email(2)}'."
    assert outcomes[refused.pk].status == Status.FAILED
    assert {reload(queued[(EMAIL, n)]).status for n in (1, 3)} == {Status.SENT}
    assert providers.send_requests == {"postmark email/batch": 1}


def test_an_email_whose_payload_cannot_be_built_fails_alone_and_the_batch_goes(
    providers, queued, monkeypatch
):
    build_payload = PostmarkBackend.build_message_payload

    def build_or_break(backend, message, defaults):
        if message.to == [email(2)]:
            raise AnymailSerializationError("cannot serialize this message's metadata")
        return build_payload(backend, message, defaults)

    monkeypatch.setattr(PostmarkBackend, "build_message_payload", build_or_break)

    outcomes = dispatch.send_many(email_ids(queued))

    broken = reload(queued[(EMAIL, 2)])
    assert broken.status == Status.FAILED
    assert outcomes[broken.pk].status == Status.FAILED
    assert "cannot serialize this message's metadata" in broken.last_error
    assert {reload(queued[(EMAIL, n)]).status for n in (1, 3)} == {Status.SENT}
    assert providers.send_requests == {"postmark email/batch": 1}
    assert sorted(message.recipient for message in providers.messages) == [email(1), email(3)]


def test_a_batch_postmark_refuses_whole_defers_each_email_as_one_provider_error(providers, queued):
    providers.script(email(1), ["503"])  # the fake answers the whole request 503

    outcomes = dispatch.send_many(email_ids(queued))

    assert {outcome.status for outcome in outcomes.values()} == {Status.DEFERRED}
    for n in (1, 2, 3):
        notification = reload(queued[(EMAIL, n)])
        assert notification.status == Status.DEFERRED
        assert "email provider unavailable" in notification.last_error
    assert circuit.breakers([EMAIL])[EMAIL].consecutive_failures == 1


def test_a_batch_with_no_answer_is_reconciled_message_by_message(providers, queued, settings):
    settings.EMAIL_TIMEOUT = settings.ANYMAIL["REQUESTS_TIMEOUT"] = 1
    providers.hang_seconds = 3
    providers.script(email(2), ["timeout"])  # Postmark took them all, its answer never came

    outcomes = dispatch.send_many(email_ids(queued))

    assert {outcome.status for outcome in outcomes.values()} == {Status.SENDING}
    unconfirmed = Notification.objects.filter(pk__in=email_ids(queued), lease__isnull=True)
    assert unconfirmed.update(recover_after=timezone.now()) == 3
    assert recovery.recover_abandoned() == {recovery.FOUND: 3}
    message_id = {message.recipient: message.id for message in providers.messages}
    for n in (1, 2, 3):
        notification = reload(queued[(EMAIL, n)])
        assert notification.status == Status.SENT
        assert notification.provider_message_id == message_id[email(n)]
        assert providers.accepted[email(n)] == 1
