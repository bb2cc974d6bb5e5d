"""A renewal through the engine's service: the policy is renewed and the reminders about its
old expiry that were not sent yet are cancelled, in one transaction."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Notification
from notifications.services import renew_policy
from policies.models import Policy
from policies.services import RenewalError
from tests.factories import make_agent, make_customer, make_notification, make_policy

Status = Notification.Status
TODAY = timezone.localdate()


@pytest.fixture
def policy(db) -> Policy:
    return make_policy(
        "P-RN", customer=make_customer(), agent=make_agent(), expiry_date=TODAY + timedelta(20)
    )


def test_renewing_cancels_the_reminders_not_sent_about_the_old_expiry(policy):
    waiting = [
        make_notification(policy, channel="email", lead_days=30, status=Status.PLANNED),
        make_notification(policy, channel="sms", lead_days=14, status=Status.DEFERRED),
    ]
    sent = make_notification(policy, channel="email", lead_days=14, status=Status.SENT)

    assert renew_policy(policy=policy, new_expiry_date=TODAY + timedelta(385)) == 2

    for notice in waiting:
        notice.refresh_from_db()
        assert notice.status == Status.CANCELLED
        assert notice.last_error == "policy expiry date changed"
    sent.refresh_from_db()
    assert sent.status == Status.SENT


def test_a_refused_renewal_cancels_nothing(policy):
    planned = make_notification(policy, status=Status.PLANNED)

    with pytest.raises(RenewalError):
        renew_policy(policy=policy, new_expiry_date=policy.expiry_date - timedelta(1))

    planned.refresh_from_db()
    assert planned.status == Status.PLANNED
