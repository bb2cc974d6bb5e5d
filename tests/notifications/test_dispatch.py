"""Sending one notification, by dispatch.send and by the send_batch task run in-process: claimed
once however often it is called, checked again before it goes out, written to the real outbox,
and backed off in the database, retried or failed as its channel's error says."""

import json
import socket
from datetime import timedelta
from email import policy as email_policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from celery.signals import worker_process_init
from django.utils import timezone

from notifications import dispatch, lifecycle, planning, retries
from notifications.channels import SMS_BACKENDS, PermanentSendError, TransientSendError
from notifications.channels.outbox import OutboxSmsChannel
from notifications.models import Channel, Notification
from notifications.tasks import release_reminders, send_batch
from policies.models import Policy
from tests.factories import make_agent, make_customer, make_policy
from tests.notifications.conftest import retry_for_hours, run_at_once, send_until_settled

pytestmark = pytest.mark.django_db

EMAIL, SMS = Channel.EMAIL, Channel.SMS
Status = Notification.Status
STALLED_AFTER = timedelta(minutes=30)


def claim(limit: int = 100) -> list[int]:
    return planning.claim_for_enqueue(limit=limit, stalled_after=STALLED_AFTER)


def outbox_files(outbox: Path) -> list[Path]:
    return sorted(path for path in outbox.rglob("*") if path.is_file())


def reload(notification: Notification) -> Notification:
    return Notification.objects.get(pk=notification.pk)


def due_policy(number: str, agent, **customer_fields) -> Policy:
    """A policy whose 7-day reminders fall due today, of a customer reachable both ways."""
    customer = make_customer(
        **{"email": f"{number.lower()}@mail.example", "name": f"Pat {number}", **customer_fields}
    )
    return make_policy(
        number, customer=customer, agent=agent, expiry_date=timezone.localdate() + timedelta(7)
    )


@pytest.fixture
def policy(rules, agent) -> Policy:
    rules(7, EMAIL)
    rules(7, SMS)
    return due_policy("P-1", agent, phone="+14155550123")


@pytest.fixture
def planned(policy) -> dict[str, Notification]:
    """Today's scan: one planned reminder per channel."""
    run = planning.plan_due(run_date=timezone.localdate())
    notifications = {n.channel: n for n in run.notifications.all()}
    assert set(notifications) == {EMAIL, SMS}
    return notifications


@pytest.fixture
def queued(planned) -> dict[str, Notification]:
    """The planned reminders, claimed for sending as the fan-out does."""
    assert claim() == sorted(n.pk for n in planned.values())
    return {channel: reload(n) for channel, n in planned.items()}


# --- Sending ------------------------------------------------------------------------------------


def test_queued_email_is_sent_and_written_to_the_outbox(queued, outbox, policy):
    notification = queued[EMAIL]

    outcome = dispatch.send(notification.pk)

    notification = reload(notification)
    assert notification.status == Status.SENT
    assert notification.provider_message_id
    assert outcome == dispatch.Outcome(Status.SENT, notification.provider_message_id)
    assert notification.sent_at is not None
    assert notification.attempts == 1
    assert notification.last_error == ""
    path = outbox / "email" / f"notification-{notification.pk}.eml"
    assert outbox_files(outbox) == [path]
    message = BytesParser(policy=email_policy.default).parsebytes(path.read_bytes())
    assert message["To"] == "p-1@mail.example"
    assert message["Subject"] == f"Policy P-1 expires {policy.expiry_date:%Y-%m-%d}"
    assert message["Message-ID"] == notification.provider_message_id
    assert message["X-Renewly-Notification"] == str(notification.pk)
    assert message.get_content().startswith("Dear Pat P-1, P-1 expires on")


def test_queued_sms_is_sent_and_written_to_the_outbox(queued, outbox):
    notification = queued[SMS]

    outcome = dispatch.send(notification.pk)

    notification = reload(notification)
    assert outcome == dispatch.Outcome(Status.SENT, notification.provider_message_id)
    assert (notification.status, notification.attempts) == (Status.SENT, 1)
    assert notification.sent_at is not None
    path = outbox / "sms" / f"notification-{notification.pk}.json"
    assert outbox_files(outbox) == [path]
    record = json.loads(path.read_text())
    assert record["id"] == notification.provider_message_id
    assert record["notification_id"] == notification.pk
    assert record["to"] == "+14155550123"
    assert "P-1" in record["body"]


@pytest.mark.parametrize("channel", [EMAIL, SMS])
def test_sending_twice_sends_once(queued, outbox, channel):
    notification = queued[channel]
    first = dispatch.send(notification.pk)
    files = outbox_files(outbox)
    written = files[0].read_bytes()

    second = dispatch.send(notification.pk)

    assert first.status == Status.SENT
    assert isinstance(second, dispatch.NotClaimed)
    assert outbox_files(outbox) == files
    assert len(files) == 1
    assert files[0].read_bytes() == written
    notification = reload(notification)
    assert (notification.status, notification.attempts) == (Status.SENT, 1)
    assert notification.provider_message_id == first.detail


def test_redelivered_send_task_sends_once(queued, outbox):
    notification = queued[SMS]

    results = [send_batch.apply(args=[[notification.pk]]).get() for _ in range(2)]

    assert results == [{Status.SENT: 1}, {"not claimed": 1}]
    assert len(outbox_files(outbox)) == 1
    assert reload(notification).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_two_workers_sending_the_same_notification_at_once_send_it_once(rules, outbox):
    rules(7, EMAIL)
    agent = make_agent("racer", "racer@agency.example")
    due_policy("P-1", agent)
    planning.plan_due(run_date=timezone.localdate())
    (notification_id,) = claim()

    outcomes = run_at_once(*[lambda: dispatch.send(notification_id)] * 2)

    assert dispatch.summary(dict(enumerate(outcomes))) == {Status.SENT: 1, "not claimed": 1}
    assert outbox_files(outbox) == [outbox / "email" / f"notification-{notification_id}.eml"]
    notification = Notification.objects.get(pk=notification_id)
    assert (notification.status, notification.attempts) == (Status.SENT, 1)


def test_planned_notification_not_yet_queued_cannot_be_sent(planned, outbox):
    notification = planned[EMAIL]

    outcome = dispatch.send(notification.pk)

    assert isinstance(outcome, dispatch.NotClaimed)
    notification = reload(notification)
    assert (notification.status, notification.attempts) == (Status.PLANNED, 0)
    assert outbox_files(outbox) == []


# --- Checked again before it goes out -----------------------------------------------------------


def renew(policy: Policy) -> str:
    policy.start_date, policy.expiry_date = policy.expiry_date, policy.expiry_date + timedelta(365)
    policy.save()
    return f"policy expiry date changed to {policy.expiry_date}"


def cancel(policy: Policy) -> str:
    policy.status = Policy.Status.CANCELLED
    policy.save()
    return "policy is cancelled"


def withdraw_email_consent(policy: Policy) -> str:
    policy.customer.email_consent = False
    policy.customer.save()
    return "customer opted out of email"


def withdraw_sms_consent(policy: Policy) -> str:
    policy.customer.sms_consent = False
    policy.customer.save()
    return "customer opted out of SMS"


def remove_phone(policy: Policy) -> str:
    policy.customer.phone = ""
    policy.customer.save()
    return "customer has no phone number"


@pytest.mark.parametrize(
    ("change", "channel"),
    [
        (renew, EMAIL),
        (renew, SMS),
        (cancel, EMAIL),
        (withdraw_email_consent, EMAIL),
        (withdraw_sms_consent, SMS),
        (remove_phone, SMS),
    ],
)
def test_notification_no_longer_due_when_sent_is_cancelled_with_a_reason(
    queued, outbox, change, channel
):
    notification = queued[channel]
    reason = change(Policy.objects.select_related("customer").get(pk=notification.policy_id))

    outcome = dispatch.send(notification.pk)

    assert outcome == dispatch.Outcome(Status.CANCELLED, reason)
    notification = reload(notification)
    assert notification.status == Status.CANCELLED
    assert notification.last_error == reason
    assert notification.sent_at is None
    assert notification.provider_message_id == ""
    assert outbox_files(outbox) == []


def test_withdrawn_email_consent_does_not_stop_the_sms(queued, outbox):
    withdraw_email_consent(Policy.objects.get(pk=queued[EMAIL].policy_id))

    outcomes = [dispatch.send(queued[channel].pk).status for channel in (EMAIL, SMS)]

    assert outcomes == [Status.CANCELLED, Status.SENT]
    assert outbox_files(outbox) == [outbox / "sms" / f"notification-{queued[SMS].pk}.json"]


# --- Claiming for the fan-out -------------------------------------------------------------------


@pytest.fixture
def book(rules, agent) -> list[int]:
    """Three policies due today by email and SMS: six planned notifications, by id."""
    rules(7, EMAIL)
    rules(7, SMS)
    for number in ("A-1", "A-2", "A-3"):
        due_policy(number, agent)
    run = planning.plan_due(run_date=timezone.localdate())
    return sorted(run.notifications.values_list("id", flat=True))


def test_claim_for_enqueue_returns_planned_ids_once(book):
    before = timezone.now()

    first = claim()
    second = claim()

    assert len(book) == 6
    assert first == book
    assert second == []
    queued = Notification.objects.filter(pk__in=book)
    assert set(queued.values_list("status", flat=True)) == {Status.QUEUED}
    assert all(n.queued_at >= before and n.status_changed_at >= before for n in queued)


def test_claim_for_enqueue_hands_out_at_most_limit_ids_per_call(book):
    assert [claim(limit=4), claim(limit=4), claim(limit=4)] == [book[:4], book[4:], []]


def test_claim_for_enqueue_returns_stalled_queued_ones_again_but_never_sending_ones(book):
    """A stalled sending notification may have reached the provider: only recovery, having
    asked the provider, sends it again (tests/notifications/test_recovery.py)."""
    assert claim() == book
    stalled_queued, stalled_sending, fresh_queued, fresh_sending, old_sent, _ = book
    fresh_changed_at = Notification.objects.get(pk=fresh_queued).status_changed_at
    assert lifecycle.move([stalled_sending, fresh_sending, old_sent], Status.SENDING) == 3
    assert lifecycle.move(old_sent, Status.SENT) == 1
    long_ago = timezone.now() - STALLED_AFTER - timedelta(minutes=1)
    Notification.objects.filter(pk__in=[stalled_queued, stalled_sending, old_sent]).update(
        status_changed_at=long_ago
    )

    again = claim()

    assert again == [stalled_queued]
    requeued = Notification.objects.get(pk=stalled_queued)
    assert requeued.status == Status.QUEUED
    assert requeued.status_changed_at > long_ago
    assert Notification.objects.get(pk=stalled_sending).status == Status.SENDING
    assert Notification.objects.get(pk=fresh_sending).status == Status.SENDING
    assert Notification.objects.get(pk=fresh_queued).status_changed_at == fresh_changed_at
    assert Notification.objects.get(pk=old_sent).status == Status.SENT
    assert claim() == []


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_hand_out_the_same_id(rules):
    rules(7, EMAIL)
    rules(7, SMS)
    agent = make_agent("racer", "racer@agency.example")
    for i in range(20):
        due_policy(f"C-{i:02}", agent)
    planning.plan_due(run_date=timezone.localdate())
    planned = set(Notification.objects.values_list("id", flat=True))

    def claim_until_empty() -> list[int]:
        claimed = []
        while ids := claim(limit=3):
            claimed += ids
        return claimed

    first, second = run_at_once(claim_until_empty, claim_until_empty)

    assert len(planned) == 40
    assert not set(first) & set(second)
    assert sorted(first + second) == sorted(planned)
    assert set(Notification.objects.values_list("status", flat=True)) == {Status.QUEUED}


# --- Statuses never move backwards --------------------------------------------------------------


@pytest.mark.parametrize(
    ("reached", "backwards"),
    [
        (Status.SENT, Status.QUEUED),
        (Status.SENT, Status.SENDING),
        (Status.SENT, Status.PLANNED),
        (Status.DELIVERED, Status.SENT),
        (Status.DELIVERED, Status.QUEUED),
    ],
)
def test_status_never_moves_backwards(queued, outbox, reached, backwards):
    notification = queued[EMAIL]
    assert dispatch.send(notification.pk).status == Status.SENT
    if reached == Status.DELIVERED:
        assert lifecycle.move(notification.pk, Status.DELIVERED, delivered_at=timezone.now()) == 1
    before = reload(notification)

    assert lifecycle.move(notification.pk, backwards) == 0

    after = reload(notification)
    assert after.status == reached
    assert after.status_changed_at == before.status_changed_at


def test_each_worker_process_starts_its_own_send_threads():
    inherited = dispatch.send_threads()

    worker_process_init.send(sender=None)  # as Celery does in each new prefork child

    assert dispatch.send_threads() is not inherited


# --- Provider errors ----------------------------------------------------------------------------


class TimingOutSms:
    def send(self, message):
        raise TransientSendError("provider timed out")


class RejectingSms:
    def send(self, message):
        raise PermanentSendError("invalid number")


class FlakySms:
    """Times out on the first send, then works: the outbox's channel."""

    calls = 0

    def send(self, message):
        type(self).calls += 1
        if type(self).calls == 1:
            raise TransientSendError("provider timed out")
        return OutboxSmsChannel().send(message)


@pytest.fixture
def sms_backend(settings, monkeypatch, outbox):
    """Point SMS_BACKEND at a channel class defined in this module."""

    def use(channel_class: type) -> None:
        name = f"test-{channel_class.__name__}"
        monkeypatch.setitem(SMS_BACKENDS, name, f"{__name__}.{channel_class.__qualname__}")
        monkeypatch.setattr(channel_class, "calls", 0, raising=False)
        settings.SMS_BACKEND = name

    return use


def test_transient_error_defers_the_notification_for_its_backoff(
    queued, outbox, sms_backend, settings
):
    settings.REMINDER_RETRY_BACKOFF_SECONDS = 300
    sms_backend(TimingOutSms)
    notification = queued[SMS]
    before = timezone.now()

    outcome = dispatch.send(notification.pk)

    notification = reload(notification)
    assert outcome.status == notification.status == Status.DEFERRED
    assert notification.last_error == "attempt 1 failed: provider timed out"
    # Half the backoff, and up to the other half at random.
    assert before + timedelta(seconds=150) <= notification.send_after
    assert notification.send_after <= timezone.now() + timedelta(seconds=300)
    assert notification.attempts == 1
    assert notification.sent_at is None
    assert outbox_files(outbox) == []


def test_a_notification_backing_off_is_not_released_before_its_time(queued, outbox, sms_backend):
    sms_backend(TimingOutSms)
    notification = queued[SMS]
    dispatch.send(notification.pk)

    assert notification.pk not in claim()
    Notification.objects.filter(pk=notification.pk).update(send_after=timezone.now())
    assert claim() == [notification.pk]


def test_the_release_sends_a_notification_again_once_its_backoff_is_over(
    queued, outbox, sms_backend, settings, eager_tasks
):
    sms_backend(FlakySms)
    notification = queued[SMS]
    assert dispatch.send(notification.pk).status == Status.DEFERRED
    Notification.objects.filter(pk=notification.pk).update(send_after=timezone.now())

    assert release_reminders.apply().get() == 1

    notification = reload(notification)
    assert (notification.status, notification.attempts) == (Status.SENT, 2)
    assert notification.last_error == ""
    assert outbox_files(outbox) == [outbox / "sms" / f"notification-{notification.pk}.json"]


def test_a_transient_error_that_persists_fails_once_its_retry_budget_is_spent(
    queued, outbox, sms_backend, settings
):
    retry_for_hours(settings, 24)
    sms_backend(TimingOutSms)
    notification = queued[SMS]

    # Each backoff, ten hours of the budget go by: tried at 0, 10 and 20 hours, given up at 30.
    notification = send_until_settled(notification.pk, hours_each_wait=10)

    assert (notification.status, notification.attempts) == (Status.FAILED, 4)
    assert notification.last_error == "gave up after 24 h of provider errors: provider timed out"
    assert notification.failed_transiently
    assert outbox_files(outbox) == []


def test_with_no_retry_budget_a_transient_error_fails_at_once(
    queued, outbox, sms_backend, settings
):
    retry_for_hours(settings, 0)
    sms_backend(TimingOutSms)

    notification = send_until_settled(queued[SMS].pk)

    assert (notification.status, notification.attempts) == (Status.FAILED, 1)
    assert notification.last_error == "gave up after 0 h of provider errors: provider timed out"


def test_the_backoff_doubles_with_each_attempt_up_to_its_cap_with_jitter(settings):
    settings.REMINDER_RETRY_BACKOFF_SECONDS = 300
    settings.REMINDER_RETRY_BACKOFF_MAX_SECONDS = 3600

    for attempts, backoff in [(1, 300), (2, 600), (3, 1200), (4, 2400), (5, 3600), (6, 3600)]:
        waits = {retries.retry_backoff(attempts) for _ in range(200)}
        assert backoff // 2 <= min(waits)
        assert max(waits) <= backoff
        assert len(waits) > 1  # spread out, not all at once


def test_a_notification_given_up_on_is_not_enqueued_again(queued, outbox, sms_backend, settings):
    retry_for_hours(settings, 0)
    sms_backend(TimingOutSms)
    notification = queued[SMS]
    assert dispatch.send(notification.pk).status == Status.FAILED
    Notification.objects.filter(pk=notification.pk).update(
        status_changed_at=timezone.now() - STALLED_AFTER - timedelta(minutes=1)
    )

    assert notification.pk not in claim()


def test_permanent_error_fails_at_once(queued, outbox, sms_backend):
    sms_backend(RejectingSms)
    notification = queued[SMS]

    outcome = dispatch.send(notification.pk)

    assert outcome == dispatch.Outcome(Status.FAILED, "invalid number")
    notification = reload(notification)
    assert notification.status == Status.FAILED
    assert notification.last_error == "invalid number"
    assert notification.attempts == 1
    assert outbox_files(outbox) == []


def test_a_permanent_error_is_not_retried(queued, outbox, sms_backend):
    sms_backend(RejectingSms)
    notification = queued[SMS]

    notification = send_until_settled(notification.pk)

    assert (notification.status, notification.attempts) == (Status.FAILED, 1)
    assert notification.last_error == "invalid number"


def closed_local_port() -> int:
    """A local TCP port nothing listens on: connecting to it is refused."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_email_server_refusing_the_connection_is_a_transient_error(queued, outbox, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", closed_local_port()
    settings.EMAIL_TIMEOUT = 5
    notification = queued[EMAIL]

    assert dispatch.send(notification.pk).status == Status.DEFERRED

    notification = reload(notification)
    assert notification.status == Status.DEFERRED
    assert notification.last_error.startswith("attempt 1 failed: ")
