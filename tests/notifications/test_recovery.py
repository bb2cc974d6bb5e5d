"""Recovery: a notification a dead worker left sending is reconciled with the provider (the
fake's Postmark search and Twilio message list, through the real clients; the outbox's files)
before anything else happens to it, and sent again only when the provider does not have it."""

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.db.models import F
from django.utils import timezone

from notifications import dispatch, leases, lifecycle, planning, recovery
from notifications.channels import sending_through
from notifications.models import MessageTemplate, Notification, WorkerLease
from notifications.rendering import render
from notifications.signals import reconciled
from notifications.tasks import release_reminders
from tests.factories import queue_an_email_and_an_sms
from tests.fake_provider import ALL, DEFAULT_MESSAGING_SERVICE_SID, DEFAULT_SHORT_LINK_DOMAIN
from tests.notifications.conftest import retry_for_hours, run_at_once, send_until_settled

Status = Notification.Status
PHONE = "+14155550100"
EMAIL = "pat@mail.example"
RECIPIENT = {"sms": PHONE, "email": EMAIL}


@pytest.fixture
def queued(db):
    return queue_an_email_and_an_sms(EMAIL, PHONE)


def died_while_sending(notification: Notification, *, reached_provider: bool) -> Notification:
    """What a worker killed mid-send leaves: the notification claimed under a lease that has
    lapsed, its message handed to the provider first, or not."""
    dead = WorkerLease.objects.create(
        name="lost-node:4242", expires_at=timezone.now() - timedelta(seconds=1)
    )
    moved = lifecycle.move(
        notification.pk, Status.SENDING, attempts=F("attempts") + 1, lease_id=dead.pk
    )
    assert moved == 1
    notification.refresh_from_db()
    if reached_provider:
        with sending_through(notification.channel) as sender:
            sender.send(render(notification))
    return notification


def send_what_was_released() -> None:
    """The release task's second half: what recovery put back is sent."""
    Notification.objects.filter(status=Status.DEFERRED).update(send_after=timezone.now())
    dispatch.send_many(planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1)))


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_a_message_the_provider_accepted_is_recorded_as_sent_and_never_sent_again(
    providers, queued, channel
):
    notification = died_while_sending(queued[channel], reached_provider=True)
    (message,) = providers.messages

    assert recovery.recover_abandoned() == {recovery.FOUND: 1}
    send_what_was_released()

    notification.refresh_from_db()
    assert notification.status == Status.SENT
    assert notification.provider_message_id == message.id
    assert notification.sent_at is not None
    assert notification.lease_id is None
    assert providers.accepted[RECIPIENT[channel]] == 1
    (event,) = notification.events.all()
    assert (event.event_type, event.provider_message_id) == ("reconciled", message.id)
    assert event.reason == (
        "recovered: already delivered to the provider: recorded as sent, not sent again"
    )


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_a_message_the_provider_never_got_is_sent_again_once(providers, queued, channel):
    notification = died_while_sending(queued[channel], reached_provider=False)

    assert recovery.recover_abandoned() == {recovery.NOT_FOUND: 1}
    assert Notification.objects.get(pk=notification.pk).status == Status.DEFERRED
    send_what_was_released()

    notification.refresh_from_db()
    assert notification.status == Status.SENT
    assert notification.attempts == 2
    assert providers.accepted[RECIPIENT[channel]] == 1
    assert [event.reason for event in notification.events.all()] == [
        "recovered: the provider does not have it: sent again"
    ]


def test_an_sms_to_the_same_number_for_another_reminder_is_not_taken_for_this_one(
    providers, queued
):
    """Twilio's list is by number and day: the body tells this reminder's message apart."""
    notification = died_while_sending(queued["sms"], reached_provider=False)
    with sending_through("sms") as sender:
        other = render(notification)
        sender.send(type(other)(notification_id=0, to=PHONE, body="Another reminder, P-8"))

    assert recovery.recover_abandoned() == {recovery.NOT_FOUND: 1}


def test_an_sms_whose_links_twilio_shortened_is_found_and_not_sent_again(
    providers, queued, seeded_defaults, settings
):
    """Twilio keeps the body as the customer got it, with short links in place of ours."""
    settings.RENEW_URL_TEMPLATE = "https://portal.insurer.example/renew/{policy_number}"
    settings.TWILIO_MESSAGING_SERVICE_SID = DEFAULT_MESSAGING_SERVICE_SID
    settings.TWILIO_LINK_SHORTENING_DOMAIN = DEFAULT_SHORT_LINK_DOMAIN
    rule = queued["sms"].rule
    rule.template = MessageTemplate.objects.get(name="Renewal reminder (SMS)")
    rule.save(update_fields=["template"])
    notification = died_while_sending(queued["sms"], reached_provider=True)
    (message,) = providers.messages
    assert f"https://{DEFAULT_SHORT_LINK_DOMAIN}/" in message.body

    assert recovery.recover_abandoned() == {recovery.FOUND: 1}
    send_what_was_released()

    notification.refresh_from_db()
    assert (notification.status, notification.provider_message_id) == (Status.SENT, message.id)
    assert providers.accepted[PHONE] == 1


def test_a_provider_that_cannot_answer_is_asked_again_later_never_sent_blindly(providers, queued):
    notification = died_while_sending(queued["email"], reached_provider=True)
    providers.always_lookups("503")

    assert recovery.recover_abandoned() == {recovery.UNAVAILABLE: 1}
    notification.refresh_from_db()
    assert notification.status == Status.SENDING
    assert notification.lease_id is None
    assert notification.recover_after > timezone.now() + recovery.SHORTEST_WAIT * 0.7
    assert "cannot say yet" in notification.last_error
    assert recovery.recover_abandoned() == {}  # not before its wait is over

    providers.always_lookups("ok")
    Notification.objects.filter(pk=notification.pk).update(recover_after=timezone.now())
    assert recovery.recover_abandoned() == {recovery.FOUND: 1}
    assert providers.accepted[EMAIL] == 1


def test_what_a_live_worker_is_sending_is_left_alone(providers, queued):
    notification = queued["sms"]
    lease_id = leases.current().renew()
    lifecycle.move(notification.pk, Status.SENDING, lease_id=lease_id)

    assert recovery.recover_abandoned() == {}
    assert release_reminders.apply().get() == 0
    assert Notification.objects.get(pk=notification.pk).status == Status.SENDING


def test_the_outbox_is_asked_by_its_files(outbox, queued):
    sent = died_while_sending(queued["email"], reached_provider=True)
    never_sent = died_while_sending(queued["sms"], reached_provider=False)

    assert recovery.recover_abandoned() == {recovery.FOUND: 1, recovery.NOT_FOUND: 1}
    sent.refresh_from_db()
    assert sent.status == Status.SENT
    assert "notification-" in sent.provider_message_id  # the email's own Message-ID
    send_what_was_released()
    assert [path.name for path in (outbox / "sms").iterdir()] == [
        f"notification-{never_sent.pk}.json"
    ]


def test_a_provider_with_no_lookup_waits_for_its_callback_then_sends_again(
    settings, queued, mailoutbox
):
    """Django's locmem backend, like SMTP, cannot say what it accepted: at-least-once."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    notification = died_while_sending(queued["email"], reached_provider=True)

    assert recovery.recover_abandoned() == {recovery.WAITING: 1}
    notification.refresh_from_db()
    wait = timedelta(minutes=settings.REMINDER_RESEND_UNCONFIRMED_AFTER_MINUTES)
    assert notification.recover_after == notification.status_changed_at + wait
    assert recovery.recover_abandoned() == {}

    Notification.objects.filter(pk=notification.pk).update(
        status_changed_at=timezone.now() - wait, recover_after=timezone.now()
    )
    assert recovery.recover_abandoned() == {recovery.RESENT_UNVERIFIED: 1}
    send_what_was_released()
    assert len(mailoutbox) == 2  # the price of a provider that cannot be asked
    reasons = [event.reason for event in notification.events.all()]
    assert reasons == [
        "recovered: the provider cannot be asked and reported nothing: sent again "
        "(at-least-once: it may arrive twice)"
    ]


def test_a_send_with_no_answer_is_left_for_recovery_not_retried(providers, queued, settings):
    settings.EMAIL_TIMEOUT = settings.ANYMAIL["REQUESTS_TIMEOUT"] = 1
    providers.hang_seconds = 3
    providers.script(EMAIL, ["timeout"])

    outcome = dispatch.send(queued["email"].pk)

    assert outcome.status == Status.SENDING
    notification = Notification.objects.get(pk=queued["email"].pk)
    assert (notification.status, notification.lease_id) == (Status.SENDING, None)
    assert notification.recover_after >= timezone.now() + leases.lease_duration() * 0.9
    assert "the provider is asked before any retry" in outcome.detail


def test_a_connection_refused_is_known_not_sent_and_retried(providers, queued, settings):
    settings.TWILIO_API_BASE_URL = "http://127.0.0.1:9"  # nothing listens on the discard port

    outcome = dispatch.send(queued["sms"].pk)

    assert outcome.status == Status.DEFERRED
    assert "retries at" in outcome.detail


def test_a_worker_that_lost_its_lease_sends_nothing(providers, queued, settings):
    """A process cut off from the database for longer than its lease: the sweep may have taken
    its claims, so it must not start a send it cannot be sure to finish in time."""
    settings.EMAIL_TIMEOUT = settings.REMINDER_WORKER_LEASE_SECONDS  # no send could finish

    outcome = dispatch.send(queued["email"].pk)

    assert outcome.status == Status.DEFERRED
    assert providers.attempts[EMAIL] == 0
    notification = Notification.objects.get(pk=queued["email"].pk)
    assert (notification.status, notification.attempts) == (Status.DEFERRED, 0)


def test_an_outcome_is_not_recorded_over_recovery_that_took_the_notification_over(
    providers, queued
):
    notification = queued["sms"]
    mine = leases.current().renew()
    lifecycle.move(notification.pk, Status.SENDING, lease_id=mine)
    sweeper = WorkerLease.objects.create(name="sweeper", expires_at=timezone.now())
    Notification.objects.filter(pk=notification.pk).update(lease_id=sweeper.pk)

    assert lifecycle.move(notification.pk, Status.SENT, held_by=mine) == 0
    assert lifecycle.move(notification.pk, Status.SENT, held_by=sweeper.pk) == 1


def test_a_lapsed_lease_is_replaced_not_revived(db):
    lease = leases.ProcessLease()
    first = lease.renew()
    assert lease.renew() == first
    WorkerLease.objects.filter(pk=first).update(expires_at=timezone.now() - timedelta(seconds=1))

    second = lease.renew()

    assert second != first
    assert not lease.holds(first)
    assert lease.holds(second)


def test_reconciliations_are_told_for_the_metrics(providers, queued):
    told = []

    def listen(sender, **facts):
        told.append(facts)

    reconciled.connect(listen)
    try:
        died_while_sending(queued["sms"], reached_provider=True)
        recovery.recover_abandoned()
    finally:
        reconciled.disconnect(listen)
    assert [(f["channel"], f["provider"], f["outcome"]) for f in told] == [
        ("sms", "twilio", "found")
    ]


@pytest.mark.django_db(transaction=True)
def test_two_sweeps_at_once_never_reconcile_the_same_notification(providers):
    queued = queue_an_email_and_an_sms(EMAIL, PHONE)
    for notification in queued.values():
        died_while_sending(notification, reached_provider=False)
    providers.always(ALL, "ok")

    results = run_at_once(recovery.recover_abandoned, recovery.recover_abandoned)

    assert sum(sum(result.values()) for result in results) == 2
    assert Notification.objects.filter(status=Status.DEFERRED).count() == 2


def test_the_admin_lists_the_sending_workers_and_what_each_holds(admin_client, queued):
    died_while_sending(queued["sms"], reached_provider=False)
    leases.current().renew()

    page = admin_client.get("/admin/notifications/workerlease/")

    assert page.status_code == 200
    rows = page.content.decode()
    assert "lost-node:4242" in rows
    assert rows.count('alt="False"') == 1  # the lost node; this process's lease is alive


@pytest.mark.parametrize("channel", ["sms", "email"])
def test_a_retry_by_hand_is_not_taken_for_the_first_attempts_message(providers, queued, channel):
    """Sent, then reported failed by the provider, then retried by hand: a worker dying on the
    retry leaves the first message at the provider, which is not this attempt's."""
    notification = queued[channel]
    dispatch.send(notification.pk)
    Notification.objects.filter(pk=notification.pk).update(status=Status.FAILED)
    notification.refresh_from_db()
    Notification.objects.filter(pk=notification.pk).update(status=Status.QUEUED)
    died_while_sending(notification, reached_provider=False)

    assert recovery.recover_abandoned() == {recovery.NOT_FOUND: 1}
    send_what_was_released()
    assert providers.accepted[RECIPIENT[channel]] == 2  # the first, and the retry


def test_the_outbox_tells_a_retry_from_the_first_attempt(outbox, queued):
    notification = queued["sms"]
    dispatch.send(notification.pk)
    Notification.objects.filter(pk=notification.pk).update(status=Status.QUEUED)
    notification.refresh_from_db()
    died_while_sending(notification, reached_provider=False)

    assert recovery.recover_abandoned() == {recovery.NOT_FOUND: 1}


def test_a_send_the_provider_cannot_say_anything_about_for_a_day_fails_for_a_person(
    providers, queued, settings
):
    notification = died_while_sending(queued["email"], reached_provider=True)
    a_day_ago = timezone.now() - timedelta(hours=settings.REMINDER_RECONCILE_FOR_HOURS, minutes=1)
    Notification.objects.filter(pk=notification.pk).update(status_changed_at=a_day_ago)
    providers.always_lookups("503")

    assert recovery.recover_abandoned() == {recovery.GAVE_UP: 1}
    notification.refresh_from_db()
    assert notification.status == Status.FAILED
    assert "check with the provider before retrying" in notification.last_error
    assert providers.accepted[EMAIL] == 1  # sent once, never blindly again


def test_a_batch_that_fails_half_way_gives_its_claims_to_recovery(providers, queued, monkeypatch):
    saves = []
    save = dispatch._BatchRecord.save

    def database_gone_once_sent(record):
        saves.append(record)
        if len(saves) == 2:  # the first is before the send; the second records it
            raise OperationalError("server closed the connection unexpectedly")
        return save(record)

    monkeypatch.setattr(dispatch._BatchRecord, "save", database_gone_once_sent)
    with pytest.raises(OperationalError):
        dispatch.send_many([queued["email"].pk])
    monkeypatch.undo()
    held = Notification.objects.get(pk=queued["email"].pk)
    assert held.status == Status.SENDING
    WorkerLease.objects.filter(pk=held.lease_id).update(expires_at=timezone.now())  # lapsed
    assert leases.current().renew() != held.lease_id  # a new lease: the old is not renewed

    assert recovery.recover_abandoned() == {recovery.FOUND: 1}
    assert providers.accepted[EMAIL] == 1


def test_a_send_claimed_by_a_worker_from_before_leases_waits_out_the_old_stall_rule(
    providers, queued, settings
):
    notification = queued["sms"]
    lifecycle.move(notification.pk, Status.SENDING)  # no lease: an older worker's claim
    assert recovery.recover_abandoned() == {}

    stalled = timezone.now() - timedelta(minutes=settings.REMINDER_REQUEUE_AFTER_MINUTES + 1)
    Notification.objects.filter(pk=notification.pk).update(status_changed_at=stalled)
    assert recovery.recover_abandoned() == {recovery.NOT_FOUND: 1}


def test_a_recovery_that_fails_does_not_stop_the_release(queued, settings, monkeypatch):
    def broken(**kwargs):
        raise ValueError("SMS_BACKEND='carrier-pigeon' is not one of outbox, twilio")

    monkeypatch.setattr(recovery, "recover_abandoned", broken)
    Notification.objects.filter(pk=queued["sms"].pk).update(status=Status.PLANNED)
    settings.CELERY_TASK_ALWAYS_EAGER = False
    published = []
    monkeypatch.setattr("notifications.tasks._publish_batches", published.extend)

    assert release_reminders.apply().get() == 1
    assert published == [[queued["sms"].pk]]


def test_sends_that_never_get_an_answer_give_up_once_the_retry_budget_is_spent(
    providers, queued, settings
):
    """Each reset may have reached the provider: reconciled (not found), then sent again after
    the usual backoff, until the channel's retry budget is spent."""
    retry_for_hours(settings, 6)
    providers.always(PHONE, "reset")

    notification = send_until_settled(queued["sms"].pk, hours_each_wait=2)

    assert notification.status == Status.FAILED
    assert notification.failed_transiently
    assert notification.last_error.startswith("gave up after 6 h of provider errors")
    assert providers.accepted[PHONE] == 0
    assert 2 <= providers.attempts[PHONE] <= 5


def test_a_worker_that_died_after_an_earlier_outage_does_not_spend_the_retry_budget(
    providers, queued, settings
):
    """failing_since stays from yesterday's outage; this send's worker died, which is no
    provider error: the reminder goes again at once, whatever is left of its budget."""
    retry_for_hours(settings, 24)
    notification = died_while_sending(queued["sms"], reached_provider=False)
    yesterday = timezone.now() - timedelta(hours=25)
    Notification.objects.filter(pk=notification.pk).update(failing_since=yesterday)

    assert recovery.recover_abandoned() == {recovery.NOT_FOUND: 1}
    notification.refresh_from_db()
    assert notification.status == Status.DEFERRED
    assert notification.send_after <= timezone.now()
