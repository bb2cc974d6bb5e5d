"""An agent's call list: the policies about to expire that no reminder reached, for a person to
phone; what came of each call; and the list by email each morning.

Who is on the list is decided here, once (`needs_a_call`), for the workspace's page and the
email alike."""

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import partial

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.db.models import F, OuterRef, Q, QuerySet, Subquery
from django.urls import reverse
from django.utils import timezone

from notifications import claimed_emails, planning, reach
from notifications.channels.outbox import CALL_LIST_HEADER, CALL_LIST_METADATA
from notifications.explanations import explain_error
from notifications.models import CallListEmail, CallListRule, CallOutcome, Channel, Notification
from notifications.selectors import unreachable_customers
from policies.models import RENEWAL_DECLINED, Agent, Customer, Policy

Status = Notification.Status
Outcome = CallOutcome.Outcome
FAILED = (Status.FAILED, Status.BOUNCED)
# A reminder whose fate is known: what "the last reminder" of a term is among.
SETTLED = (Status.DELIVERED, *FAILED)
NOTHING_DELIVERED = "No reminder delivered yet"
# Policies an agent's morning email lists; the rest are on the workspace's page.
EMAIL_LISTS_AT_MOST = 50


class CallError(Exception):
    """The call cannot be recorded; the message says why, for the agent."""


def needs_a_call(policies: QuerySet[Policy], *, today: date) -> QuerySet[Policy]:
    """Of `policies`, the active ones expiring within the CallListRule's days (today included)
    whose customer no reminder about the current expiry reached, whom no channel can reach
    any more, or whose last reminder about it to be delivered or fail failed (one still on its
    way does not count yet); not those whose customer declined to renew the term. Soonest
    expiry first. Each has `unreachable_id`, `last_status` and `last_error` annotated for
    `reason_to_call`.

    The window is walked by an index on active policies' expiry (an agent's: by agent and
    expiry, policy_active_agent_expiry); each policy in it costs a lookup of its customer's row
    and one of its last settled reminder (notification_settled_by_term, index only), so
    the cost follows the policies expiring in the window, not the book's size. Scalar
    subqueries, not EXISTS nor a join: under an OR, PostgreSQL hashes an EXISTS over every
    delivered reminder, and a join over every customer (millions), instead of probing an index
    for each policy."""
    days = CallListRule.current().days_before_expiry
    # The term's last reminder whose fate is known: delivered, or failed for good.
    last = Notification.objects.filter(
        policy=OuterRef("pk"), expiry_date=OuterRef("expiry_date"), status__in=SETTLED
    ).order_by("-status_changed_at")
    unreachable = unreachable_customers().filter(pk=OuterRef("customer_id")).order_by()
    return (
        policies.filter(
            status=Policy.Status.ACTIVE,
            expiry_date__gte=today,
            expiry_date__lte=today + timedelta(days=days),
        )
        .exclude(RENEWAL_DECLINED)
        .annotate(
            last_status=Subquery(last.values("status")[:1]),
            unreachable_id=Subquery(unreachable.values("id")[:1]),
        )
        .filter(
            Q(last_status__isnull=True)
            | Q(last_status__in=FAILED)
            | Q(unreachable_id__isnull=False)
        )
        # Read for the rows shown only: a subquery in the SELECT list runs after the LIMIT.
        .annotate(last_error=Subquery(last.values("last_error")[:1]))
        # The customers of the page only, by primary key: a join would let the planner hash
        # every customer of the database first.
        .select_related("agent__user")
        .prefetch_related("customer")
        .order_by("expiry_date", "id")
    )


def reason_to_call(policy: Policy) -> str:
    """Why a policy of `needs_a_call` is on the list, in plain words."""
    if policy.unreachable_id is not None:
        reasons = dict.fromkeys(
            reach.why_unreachable(channel, policy.customer) for channel in Channel.values
        )
        return f"Can't be reached: {'; '.join(reasons)}"
    if policy.last_status in FAILED:
        word = "bounced" if policy.last_status == Status.BOUNCED else "failed"
        detail = explain_error(policy.last_error) if policy.last_error else ""
        return f"Last reminder {word}" + (f": {detail}" if detail else "")
    return NOTHING_DELIVERED


@dataclass(frozen=True)
class CallListEntry:
    policy: Policy
    reason: str

    @property
    def phone(self) -> str:
        return self.policy.customer.phone


def entries(policies: list[Policy]) -> list[CallListEntry]:
    return [CallListEntry(policy, reason_to_call(policy)) for policy in policies]


# --- Call outcomes --------------------------------------------------------------------------


@transaction.atomic
def record_call(
    *,
    policy: Policy,
    outcome: str,
    phone: str | None = None,
    term: date | None = None,
    called_by=None,
    note: str = "",
    at: datetime | None = None,
) -> CallOutcome:
    """Record what came of a call about the policy's current term, with its effect: "wrong
    number" marks the number called wrong (no SMS or WhatsApp goes to it until the customer
    has another); "declined" stops the term's reminders (planning's own rule cancels those
    waiting, and plans no more) and takes the policy off the call list. The policy still lapses
    at its expiry, and a renewal still takes. `phone`: the number called, when the agent read
    it earlier (a page); by default the customer's number now. `term`: likewise, the expiry the
    call was about; a decline of a term that has since been renewed declines nothing."""
    if outcome not in Outcome.values:
        choices = ", ".join(label.lower() for label in Outcome.labels)
        raise CallError(f"Unknown call outcome {outcome!r}: choose {choices}.")
    policy = Policy.objects.select_for_update().select_related("customer").get(pk=policy.pk)
    if outcome == Outcome.DECLINED and policy.status != Policy.Status.ACTIVE:
        raise CallError(f"{policy.policy_number} is {policy.get_status_display().lower()}.")
    term = term or policy.expiry_date
    if outcome == Outcome.DECLINED and term != policy.expiry_date:
        raise CallError(
            f"{policy.policy_number} now runs to {policy.expiry_date:%Y-%m-%d} (renewed since "
            f"the call about the term to {term:%Y-%m-%d}): nothing declined."
        )
    called = (policy.customer.phone if phone is None else phone.strip())[:32]
    if outcome == Outcome.WRONG_NUMBER and not called:
        raise CallError(f"{policy.customer.name} has no phone number to mark wrong.")
    call = CallOutcome.objects.create(
        policy=policy,
        expiry_date=term,
        outcome=outcome,
        phone=called,
        called_by=called_by,
        called_at=at or timezone.now(),
        note=note[:500],
    )
    if outcome == Outcome.WRONG_NUMBER:
        # The number called, not whatever it is by now.
        Customer.objects.filter(pk=policy.customer_id, phone=call.phone).update(
            wrong_phone=F("phone")
        )
    elif outcome == Outcome.DECLINED:
        Policy.objects.filter(pk=policy.pk).update(renewal_declined_for=F("expiry_date"))
        planning.cancelled_outdated(policy_id=policy.pk)
    return call


def policy_calls(policy: Policy) -> QuerySet[CallOutcome]:
    """The policy's calls, newest first (its timeline)."""
    return policy.calls.select_related("called_by").order_by("-called_at", "-id")


# --- The morning email ----------------------------------------------------------------------


def email_call_lists(*, day: date) -> int:
    """Email each agent their call list for `day`, unless it is empty or went already (once
    per agent and day, whatever the runs: notifications.claimed_emails). Returns how many were
    sent."""
    sent = 0
    for agent in Agent.objects.select_related("user").filter(user__is_active=True):
        if CallListEmail.objects.filter(agent=agent, day=day, emailed_at__isnull=False).exists():
            continue
        calls = needs_a_call(agent.policies.all(), today=day)
        listed = entries(list(calls[:EMAIL_LISTS_AT_MOST]))
        if not listed:
            continue
        total = len(listed) if len(listed) < EMAIL_LISTS_AT_MOST else calls.count()
        row, _ = CallListEmail.objects.get_or_create(
            agent=agent, day=day, defaults={"policies": total}
        )
        send = partial(_email, agent=agent, day=day, listed=listed, total=total)
        if claimed_emails.claim_and_email(
            row, [agent.email], send=send, metadata_key=CALL_LIST_METADATA
        ):
            CallListEmail.objects.filter(pk=row.pk).update(policies=total)
            sent += 1
    return sent


def _email(
    row: CallListEmail,
    recipients: list[str],
    *,
    agent: Agent,
    day: date,
    listed: list[CallListEntry],
    total: int,
) -> None:
    page = settings.PUBLIC_BASE_URL.rstrip("/") + reverse("workspace:calls")
    lines = [
        f"Good morning {agent.name},",
        "",
        f"{total} of your policies need a call ({day:%a %d %b %Y}): they expire soon and no "
        "reminder reached the customer.",
        "",
        *(
            f"{entry.policy.expiry_date:%Y-%m-%d}  {entry.policy.policy_number}  "
            f"{entry.policy.customer.name}  {entry.phone or 'no phone'}  {entry.reason}"
            for entry in listed
        ),
    ]
    if total > len(listed):
        lines += ["", f"... and {total - len(listed)} more."]
    lines += ["", f"Record each call's outcome on {page}"]
    email = EmailMultiAlternatives(
        subject=f"Renewly: {total} polic{'y' if total == 1 else 'ies'} to call today",
        body="\n".join(lines),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )
    email.tags = ["call-list"]
    # What tells this email apart at the provider, should the run die before recording it.
    email.metadata = {CALL_LIST_METADATA: str(row.pk)}
    email.extra_headers[CALL_LIST_HEADER] = str(row.pk)
    email.send()
