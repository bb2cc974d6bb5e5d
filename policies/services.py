from django.contrib.auth import get_user_model
from django.db import transaction

from policies.models import Agent


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
