"""How a policy's term ends: lapsed by the daily scan once its expiry and the grace period
passed, or renewed (the workspace's button, the API, an import), each recorded once with the
reminders that went out before it and the last one delivered."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from events.models import Event, EventType
from notifications import tasks
from notifications.models import Notification, PolicyOutcome
from policies.importers import import_rows
from policies.models import Policy
from tests.api.conftest import Caller
from tests.factories import (
    make_api_key,
    make_customer,
    make_notification,
    make_policy,
    make_staff,
    make_subscription,
    rule_for,
)
from tests.policies.test_importer import row

Status = Notification.Status
TODAY = timezone.localdate()
pytestmark = pytest.mark.django_db


def a_policy(agent, number="P-1", *, expiry_date):
    return make_policy(
        number,
        customer=make_customer(f"{number.lower()}@mail.example"),
        agent=agent,
        expiry_date=expiry_date,
    )


def scan(day):
    return tasks.daily_scan(day.isoformat())


@pytest.mark.parametrize("grace", [0, 3])
def test_an_active_policy_lapses_the_day_after_its_expiry_and_grace(settings, agent, grace):
    settings.POLICY_LAPSE_GRACE_DAYS = grace
    policy = a_policy(agent, expiry_date=TODAY)
    last_day = TODAY + timedelta(days=grace)

    assert scan(last_day)["lapsed"] == 0
    policy.refresh_from_db()
    assert policy.status == Policy.Status.ACTIVE

    assert scan(last_day + timedelta(days=1))["lapsed"] == 1
    policy.refresh_from_db()
    assert policy.status == Policy.Status.LAPSED
    outcome = policy.outcomes.get()
    assert (outcome.kind, outcome.source, outcome.expiry_date) == ("lapsed", "scan", TODAY)


def test_renewed_and_cancelled_policies_never_lapse(agent):
    renewed = a_policy(agent, "P-R", expiry_date=TODAY - timedelta(days=5))
    cancelled = a_policy(agent, "P-C", expiry_date=TODAY - timedelta(days=5))
    Policy.objects.filter(pk=renewed.pk).update(status=Policy.Status.RENEWED)
    Policy.objects.filter(pk=cancelled.pk).update(status=Policy.Status.CANCELLED)

    assert scan(TODAY)["lapsed"] == 0
    assert not PolicyOutcome.objects.exists()


def test_a_lapse_cancels_waiting_reminders_and_tells_subscribers_once(agent):
    make_subscription("https://insurer.example/hooks", EventType.POLICY_LAPSED)
    policy = a_policy(agent, expiry_date=TODAY - timedelta(days=1))
    waiting = make_notification(policy, channel="sms", lead_days=1, status=Status.DEFERRED)
    sent = make_notification(policy, channel="email", lead_days=7, status=Status.SENT)

    assert scan(TODAY)["lapsed"] == 1
    assert scan(TODAY)["lapsed"] == 0  # a second scan changes nothing

    waiting.refresh_from_db()
    sent.refresh_from_db()
    assert (waiting.status, waiting.last_error) == (Status.CANCELLED, "policy no longer active")
    assert sent.status == Status.SENT
    event = Event.objects.get(type=EventType.POLICY_LAPSED)
    assert event.data["policy_number"] == "P-1"
    assert event.data["expiry_date"] == policy.expiry_date.isoformat()
    assert event.deliveries.count() == 1
    assert PolicyOutcome.objects.count() == 1


def test_no_subscription_no_lapse_event(agent):
    a_policy(agent, expiry_date=TODAY - timedelta(days=1))

    assert scan(TODAY)["lapsed"] == 1
    assert not Event.objects.exists()


@pytest.fixture
def touched(agent):
    """A policy expiring in 20 days whose reminders went out: an email 30 days before,
    delivered, an SMS 14 days before, delivered last, and an email 14 days before, sent only."""
    policy = a_policy(agent, expiry_date=TODAY + timedelta(days=20))
    now = timezone.now()
    make_notification(
        policy,
        channel="email",
        lead_days=30,
        status=Status.DELIVERED,
        sent_at=now - timedelta(days=10),
        delivered_at=now - timedelta(days=10),
    )
    last = make_notification(
        policy,
        channel="sms",
        lead_days=14,
        status=Status.DELIVERED,
        sent_at=now - timedelta(days=3),
        delivered_at=now - timedelta(days=3),
    )
    make_notification(
        policy, channel="email", lead_days=14, status=Status.SENT, sent_at=now - timedelta(days=2)
    )
    make_notification(policy, channel="email", lead_days=7, status=Status.PLANNED)
    return policy, last


def assert_renewal_recorded(policy, last, *, source, old_expiry):
    outcome = policy.outcomes.get()
    policy.refresh_from_db()
    assert (outcome.kind, outcome.source) == ("renewed", source)
    assert (outcome.expiry_date, outcome.new_expiry_date) == (old_expiry, policy.expiry_date)
    assert outcome.days_before_expiry == 20
    assert (outcome.reminders_sent, outcome.reminders_delivered) == (3, 2)
    assert outcome.last_touch == last
    assert (outcome.last_touch_channel, outcome.last_touch_lead_days) == ("sms", 14)
    assert outcome.last_touch_template == rule_for("sms", 14).template


def test_the_workspace_button_records_the_renewal_and_its_last_touch(client, agent, touched):
    policy, last = touched
    old_expiry = policy.expiry_date
    client.force_login(agent.user)

    response = client.post(
        reverse("workspace:renew", kwargs={"policy_id": policy.pk}),
        {"new_expiry_date": (old_expiry + timedelta(days=365)).isoformat()},
        follow=True,
    )

    assert response.status_code == 200
    assert_renewal_recorded(policy, last, source="agent", old_expiry=old_expiry)
    page = client.get(reverse("workspace:policy", kwargs={"policy_id": policy.pk}))
    assert 'data-outcome="renewed"' in page.content.decode()


def test_the_api_records_the_renewal_once(client, agent, touched):
    policy, last = touched
    old_expiry = policy.expiry_date
    _key, secret = make_api_key()
    api = Caller(client, secret)

    renewed = api.post("policies/P-1/renewal", {"expiry_date": "2099-01-01"})
    again = api.post("policies/P-1/renewal", {"expiry_date": "2099-01-01"})

    assert renewed.status_code == 200
    assert again.status_code == 422  # not later than the current expiry: nothing recorded
    assert_renewal_recorded(policy, last, source="api", old_expiry=old_expiry)


def test_an_import_with_a_later_expiry_records_the_renewal(agent, touched):
    policy, last = touched
    old_expiry = policy.expiry_date
    number_and_email = {"policy_number": "P-1", "customer_email": "p-1@mail.example"}
    later = (old_expiry + timedelta(days=365)).isoformat()
    earlier = (old_expiry - timedelta(days=1)).isoformat()
    dates = {"start_date": (old_expiry - timedelta(days=365)).isoformat()}

    import_rows([(0, row(**number_and_email, **dates, expiry_date=later))])
    import_rows([(0, row(**number_and_email, **dates, expiry_date=later))])  # unchanged

    assert_renewal_recorded(policy, last, source="import", old_expiry=old_expiry)
    import_rows([(0, row(**number_and_email, **dates, expiry_date=earlier))])  # a correction
    assert policy.outcomes.count() == 1


def test_a_renewal_with_no_delivered_reminder_records_no_touch(client, agent):
    policy = a_policy(agent, expiry_date=TODAY - timedelta(days=2))
    make_notification(policy, channel="email", lead_days=7, status=Status.FAILED)
    Policy.objects.filter(pk=policy.pk).update(status=Policy.Status.LAPSED)
    client.force_login(agent.user)

    client.post(
        reverse("workspace:renew", kwargs={"policy_id": policy.pk}),
        {"new_expiry_date": (TODAY + timedelta(days=300)).isoformat()},
    )

    outcome = policy.outcomes.get()
    assert outcome.days_before_expiry == -2  # renewed after it lapsed
    assert (outcome.reminders_sent, outcome.reminders_delivered) == (0, 0)
    assert outcome.last_touch is None
    assert (outcome.last_touch_channel, outcome.last_touch_template) == ("", None)


def test_support_reads_the_outcomes_in_the_admin(client, agent, staff_roles):
    policy = a_policy(agent, expiry_date=TODAY - timedelta(days=1))
    scan(TODAY)
    support = make_staff("sam", roles=["Support (read-only)"], password="s3cret-pass-9")
    client.force_login(support)

    page = client.get(reverse("admin:notifications_policyoutcome_changelist"))

    assert page.status_code == 200
    assert policy.policy_number in page.content.decode()
    outcome = policy.outcomes.get()
    change = client.post(
        reverse("admin:notifications_policyoutcome_change", args=[outcome.pk]), {"kind": "renewed"}
    )
    assert change.status_code == 403
    outcome.refresh_from_db()
    assert outcome.kind == "lapsed"
