"""Issue 15's book, end to end: twelve customers whose policies expire on the same day. The daily
scans send an email (an experiment of two wordings) two weeks ahead and an SMS one week ahead;
the providers' callbacks say what was delivered; the agent works the call list; some customers
renew after a reminder, one after a call, and the rest lapse. Outcomes, the call list, the
retention figures and the experiment's result are each checked against a recount from the rows
as well as against what this story says they must be."""

from collections import defaultdict
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from notifications import calls, experiments, retention
from notifications.models import (
    Channel,
    MessageTemplate,
    Notification,
    PolicyOutcome,
    TemplateExperiment,
)
from notifications.tasks import daily_scan
from policies.models import Customer, Policy
from tests.factories import make_agent, make_customer, make_experiment, make_policy
from tests.notifications.test_webhooks import (
    PUBLIC,
    TOKEN,
    bounce,
    delivery,
    postmark_event,
    status_callback,
)

pytestmark = pytest.mark.django_db
Status = Notification.Status
TODAY = timezone.localdate()
EXPIRY = TODAY + timedelta(days=14)
EMAIL_DAY, SMS_DAY, LAPSE_DAY = EXPIRY - timedelta(14), EXPIRY - timedelta(7), EXPIRY + timedelta(1)

# number: (email, phone, email consent, SMS consent)
CUSTOMERS = {
    "P01": ("p01@mail.example", "+14155550101", True, True),
    "P02": ("p02@mail.example", "+14155550102", True, True),
    "P03": ("p03@mail.example", "+14155550103", True, True),
    "P04": ("p04@mail.example", "+14155550104", True, True),
    "P05": ("p05@mail.example", "+14155550105", True, True),
    "P06": ("p06@mail.example", "+14155550106", True, True),
    "P07": ("p07@mail.example", "+14155550107", True, True),
    "P08": ("p08@mail.example", "+14155550108", True, True),
    "P09": ("p09@mail.example", "+14155550109", False, False),  # opted out of everything
    "P10": ("p10@mail.example", "", True, True),  # no phone
    "P11": ("", "+14155550111", True, True),  # no email
    "P12": ("", "+14155550112", True, True),
}
# What the providers say of each reminder (no entry: no callback, it stays "sent").
EMAIL_FATE = dict.fromkeys(("P01", "P02", "P03", "P04", "P05", "P06", "P10"), "delivered")
EMAIL_FATE["P07"] = "bounced"
SMS_FATE = {"P01": "delivered", "P02": "delivered", "P11": "delivered"}
SMS_FATE |= {"P08": "undelivered", "P12": "undelivered"}


@pytest.fixture
def book(rules, outbox, eager_tasks, settings):
    """The rules (email 14 days ahead in two wordings, SMS 7 days ahead), the agent and the
    twelve policies, product lines alternating auto and home."""
    settings.TWILIO_AUTH_TOKEN, settings.PUBLIC_BASE_URL = TOKEN, PUBLIC  # callbacks signed
    email_rule = rules(14, Channel.EMAIL)
    rules(7, Channel.SMS)
    short = MessageTemplate.objects.create(
        name="Renewal reminder (email, short)",
        channel=Channel.EMAIL,
        subject="{{ policy.policy_number }} ends {{ days_left_text }}",
        body="{{ customer.name }}, renew {{ policy.policy_number }} before it lapses.",
    )
    experiment = make_experiment(email_rule, email_rule.template, short, name="Short wording")
    agent = make_agent()
    for index, (number, (email, phone, email_ok, sms_ok)) in enumerate(CUSTOMERS.items()):
        customer = make_customer(
            email,
            name=f"Customer {number}",
            phone=phone,
            email_consent=email_ok,
            sms_consent=sms_ok,
        )
        make_policy(
            number,
            customer=customer,
            agent=agent,
            expiry_date=EXPIRY,
            product_line="auto" if index % 2 == 0 else "home",
        )
    return agent, experiment


def reminder(number: str, channel: str) -> Notification:
    return Notification.objects.get(policy__policy_number=number, channel=channel)


def scan_and_hear_back(client, day, channel, fates):
    daily_scan.apply(args=[day.isoformat()])
    for number, fate in fates.items():
        sent = reminder(number, channel)
        if channel == Channel.EMAIL:
            payload = delivery(sent) if fate == "delivered" else bounce(sent)
            response = postmark_event(client, payload)
        else:
            errors = {"ErrorCode": "30003"} if fate == "undelivered" else {}
            response = status_callback(client, sent, fate, **errors)
        assert response.status_code in (200, 204)


def recount_call_list(today) -> set[str]:
    """The call list recounted from the rows: active, not declined, expiring within 7 days, and
    no reminder delivered / the last one settled failed / no channel reaches the customer."""
    listed = set()
    for policy in Policy.objects.select_related("customer"):
        if policy.status != "active" or policy.renewal_declined_for == policy.expiry_date:
            continue
        if not today <= policy.expiry_date <= today + timedelta(days=7):
            continue
        settled = [
            n
            for n in policy.notifications.filter(expiry_date=policy.expiry_date)
            if n.status in ("delivered", "failed", "bounced")
        ]
        last = max(settled, key=lambda n: n.status_changed_at, default=None)
        customer = policy.customer
        email_reaches = (
            customer.email_consent and customer.email and not customer.email_undeliverable
        )
        sms_reaches = (
            customer.sms_consent and customer.phone and customer.phone != customer.wrong_phone
        )
        if last is None or last.status != "delivered" or not (email_reaches or sms_reaches):
            listed.add(policy.policy_number)
    return listed


def call_list(agent, today) -> dict[str, str]:
    book = agent.policies.all()
    entries = calls.entries(list(calls.needs_a_call(book, today=today)))
    return {entry.policy.policy_number: entry.reason for entry in entries}


def test_a_book_renewed_after_reminders_and_calls_and_lapsed(client, book):
    agent, experiment = book
    client.force_login(agent.user)

    # Two weeks ahead: the email, in one of two wordings per policy, and what became of it.
    scan_and_hear_back(client, EMAIL_DAY, Channel.EMAIL, EMAIL_FATE)
    emails = Notification.objects.filter(channel=Channel.EMAIL)
    assert set(emails.values_list("policy__policy_number", flat=True)) == {
        number for number, (email, _, consent, _) in CUSTOMERS.items() if email and consent
    }
    assert all(n.variant_id is not None for n in emails)

    # One week ahead: the SMS.
    scan_and_hear_back(client, SMS_DAY, Channel.SMS, SMS_FATE)

    # The call list, the day the SMS went: who no reminder reached, or whose last one failed,
    # or whom no channel reaches.
    listed = call_list(agent, SMS_DAY)
    assert set(listed) == recount_call_list(SMS_DAY) == {"P07", "P08", "P09", "P12"}
    assert listed["P07"].startswith("Last reminder bounced")
    assert listed["P08"].startswith("Last reminder failed")
    assert listed["P09"].startswith("Can't be reached")

    # The agent calls: P08 will renew (and does), P09 declines, P12's number is wrong.
    for number, outcome in [("P08", "will_renew"), ("P09", "declined"), ("P12", "wrong_number")]:
        policy = Policy.objects.get(policy_number=number)
        url = reverse("workspace:record-call", kwargs={"policy_id": policy.pk})
        assert client.post(url, {"outcome": outcome}).status_code == 302
    listed = call_list(agent, SMS_DAY)
    assert set(listed) == recount_call_list(SMS_DAY) == {"P07", "P08", "P12"}
    assert listed["P12"].startswith("Can't be reached")  # no email, and its number is wrong
    assert Customer.objects.get(email="", phone="+14155550112").wrong_phone == "+14155550112"

    # Renewals in the workspace: three after their reminders, one after the call.
    for number in ("P01", "P02", "P03", "P08"):
        policy = Policy.objects.get(policy_number=number)
        url = reverse("workspace:renew", kwargs={"policy_id": policy.pk})
        new_expiry = (EXPIRY + timedelta(days=365)).isoformat()
        assert client.post(url, {"new_expiry_date": new_expiry}).status_code == 302
    assert set(call_list(agent, SMS_DAY)) == recount_call_list(SMS_DAY) == {"P07", "P12"}

    # The day after the expiry: the rest lapse, the declined one with them.
    daily_scan.apply(args=[LAPSE_DAY.isoformat()])

    # Outcomes.
    kinds = dict(PolicyOutcome.objects.values_list("policy__policy_number", "kind"))
    renewed = {"P01", "P02", "P03", "P08"}
    assert kinds == {number: "renewed" if number in renewed else "lapsed" for number in CUSTOMERS}
    last_touch = {
        outcome.policy.policy_number: outcome.last_touch_channel
        for outcome in PolicyOutcome.objects.select_related("policy")
    }
    assert {n: last_touch[n] for n in renewed} == {
        "P01": "sms",  # the SMS, delivered after the email
        "P02": "sms",
        "P03": "email",  # its SMS never said
        "P08": "",  # nothing delivered: the call did it
    }
    # P08's renewal came after the call, and says so; so does its page.
    p08 = PolicyOutcome.objects.get(policy__policy_number="P08")
    assert p08.last_call == p08.policy.calls.get()
    assert p08.last_call.outcome == "will_renew"
    page = client.get(reverse("workspace:policy", kwargs={"policy_id": p08.policy_id}))
    assert "last call: Will renew" in page.content.decode()
    calls_made = {"P08", "P09", "P12"}
    assert {
        o.policy.policy_number for o in PolicyOutcome.objects.filter(last_call__isnull=False)
    } == calls_made
    assert_outcomes_match_the_reminders()

    # Retention over the expiry day, against a recount from the outcome rows.
    retention.refresh(days=[EXPIRY])
    figures = retention.figures(start=EXPIRY, end=EXPIRY, agent=agent)
    assert (figures.total.terms, figures.total.renewed_before, figures.undecided) == (12, 4, 0)
    assert_retention_matches_a_recount(figures)

    # The experiment's result, against a recount from the reminders and outcomes.
    experiments.tally()
    (result,) = experiments.results([TemplateExperiment.objects.get()], agent=agent)
    assert_experiment_matches_a_recount(result)
    assert result.experiment == experiment
    leader = result.leader
    assert leader.rate == max(variant.rate for variant in result.variants if variant.decided)
    expected = "leads" if result.significant else "Not yet significant"
    assert result.verdict.startswith(f"{leader.label} leads" if result.significant else expected)


def assert_outcomes_match_the_reminders():
    """Each outcome's counts and last touch, recounted from the reminders about its term."""
    for outcome in PolicyOutcome.objects.select_related("policy"):
        about_the_term = Notification.objects.filter(
            policy=outcome.policy, expiry_date=outcome.expiry_date, sent_at__isnull=False
        )
        delivered = [n for n in about_the_term if n.delivered_at]
        last = max(delivered, key=lambda n: (n.delivered_at, n.pk), default=None)
        assert outcome.reminders_sent == len(about_the_term)
        assert outcome.reminders_delivered == len(delivered)
        assert outcome.last_touch_id == (last.pk if last else None)
        if last and last.variant_id:
            assert outcome.last_touch_variant_id == last.variant_id
            assert outcome.last_touch_template_id == last.variant.template_id


def _recounted_rates(group) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for outcome in PolicyOutcome.objects.select_related("policy"):
        key = group(outcome)
        counts[key][0] += 1
        counts[key][1] += outcome.kind == "renewed" and outcome.days_before_expiry >= 0
    return {key: tuple(value) for key, value in counts.items()}


def _channels_reached(outcome) -> str:
    delivered = {
        "email" if n.channel == "email" else "phone"
        for n in outcome.policy.notifications.filter(expiry_date=outcome.expiry_date)
        if n.delivered_at and n.delivered_at <= outcome.occurred_at
    }
    return {0: "None delivered", 2: "Email and phone"}.get(
        len(delivered), "Email only" if delivered == {"email"} else "SMS or WhatsApp only"
    )


def _last_touch(outcome) -> tuple[str, str]:
    """(lead time, template) of the last delivered reminder, recounted from the reminders."""
    delivered = [
        n
        for n in outcome.policy.notifications.filter(expiry_date=outcome.expiry_date)
        if n.delivered_at and n.delivered_at <= outcome.occurred_at
    ]
    if not delivered:
        return "No delivered reminder", "No delivered reminder"
    last = max(delivered, key=lambda n: (n.delivered_at, n.pk))
    return f"{last.lead_days} days before", last.template.name


def assert_retention_matches_a_recount(figures):
    def shown(rates):
        return {rate.label: (rate.terms, rate.renewed_before) for rate in rates}

    assert shown(figures.by_product_line) == _recounted_rates(
        lambda o: o.policy.product_line.title()
    )
    assert shown(figures.by_channels) == _recounted_rates(_channels_reached)
    assert shown(figures.by_lead_days) == _recounted_rates(lambda o: _last_touch(o)[0])
    assert shown(figures.by_template) == _recounted_rates(lambda o: _last_touch(o)[1])
    assert shown(figures.by_channels) == {  # what the story says
        "Email and phone": (2, 2),  # P01, P02
        "Email only": (5, 1),  # P03 renewed; P04-P06 (SMS unanswered), P10 lapsed
        "SMS or WhatsApp only": (1, 0),  # P11
        "None delivered": (4, 1),  # P08 renewed after the call; P07, P09, P12 lapsed
    }


def assert_experiment_matches_a_recount(result):
    for variant in result.variants:
        delivered = Notification.objects.filter(
            variant_id=variant.variant_id, delivered_at__isnull=False, digest__isnull=True
        )
        terms = {(n.policy_id, n.expiry_date) for n in delivered}
        decided = [
            outcome
            for outcome in PolicyOutcome.objects.all()
            if (outcome.policy_id, outcome.expiry_date) in terms
        ]
        renewed = [o for o in decided if o.kind == "renewed" and o.days_before_expiry >= 0]
        assert (variant.delivered, variant.decided, variant.renewed) == (
            delivered.count(),
            len(decided),
            len(renewed),
        )
    assert sum(variant.delivered for variant in result.variants) == 7  # the emails delivered
