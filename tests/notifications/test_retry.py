"""Retrying a failed notice by hand: only when sending it still makes sense, and never when the
customer already got the reminder another way."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications import dispatch, planning
from notifications.channels import TransientSendError
from notifications.channels.outbox import OutboxSmsChannel
from notifications.models import Notification, ReminderRule
from notifications.services import RetryError, renew_policy, retry_failed
from tests.factories import make_agent, make_customer, make_policy, make_rule
from workspace.selectors import NoticeFilters, book_of, pending_notices

Status = Notification.Status
TODAY = timezone.localdate()


@pytest.fixture
def failed_sms(db):
    ReminderRule.objects.all().delete()
    make_rule(7, "sms")
    customer = make_customer("pat@mail.example", phone="+14155550100")
    make_policy("P-7", customer=customer, agent=make_agent(), expiry_date=TODAY + timedelta(7))
    planning.plan_due(run_date=TODAY)
    notification = Notification.objects.get()
    Notification.objects.filter(pk=notification.pk).update(
        status=Status.FAILED, last_error="invalid number"
    )
    return notification


def pending_for(agent):
    return list(pending_notices(book_of(agent.user), NoticeFilters()))


def test_a_failed_notice_can_be_retried(failed_sms, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        retry_failed(notification=failed_sms)

    failed_sms.refresh_from_db()
    assert failed_sms.status == Status.QUEUED


@pytest.mark.usefixtures("eager_tasks")
def test_a_retried_notice_goes_out_through_the_send_task(
    failed_sms, outbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        retry_failed(notification=failed_sms)

    failed_sms.refresh_from_db()
    assert (failed_sms.status, failed_sms.last_error) == (Status.SENT, "")
    assert (outbox / "sms" / f"notification-{failed_sms.pk}.json").exists()


def test_a_retry_by_hand_starts_a_fresh_budget_of_automatic_retries(
    failed_sms, outbox, settings, monkeypatch, django_capture_on_commit_callbacks
):
    Notification.objects.filter(pk=failed_sms.pk).update(  # it gave up before
        attempts=3, failing_since=timezone.now() - timedelta(hours=30), failed_transiently=True
    )

    def provider_down(channel, message):
        raise TransientSendError("provider timed out")

    monkeypatch.setattr(OutboxSmsChannel, "send", provider_down)
    with django_capture_on_commit_callbacks(execute=False):
        retry_failed(notification=failed_sms)

    assert dispatch.send(failed_sms.pk).status == Status.DEFERRED  # to be retried again

    failed_sms.refresh_from_db()
    assert failed_sms.attempts == 1
    assert failed_sms.last_error == "attempt 1 failed: provider timed out"
    assert timezone.now() - failed_sms.failing_since < timedelta(minutes=1)
    assert not failed_sms.failed_transiently


def test_a_failed_sms_whose_email_went_in_its_place_is_not_retried(failed_sms):
    Notification.objects.create(
        policy=failed_sms.policy,
        customer=failed_sms.customer,
        rule=failed_sms.rule,
        run=failed_sms.run,
        channel="email",
        expiry_date=failed_sms.expiry_date,
        lead_days=failed_sms.lead_days,
        due_on=failed_sms.due_on,
        status=Status.SENT,
        fallback_for=failed_sms,
    )

    with pytest.raises(RetryError, match="An email was sent in place of this SMS"):
        retry_failed(notification=failed_sms)

    failed_sms.refresh_from_db()
    assert failed_sms.status == Status.FAILED
    assert failed_sms not in pending_for(failed_sms.policy.agent)


def test_a_failure_about_an_expiry_renewed_since_is_neither_retried_nor_pending(failed_sms):
    agent = failed_sms.policy.agent
    assert pending_for(agent) == [failed_sms]

    renew_policy(policy=failed_sms.policy, new_expiry_date=TODAY + timedelta(372))

    with pytest.raises(RetryError, match="policy expiry date changed"):
        retry_failed(notification=failed_sms)
    assert pending_for(agent) == []


def test_a_failure_for_a_customer_who_opted_out_is_not_retried(failed_sms):
    failed_sms.customer.__class__.objects.filter(pk=failed_sms.customer_id).update(
        sms_consent=False
    )

    with pytest.raises(RetryError, match="opted out of SMS"):
        retry_failed(notification=failed_sms)
