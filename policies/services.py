from datetime import date

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from policies.models import Agent, Policy


@transaction.atomic
def ensure_agent(
    *,
    username: str,
    email: str,
    first_name: str = "",
    last_name: str = "",
    phone: str = "",
    password: str | None = None,
) -> Agent:
    """Create the agent and their login, or bring an existing one up to date."""
    email = email.strip().lower()
    user, _ = get_user_model().objects.update_or_create(
        username=username,
        defaults={"email": email, "first_name": first_name, "last_name": last_name},
    )
    if password is not None:
        user.set_password(password)
        user.save(update_fields=["password"])
    agent, _ = Agent.objects.update_or_create(user=user, defaults={"email": email, "phone": phone})
    return agent


class AgentError(Exception):
    """An agent that cannot be registered or changed so; the message says why."""


# The agent's email is their login's username, which Django keeps to this length.
USERNAME_MAX_LENGTH = 150


def register_agent(
    *, email: str, first_name: str = "", last_name: str = "", phone: str = "", active=None
) -> Agent:
    """Create the agent named by `email` (a login of that name with no usable password, until
    an admin invites them) or bring their details up to date. `active` False deactivates their
    login and keeps their book; None leaves it as it is. Raises AgentError for an email no
    login can have, a login of that name that is not an agent's, or a staff login to
    deactivate (the admin does that). Two first registrations at once make one agent."""
    email = email.strip().lower()
    if len(email) > USERNAME_MAX_LENGTH:
        raise AgentError(f"an agent's email is at most {USERNAME_MAX_LENGTH} characters")
    agent = Agent.objects.filter(email=email).first()
    if agent is None:
        try:
            with transaction.atomic():
                user = get_user_model()(
                    username=email, email=email, first_name=first_name, last_name=last_name
                )
                user.set_unusable_password()
                if active is not None:
                    user.is_active = active
                user.save()
                return Agent.objects.create(user=user, email=email, phone=phone)
        except IntegrityError:
            agent = Agent.objects.filter(email=email).first()
            if agent is None:
                raise AgentError(
                    f"a login named {email!r} exists and is not an agent's; an admin decides"
                ) from None
    return _update_agent(
        agent, first_name=first_name, last_name=last_name, phone=phone, active=active
    )


@transaction.atomic
def _update_agent(agent: Agent, *, first_name: str, last_name: str, phone: str, active) -> Agent:
    agent = Agent.objects.select_related("user").select_for_update().get(pk=agent.pk)
    user = agent.user
    if active is False and user.is_staff:
        raise AgentError("this agent is also staff: deactivate their login in the admin")
    user.first_name, user.last_name = first_name, last_name
    if active is not None:
        user.is_active = active
    user.save(update_fields=["first_name", "last_name", "is_active"])
    if agent.phone != phone:
        agent.phone = phone
        agent.save(update_fields=["phone"])
    return agent


class PolicyChangeError(Exception):
    """A change of status the policy cannot take; the message says why, for a person."""


class RenewalError(PolicyChangeError):
    """A renewal the policy cannot take; the message says why, for the agent."""


@transaction.atomic
def mark_renewed(*, policy: Policy, new_expiry_date: date) -> Policy:
    """The customer renewed: the policy stays active and runs to `new_expiry_date`. Returns
    the policy as renewed. The reminders about the old expiry are the reminder engine's to
    cancel (notifications.services.renew_policy does both)."""
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    if new_expiry_date <= policy.expiry_date:
        raise RenewalError(
            f"The new expiry date must come after the current one ({policy.expiry_date:%Y-%m-%d})."
        )
    if policy.status == Policy.Status.CANCELLED:
        raise RenewalError("A cancelled policy cannot be renewed; create a new policy instead.")
    policy.expiry_date = new_expiry_date
    # A lapsed policy renewed late is back in force; "renewed" would stop its future reminders.
    policy.status = Policy.Status.ACTIVE
    policy.save(update_fields=["expiry_date", "status", "updated_at"])
    return policy


@transaction.atomic
def mark_cancelled(*, policy: Policy) -> Policy:
    """The insurer cancelled the policy: it will not be renewed, so nothing reminds about it.
    Its reminders are the engine's to cancel (notifications.services.change_policy)."""
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    if policy.status == Policy.Status.CANCELLED:
        raise PolicyChangeError("The policy is already cancelled.")
    policy.status = Policy.Status.CANCELLED
    policy.save(update_fields=["status", "updated_at"])
    return policy


@transaction.atomic
def mark_lapsed(*, policy: Policy) -> Policy:
    """The policy ran out without a renewal. Only an active policy lapses: a renewed one runs
    on, a cancelled one ended otherwise."""
    policy = Policy.objects.select_for_update().get(pk=policy.pk)
    if policy.status != Policy.Status.ACTIVE:
        raise PolicyChangeError(
            f"Only an active policy can lapse; this one is {policy.get_status_display().lower()}."
        )
    policy.status = Policy.Status.LAPSED
    policy.save(update_fields=["status", "updated_at"])
    return policy
