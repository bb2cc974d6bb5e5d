"""Marking a policy renewed, as the domain sees it: the expiry moves forward and the policy is
in force; what that means for its reminders is the engine's (tests/notifications/test_renewal)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from notifications.models import Notification
from policies.models import Policy
from policies.services import RenewalError, mark_renewed
from tests.factories import make_agent, make_customer, make_notification, make_policy

TODAY = timezone.localdate()


@pytest.fixture
def policy(db) -> Policy:
    return make_policy(
        "P-RN", customer=make_customer(), agent=make_agent(), expiry_date=TODAY + timedelta(20)
    )


def test_a_renewal_moves_the_expiry_and_leaves_the_reminders_to_the_engine(policy):
    planned = make_notification(policy, status=Notification.Status.PLANNED)

    renewed = mark_renewed(policy=policy, new_expiry_date=TODAY + timedelta(385))

    policy.refresh_from_db()
    assert renewed == policy
    assert (policy.expiry_date, policy.status) == (TODAY + timedelta(385), Policy.Status.ACTIVE)
    planned.refresh_from_db()
    assert planned.status == Notification.Status.PLANNED


def test_a_lapsed_policy_renewed_late_is_back_in_force(policy):
    Policy.objects.filter(pk=policy.pk).update(status=Policy.Status.LAPSED)

    assert mark_renewed(policy=policy, new_expiry_date=TODAY + timedelta(385)).status == "active"


def test_a_renewal_must_move_the_expiry_forward_and_not_revive_a_cancelled_policy(policy):
    with pytest.raises(RenewalError, match="must come after the current one"):
        mark_renewed(policy=policy, new_expiry_date=policy.expiry_date)
    Policy.objects.filter(pk=policy.pk).update(status=Policy.Status.CANCELLED)
    with pytest.raises(RenewalError, match="cannot be renewed"):
        mark_renewed(policy=policy, new_expiry_date=TODAY + timedelta(385))
