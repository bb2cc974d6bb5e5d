"""An agent's call list: who is on it and why, what a call's outcome does to the reminders, and
the morning email, sent once per agent and day."""

import importlib
import threading
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.core import mail
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from notifications import calls, dispatch, outcomes, planning, reach, tasks
from notifications.models import (
    CallListEmail,
    CallListRule,
    CallOutcome,
    Channel,
    Notification,
    PolicyOutcome,
)
from notifications.schedule import CALL_LIST_NAME
from notifications.selectors import unreachable_customers
from policies.models import Customer, Policy
from tests.factories import make_agent, make_customer, make_notification, make_policy, make_rule

Status = Notification.Status
Outcome = CallOutcome.Outcome


@pytest.fixture
def today():
    return timezone.localdate()


@pytest.fixture(autouse=True)
def email_backend(settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"


def on_list(agent, today) -> dict[str, str]:
    """policy number -> reason, in the list's order."""
    return {
        entry.policy.policy_number: entry.reason
        for entry in calls.entries(list(calls.needs_a_call(agent.policies.all(), today=today)))
    }


def test_each_reason_to_call_is_in_plain_words_soonest_expiry_first(agent, today):
    nothing = make_policy(
        "NOTHING",
        customer=make_customer("a@mail.example"),
        agent=agent,
        expiry_date=today + timedelta(3),
    )
    make_notification(nothing, lead_days=7, status=Status.SENT)  # sent, never delivered
    gone = make_customer(
        "b@mail.example", email_consent=False, sms_consent=False, whatsapp_consent=False
    )
    make_policy("UNREACHABLE", customer=gone, agent=agent, expiry_date=today + timedelta(5))
    failed = make_policy(
        "FAILED",
        customer=make_customer("c@mail.example"),
        agent=agent,
        expiry_date=today + timedelta(1),
    )
    make_notification(
        failed,
        lead_days=30,
        status=Status.DELIVERED,
        status_changed_at=timezone.now() - timedelta(days=20),
    )
    make_notification(
        failed,
        channel="sms",
        lead_days=7,
        status=Status.FAILED,
        last_error="Twilio error 30003: Unreachable destination handset",
    )
    reached = make_policy(
        "REACHED",
        customer=make_customer("d@mail.example"),
        agent=agent,
        expiry_date=today + timedelta(2),
    )
    make_notification(reached, lead_days=7, status=Status.DELIVERED)
    make_policy(
        "LATER",
        customer=make_customer("e@mail.example"),
        agent=agent,
        expiry_date=today + timedelta(8),
    )
    make_policy(
        "RENEWED",
        customer=make_customer("f@mail.example"),
        agent=agent,
        expiry_date=today + timedelta(2),
        status=Policy.Status.RENEWED,
    )

    assert on_list(agent, today) == {
        "FAILED": "Last reminder failed: The handset is unreachable (switched off or out of "
        "coverage).",
        "NOTHING": calls.NOTHING_DELIVERED,
        "UNREACHABLE": "Can't be reached: customer opted out of email; customer opted out of "
        "SMS; customer has not opted in to WhatsApp",
    }


def test_the_window_is_the_rule_an_admin_edits(agent, today):
    make_policy("P-8", customer=make_customer(), agent=agent, expiry_date=today + timedelta(8))
    assert on_list(agent, today) == {}
    CallListRule.objects.update_or_create(pk=1, defaults={"days_before_expiry": 8})
    assert list(on_list(agent, today)) == ["P-8"]


def test_the_rule_refuses_a_window_out_of_range(db):
    from django.db import IntegrityError

    with pytest.raises(IntegrityError):
        CallListRule.objects.update_or_create(pk=1, defaults={"days_before_expiry": 400})


def test_another_agents_policies_are_not_on_my_list(agent, today):
    other = make_agent("other", "other@agency.example")
    make_policy("THEIRS", customer=make_customer(), agent=other, expiry_date=today + timedelta(2))
    assert on_list(agent, today) == {}
    assert list(on_list(other, today)) == ["THEIRS"]


def test_wrong_number_stops_sms_and_planning_skips_it_until_the_number_changes(agent, today):
    make_rule(3, "sms")
    customer = make_customer(email="", phone="+14155550199")
    policy = make_policy("P-W", customer=customer, agent=agent, expiry_date=today + timedelta(3))

    calls.record_call(policy=policy, outcome=Outcome.WRONG_NUMBER)

    customer.refresh_from_db()
    assert customer.wrong_phone == "+14155550199"
    assert reach.why_unreachable(Channel.SMS, customer) == "customer's phone number is wrong"
    assert unreachable_customers().filter(pk=customer.pk).exists()
    planning.plan_due(run_date=today)
    assert not Notification.objects.filter(policy=policy).exists()
    assert "customer's phone number is wrong" in on_list(agent, today)["P-W"]

    # A new number (an import, the API, the admin) is not the wrong one.
    Customer.objects.filter(pk=customer.pk).update(phone="+14155550100")
    Policy.objects.filter(pk=policy.pk).update(updated_at=timezone.now())
    planning.plan_due(run_date=today)
    assert Notification.objects.filter(policy=policy, channel="sms").exists()


def test_a_planned_sms_to_a_number_found_wrong_is_not_sent(agent, today):
    customer = make_customer(phone="+14155550199")
    policy = make_policy("P-S", customer=customer, agent=agent, expiry_date=today + timedelta(3))
    sms = make_notification(policy, channel="sms", lead_days=3)
    calls.record_call(policy=policy, outcome=Outcome.WRONG_NUMBER)
    sms.refresh_from_db()
    assert dispatch.why_not_send(sms) == "customer's phone number is wrong"


def test_declined_cancels_the_terms_reminders_plans_none_and_still_lapses(agent, today):
    make_rule(3, "email")
    make_rule(10, "email")
    policy = make_policy(
        "P-D", customer=make_customer(), agent=agent, expiry_date=today + timedelta(5)
    )
    waiting = make_notification(policy, lead_days=10)

    call = calls.record_call(policy=policy, outcome=Outcome.DECLINED, note="moving abroad")

    assert call.expiry_date == policy.expiry_date
    waiting.refresh_from_db()
    assert waiting.status == Status.CANCELLED
    assert waiting.last_error == planning.DECLINED
    assert on_list(agent, today) == {}
    planning.plan_due(run_date=today + timedelta(2))  # the 3-day rule falls due
    assert not Notification.objects.filter(policy=policy, lead_days=3).exists()

    outcomes.lapse_expired(run_date=policy.expiry_date + timedelta(days=1))
    policy.refresh_from_db()
    assert policy.status == Policy.Status.LAPSED
    assert PolicyOutcome.objects.filter(policy=policy, kind="lapsed").exists()


def test_a_declined_policy_renewed_after_all_gets_the_new_terms_reminders(agent, today):
    from notifications import services

    make_rule(3, "email")
    policy = make_policy(
        "P-R", customer=make_customer(), agent=agent, expiry_date=today + timedelta(5)
    )
    calls.record_call(policy=policy, outcome=Outcome.DECLINED)
    new_expiry = today + timedelta(days=370)
    services.renew_policy(policy=policy, new_expiry_date=new_expiry)

    policy.refresh_from_db()
    assert (policy.expiry_date, policy.renewal_declined) == (new_expiry, False)
    assert PolicyOutcome.objects.filter(policy=policy, kind="renewed").exists()
    planning.plan_due(run_date=new_expiry - timedelta(days=3))
    assert Notification.objects.filter(policy=policy, expiry_date=new_expiry).exists()


def test_an_unknown_outcome_is_refused_with_the_choices(agent, today):
    policy = make_policy("P-U", customer=make_customer(), agent=agent, expiry_date=today)
    with pytest.raises(calls.CallError, match="Unknown call outcome 'maybe'"):
        calls.record_call(policy=policy, outcome="maybe")
    assert not CallOutcome.objects.exists()


# --- The morning email ----------------------------------------------------------------------


def test_each_agent_gets_their_list_once_a_day_and_none_when_it_is_empty(agent, today):
    make_policy("P-1", customer=make_customer(), agent=agent, expiry_date=today + timedelta(2))
    idle = make_agent("idle", "idle@agency.example")

    assert tasks.call_list_emails(today.isoformat()) == {"day": today.isoformat(), "emailed": 1}
    assert tasks.call_list_emails(today.isoformat())["emailed"] == 0

    (message,) = mail.outbox
    assert message.to == [agent.email]
    assert "P-1" in message.body
    assert calls.NOTHING_DELIVERED in message.body
    assert message.subject == "Renewly: 1 policy to call today"
    assert not CallListEmail.objects.filter(agent=idle).exists()
    row = CallListEmail.objects.get(agent=agent, day=today)
    assert (row.policies, row.emailed_to) == (1, agent.email)
    # The next day is another email.
    assert calls.email_call_lists(day=today + timedelta(days=1)) == 1


def test_a_list_claimed_by_a_live_run_is_not_sent_again(agent, today):
    from notifications.models import WorkerLease

    make_policy("P-1", customer=make_customer(), agent=agent, expiry_date=today + timedelta(2))
    lease = WorkerLease.objects.create(
        name="another-run", expires_at=timezone.now() + timedelta(minutes=1)
    )
    CallListEmail.objects.create(
        agent=agent, day=today, email_claimed_at=timezone.now(), email_lease=lease
    )
    assert calls.email_call_lists(day=today) == 0
    assert mail.outbox == []


def test_a_list_whose_run_died_after_the_outbox_wrote_it_is_not_written_again(agent, today, outbox):
    from notifications.models import WorkerLease

    make_policy("P-1", customer=make_customer(), agent=agent, expiry_date=today + timedelta(2))
    dead = WorkerLease.objects.create(name="dead", expires_at=timezone.now() - timedelta(1))
    row = CallListEmail.objects.create(
        agent=agent, day=today, email_claimed_at=timezone.now(), email_lease=dead
    )
    listed = calls.entries(list(calls.needs_a_call(agent.policies.all(), today=today)))
    calls._email(row, [agent.email], agent=agent, day=today, listed=listed, total=1)
    written = (outbox / "email" / f"call-list-{row.pk}.eml").stat().st_mtime_ns

    assert calls.email_call_lists(day=today) == 0
    assert (outbox / "email" / f"call-list-{row.pk}.eml").stat().st_mtime_ns == written
    row.refresh_from_db()
    assert row.emailed_at is not None


@pytest.mark.django_db(transaction=True)
def test_two_runs_at_once_send_one_email(today):
    if connection.vendor != "postgresql":
        pytest.skip("row locks: PostgreSQL")
    agent = make_agent("alice", "alice@agency.example")
    make_policy("P-1", customer=make_customer(), agent=agent, expiry_date=today + timedelta(2))
    start = threading.Barrier(2)
    sent = []

    def run():
        try:
            start.wait()
            sent.append(calls.email_call_lists(day=today))
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(sent) == [0, 1]
    assert len(mail.outbox) == 1


def test_the_morning_email_is_a_periodic_task_on_weekdays_at_eight(db, settings):
    migration = importlib.import_module("notifications.migrations.0031_call_list_defaults")
    migration.create_call_list_defaults(django_apps, schema_editor=None)
    task = PeriodicTask.objects.select_related("crontab").get(name=CALL_LIST_NAME)
    assert task.task == "notifications.tasks.call_list_emails"
    assert (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("0", "8", "1-5")
    assert CallListRule.objects.get().days_before_expiry == 7


def test_a_reminder_delivered_after_one_failed_takes_the_policy_off_the_list(agent, today):
    policy = make_policy("P-F", customer=make_customer(), agent=agent, expiry_date=today)
    earlier = timezone.now() - timedelta(days=3)
    make_notification(
        policy, channel="sms", lead_days=7, status=Status.FAILED, status_changed_at=earlier
    )
    assert "P-F" in on_list(agent, today)
    make_notification(policy, lead_days=3, status=Status.DELIVERED)
    assert on_list(agent, today) == {}
