"""Retrying: a failed notice by hand (the agent's Retry), or every one an outage made fail (the
admin), only when sending it still makes sense, and never when the customer already got the
reminder another way; and a late reminder, waiting out an outage or a retry, sent only while it
is still useful."""

from datetime import timedelta
from urllib.parse import parse_qs, urlencode

import pytest
from django.urls import reverse
from django.utils import timezone

from notifications import dispatch, planning
from notifications.channels import TransientSendError
from notifications.channels.outbox import OutboxSmsChannel
from notifications.models import Notification, ReminderRule
from notifications.services import RetryError, renew_policy, retry_failed, retry_outage
from policies.models import Customer
from tests.factories import (
    make_agent,
    make_customer,
    make_notification,
    make_policy,
    make_rule,
    make_staff,
)
from tests.fake_provider import ALL
from tests.notifications.conftest import retry_for_hours
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


@pytest.mark.parametrize(
    ("stand_in", "said"),
    [
        ("sms", "An SMS was sent in place of this WhatsApp message"),
        ("email", "An email was sent in place of this WhatsApp message"),
    ],
)
def test_a_failed_whatsapp_message_whose_stand_in_went_is_not_retried(db, stand_in, said):
    customer = make_customer("wa@mail.example", phone="+14155550100", whatsapp_consent=True)
    policy = make_policy(
        "W-7", customer=customer, agent=make_agent(), expiry_date=TODAY + timedelta(7)
    )
    failed = make_notification(policy, channel="whatsapp", lead_days=7, status=Status.FAILED)
    make_notification(
        policy, channel=stand_in, lead_days=7, status=Status.SENT, fallback_for=failed
    )

    with pytest.raises(RetryError, match=said):
        retry_failed(notification=failed)


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


# --- A late reminder goes only while it is still useful --------------------------------------


def claim_and_send() -> dict:
    """What the release does: claim what is due, and send it."""
    return dispatch.send_many(planning.claim_for_enqueue(limit=100, stalled_after=timedelta(1)))


@pytest.fixture
def sms_customer(db):
    return make_customer("pat@mail.example", phone="+14155550100", timezone="UTC")


def test_a_retry_is_cancelled_not_sent_once_the_next_lead_time_is_due(
    providers, rules, sms_customer
):
    rules(14, "sms")
    rules(7, "sms")
    make_policy("P-1", customer=sms_customer, agent=make_agent(), expiry_date=TODAY + timedelta(7))
    planning.plan_due(run_date=TODAY - timedelta(7))  # the 14-day reminder fell due a week ago
    providers.script(sms_customer.phone, ["503"])
    claim_and_send()  # ...and the provider was down
    planning.plan_due(run_date=TODAY)  # today the 7-day one is due
    Notification.objects.filter(status=Status.DEFERRED).update(send_after=timezone.now())

    claim_and_send()

    fourteen, seven = Notification.objects.order_by("-lead_days")
    assert (fourteen.status, fourteen.last_error) == (
        Status.CANCELLED,
        "the 7-day reminder is due now",
    )
    assert seven.status == Status.SENT
    assert providers.attempts[sms_customer.phone] == 2  # the first try, and the 7-day reminder


def test_a_late_reminder_about_a_policy_that_expired_is_cancelled_not_sent(
    providers, rules, sms_customer
):
    rules(7, "sms")
    expired = TODAY - timedelta(1)
    make_policy("P-1", customer=sms_customer, agent=make_agent(), expiry_date=expired)
    planning.plan_due(run_date=TODAY - timedelta(8))  # due then; waiting ever since

    claim_and_send()

    notification = Notification.objects.get()
    assert (notification.status, notification.last_error) == (
        Status.CANCELLED,
        f"the policy expired on {expired}",
    )
    assert providers.attempts[sms_customer.phone] == 0


def test_a_late_reminder_still_useful_is_sent(providers, rules, sms_customer):
    rules(14, "sms")
    rules(7, "sms")
    make_policy("P-1", customer=sms_customer, agent=make_agent(), expiry_date=TODAY + timedelta(11))
    planning.plan_due(run_date=TODAY - timedelta(3))  # 14 days ahead, three days late

    claim_and_send()

    assert Notification.objects.get().status == Status.SENT


# --- Retrying an outage's failures in one go ---------------------------------------------------


@pytest.fixture
def outage(providers, rules, settings) -> dict[str, Notification]:
    """Five customers' SMS reminders sent while the provider was down, with no retry budget:
    "gave_up" and "also_gave_up" gave up on its errors, "opted_out" too (and the customer has
    opted out since), "long_ago" gave up three days ago, "invalid" was refused for good."""
    retry_for_hours(settings, 0)
    rules(7, "sms")
    agent = make_agent()
    names = ["gave_up", "also_gave_up", "opted_out", "long_ago", "invalid"]
    for n, name in enumerate(names):
        customer = make_customer(f"{name}@mail.example", phone=f"+1415555010{n}", timezone="UTC")
        make_policy(name, customer=customer, agent=agent, expiry_date=TODAY + timedelta(7))
    providers.always(ALL, "503")
    providers.script("+14155550104", ["invalid"])
    planning.plan_due(run_date=TODAY)
    claim_and_send()
    providers.always(ALL, "ok")  # the provider is back
    failed = {n.policy.policy_number: n for n in Notification.objects.select_related("policy")}
    assert {n.status for n in failed.values()} == {Status.FAILED}
    Customer.objects.filter(pk=failed["opted_out"].customer_id).update(sms_consent=False)
    three_days_ago = timezone.now() - timedelta(days=3)
    Notification.objects.filter(pk=failed["long_ago"].pk).update(
        failing_since=three_days_ago, status_changed_at=three_days_ago
    )
    return failed


def the_last_hour() -> dict:
    return {"start": timezone.now() - timedelta(hours=1), "end": timezone.now()}


@pytest.mark.usefixtures("eager_tasks")
def test_an_outage_retry_sends_again_what_gave_up_on_provider_errors_in_the_range(
    outage, providers, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        result = retry_outage(**the_last_hour())

    assert result.requeued == 2
    assert result.refused == {"This notice cannot be sent any more: customer opted out of SMS.": 1}
    statuses = {name: Notification.objects.get(pk=n.pk).status for name, n in outage.items()}
    assert statuses == {
        "gave_up": Status.SENT,
        "also_gave_up": Status.SENT,
        "opted_out": Status.FAILED,
        "long_ago": Status.FAILED,  # another outage
        "invalid": Status.FAILED,  # the provider refused it: not an outage's doing
    }
    sent = Notification.objects.get(pk=outage["gave_up"].pk)
    assert (sent.attempts, sent.failed_transiently) == (1, False)


def test_an_outage_retry_can_keep_to_one_channel(outage, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        assert retry_outage(**the_last_hour(), channel="email").requeued == 0
        assert retry_outage(**the_last_hour(), channel="sms").requeued == 2


def in_a_minute():
    """An end a person would type: to the minute, just after what it is to cover."""
    return timezone.now() + timedelta(minutes=1)


def outage_url(**window) -> str:
    times = {
        key: f"{value.astimezone(timezone.get_current_timezone()):%Y-%m-%d %H:%M:%S}"
        for key, value in window.items()
    }
    return reverse("admin:notifications_notification_retry_outage") + "?" + urlencode(times)


@pytest.mark.usefixtures("eager_tasks")
def test_the_admin_counts_an_outages_failures_then_retries_them_all(
    outage, admin_client, django_capture_on_commit_callbacks
):
    changelist = admin_client.get(reverse("admin:notifications_notification_changelist"))
    assert "Retry an outage's failures" in changelist.content.decode()
    url = outage_url(start=timezone.now() - timedelta(hours=1), end=in_a_minute())

    page = admin_client.get(url).content.decode()
    assert "3 notifications gave up on provider errors in that range." in page

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(url, parse_qs(url.split("?")[1]), follow=True)

    text = response.content.decode()
    assert "2 re-queued to be sent again." in text
    assert "1 refused: This notice cannot be sent any more: customer opted out of SMS." in text
    assert Notification.objects.filter(status=Status.SENT).count() == 2


def test_the_outage_retry_refuses_a_start_after_the_end(outage, admin_client):
    url = outage_url(start=timezone.now(), end=timezone.now() - timedelta(hours=1))

    page = admin_client.get(url).content.decode()

    assert "The start must come before the end." in page
    assert "gave up on provider errors" not in page


def test_staff_who_may_not_retry_cannot_retry_an_outage(outage, client, staff_roles):
    client.force_login(make_staff("support", roles=["Support (read-only)"]))
    url = outage_url(start=timezone.now() - timedelta(hours=1), end=in_a_minute())

    assert client.post(url, parse_qs(url.split("?")[1])).status_code == 302
    assert not Notification.objects.filter(status=Status.QUEUED).exists()
