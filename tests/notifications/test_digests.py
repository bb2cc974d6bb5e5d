"""Digests: a customer's reminders due together on one channel go as one message listing each
policy, through the real anymail Postmark backend and the real twilio client against the fake
provider; each reminder keeps its row and timeline, recovery and the providers' callbacks
treat the message as one."""

import base64
import json
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, OperationalError
from django.utils import timezone
from twilio.request_validator import RequestValidator

from notifications import dispatch, leases, planning, previews, recovery, rendering
from notifications.channels.sms import sms_segments
from notifications.models import (
    Digest,
    MessageTemplate,
    Notification,
    ReminderRule,
    WorkerLease,
)
from notifications.services import renew_policy
from notifications.tasks import daily_scan
from tests.factories import make_agent, make_customer, make_policy

Status = Notification.Status
EMAIL = "pat@mail.example"
PHONE = "+14155550100"
PUBLIC = "https://renewly.example"
NUMBERS = ["CAR-1", "HOME-2", "LIFE-3"]
PRODUCTS = ["auto", "home", "life"]


@pytest.fixture
def customer(db, seeded_defaults, rules):
    """The seeded templates; rules 7 days before expiry by email and SMS, with them."""
    for channel, name in [("email", "Renewal reminder (email)"), ("sms", "Renewal reminder (SMS)")]:
        rules(7, channel, template=MessageTemplate.objects.get(name=name))
    return make_customer(EMAIL, phone=PHONE, timezone=django_settings.TIME_ZONE)


def policies_due_together(customer, count: int, numbers=NUMBERS) -> list:
    expiry = timezone.localdate() + timedelta(days=7)
    agent = make_agent()
    return [
        make_policy(number, customer=customer, agent=agent, expiry_date=expiry, product_line=line)
        for number, line in list(zip(numbers, PRODUCTS, strict=True))[:count]
    ]


def plan_and_queue() -> list[int]:
    planning.plan_due(run_date=timezone.localdate())
    return planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1))


def sent(provider, channel: str) -> list:
    """What the fake provider accepted on `channel`."""
    return [message for message in provider.messages if message.channel == channel]


@pytest.mark.parametrize("count", [2, 3])
def test_policies_due_together_go_as_one_email_listing_each(
    providers, customer, eager_tasks, count
):
    policies_due_together(customer, count)

    daily_scan.apply(args=[timezone.localdate().isoformat()])

    (email,) = sent(providers, "email")
    for number in NUMBERS[:count]:
        assert number in email.body
        assert number in email.html
    assert email.subject.startswith(f"{count} of your policies expire soon")
    assert set(NUMBERS[count:]).isdisjoint(email.body.split())
    members = Notification.objects.filter(channel="email").order_by("pk")
    assert [n.status for n in members] == [Status.SENT] * count
    assert {n.provider_message_id for n in members} == {email.id}
    digest = Digest.objects.get()
    assert {n.digest_id for n in members} == {digest.pk}
    assert (digest.provider_message_id, digest.to, digest.body) == (email.id, EMAIL, email.body)
    assert email.metadata == {"digest_id": str(digest.pk)}
    # SMS is not a digest channel by default: one SMS for each policy, in its own words.
    assert len(sent(providers, "sms")) == count
    assert Notification.objects.filter(channel="sms", digest__isnull=False).count() == 0


def test_a_customer_reading_spanish_gets_the_digest_in_spanish(providers, customer, eager_tasks):
    customer.language = "es"
    customer.save()
    policies_due_together(customer, 3)

    daily_scan.apply(args=[timezone.localdate().isoformat()])

    (email,) = sent(providers, "email")
    assert email.subject == f"3 de sus pólizas vencen pronto, la primera {_in_7_days('es')}"
    assert "Estas pólizas suyas vencen pronto" in email.body
    expiry = rendering.date_text(timezone.localdate() + timedelta(days=7), "es")
    assert email.body.count(f"vence {_in_7_days('es')}, el {expiry}") == 3


def _in_7_days(language: str) -> str:
    return rendering.days_left_text(7, language)


def test_three_policies_due_together_make_one_sms_when_sms_digests_are_on(
    providers, customer, eager_tasks, settings
):
    settings.DIGEST_CHANNELS = ["email", "sms"]
    policies_due_together(customer, 3)

    daily_scan.apply(args=[timezone.localdate().isoformat()])

    assert len(sent(providers, "email")) == 1
    (sms,) = sent(providers, "sms")
    assert sms.body.startswith("Your policies expire soon:\nCAR-1 in 7 days\nHOME-2 in 7 days\n")
    assert sms.data["StatusCallback"].endswith(f"?digest={Digest.objects.get(channel='sms').pk}")
    assert set(
        Notification.objects.filter(channel="sms").values_list("status", "provider_message_id")
    ) == {(Status.SENT, sms.id)}


def test_a_policy_renewed_before_the_send_drops_out_and_the_rest_go(providers, customer):
    renewed, *_ = policies_due_together(customer, 3)
    ids = plan_and_queue()

    renew_policy(policy=renewed, new_expiry_date=renewed.expiry_date + timedelta(days=365))
    outcomes = dispatch.send_many(ids)

    (email,) = sent(providers, "email")
    assert "CAR-1" not in email.body
    assert "HOME-2" in email.body
    assert "LIFE-3" in email.body
    mine = Notification.objects.get(policy=renewed, channel="email")
    assert mine.status == Status.CANCELLED
    assert isinstance(outcomes[mine.pk], dispatch.NotClaimed)
    assert mine.digest_id is None
    assert mine.provider_message_id == ""


def test_a_digest_of_one_is_an_ordinary_reminder(providers, customer):
    renewed, remaining = policies_due_together(customer, 2)
    ids = plan_and_queue()
    # Renewed behind the reminders' back (an import): the send itself finds it out.
    type(renewed).objects.filter(pk=renewed.pk).update(status="renewed")

    dispatch.send_many(ids)

    (email,) = sent(providers, "email")
    alone = Notification.objects.get(policy=remaining, channel="email")
    assert email.subject == rendering.render(alone).subject
    assert email.metadata["notification_id"] == str(alone.pk)
    assert alone.status == Status.SENT
    assert alone.digest_id is None
    assert not Digest.objects.exists()
    assert Notification.objects.get(policy=renewed, channel="email").status == Status.CANCELLED


def test_a_customer_who_opted_out_of_sms_gets_the_email_digest_only(providers, customer, settings):
    settings.DIGEST_CHANNELS = ["email", "sms"]
    policies_due_together(customer, 3)
    ids = plan_and_queue()
    type(customer).objects.filter(pk=customer.pk).update(sms_consent=False)

    dispatch.send_many(ids)

    assert len(sent(providers, "email")) == 1
    assert sent(providers, "sms") == []
    assert set(Notification.objects.filter(channel="sms").values_list("status", flat=True)) == {
        Status.CANCELLED
    }


@pytest.mark.parametrize(("segments", "messages"), [(1, 3), (2, 1)])
def test_an_sms_digest_longer_than_its_segments_goes_as_separate_sms(
    providers, customer, settings, segments, messages
):
    settings.DIGEST_CHANNELS = ["email", "sms"]
    settings.SMS_DIGEST_MAX_SEGMENTS = segments
    # Long numbers: the digest takes 2 segments.
    policies_due_together(customer, 3, [f"{number}-2026-000001" for number in NUMBERS])

    dispatch.send_many(plan_and_queue())

    assert len(sent(providers, "sms")) == messages
    if messages == 1:
        assert sms_segments(sent(providers, "sms")[0].body) == 2
    assert Digest.objects.filter(channel="sms").count() == (messages == 1)
    assert set(Notification.objects.filter(channel="sms").values_list("status", flat=True)) == {
        Status.SENT
    }


def test_the_fan_out_puts_a_customers_reminders_in_one_batch(customer, settings):
    settings.REMINDER_SEND_BATCH_SIZE = 2
    settings.REMINDER_FANOUT_CHUNK = 1  # the claim's limit cuts the customer's reminders
    policies_due_together(customer, 3)
    other = make_customer("sam@mail.example", phone="+14155550199")
    make_policy(
        "OTHER-1",
        customer=other,
        agent=make_agent("other", "other@agency.example"),
        expiry_date=timezone.localdate() + timedelta(days=7),
    )
    planning.plan_due(run_date=timezone.localdate())
    published = []

    planning.fan_out(publish=published.extend)

    emails = set(Notification.objects.filter(channel="email", customer=customer).values_list("pk"))
    emails = {pk for (pk,) in emails}
    assert any(emails <= set(batch) for batch in published)
    assert sum(len(batch) for batch in published) == Notification.objects.count() == 8


def died_after_the_provider_accepted(monkeypatch, ids: list[int]) -> None:
    """A batch whose worker died once the digest went: nothing of the send recorded."""
    save = dispatch._BatchRecord.save
    saves = []

    def database_gone_once_sent(record):
        saves.append(record)
        if len(saves) == 2:  # the first is before the sends; the second records one
            raise OperationalError("server closed the connection unexpectedly")
        return save(record)

    monkeypatch.setattr(dispatch._BatchRecord, "save", database_gone_once_sent)
    with pytest.raises(OperationalError):
        dispatch.send_many(ids)
    monkeypatch.undo()
    held = Notification.objects.filter(pk__in=ids, status=Status.SENDING)
    WorkerLease.objects.filter(pk__in=held.values("lease_id")).update(expires_at=timezone.now())
    leases.current().renew()


@pytest.mark.parametrize("channel", ["email", "sms"])
def test_a_digest_whose_worker_died_after_the_send_is_found_once_and_never_sent_again(
    providers, customer, settings, monkeypatch, channel
):
    settings.DIGEST_CHANNELS = [channel]
    policies_due_together(customer, 3)
    ids = [pk for pk in plan_and_queue() if Notification.objects.get(pk=pk).channel == channel]

    died_after_the_provider_accepted(monkeypatch, ids)
    (message,) = sent(providers, channel)
    members = Notification.objects.filter(pk__in=ids)
    assert set(members.values_list("status", flat=True)) == {Status.SENDING}

    assert recovery.recover_abandoned() == {recovery.FOUND: 3}
    Notification.objects.filter(status=Status.DEFERRED).update(send_after=timezone.now())
    dispatch.send_many(planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1)))

    assert len(sent(providers, channel)) == 1
    assert providers.lookups[channel] == 1  # asked once, for the one message
    assert set(members.values_list("status", "provider_message_id")) == {(Status.SENT, message.id)}
    for member in members:
        (event,) = member.events.all()
        assert (event.event_type, event.provider_message_id) == ("reconciled", message.id)
    assert Digest.objects.get().provider_message_id == message.id


def test_a_digest_that_never_reached_the_provider_is_sent_again_once_as_one(
    providers, customer, monkeypatch
):
    policies_due_together(customer, 2)
    ids = [pk for pk in plan_and_queue() if Notification.objects.get(pk=pk).channel == "email"]
    providers.script(EMAIL, ["reset"])  # the connection drops: the worker is left not knowing

    dispatch.send_many(ids)
    Notification.objects.filter(pk__in=ids).update(recover_after=timezone.now())
    assert recovery.recover_abandoned() == {recovery.NOT_FOUND: 2}
    Notification.objects.filter(status=Status.DEFERRED).update(send_after=timezone.now())
    dispatch.send_many(planning.claim_for_enqueue(limit=100, stalled_after=timedelta(hours=1)))

    (email,) = sent(providers, "email")
    assert "CAR-1" in email.body
    assert "HOME-2" in email.body
    members = Notification.objects.filter(pk__in=ids)
    assert set(members.values_list("status", "provider_message_id")) == {(Status.SENT, email.id)}
    assert len({member.digest_id for member in members}) == 1
    assert Digest.objects.count() == 2  # the attempt that never arrived, and the one that did


def postmark_delivery(client, message) -> int:
    payload = {
        "RecordType": "Delivery",
        "MessageID": message.id,
        "Recipient": message.recipient,
        "DeliveredAt": "2026-03-10T08:00:05Z",
        "Metadata": message.metadata,  # as the real email carried it
        "Details": "250 OK",
    }
    auth = base64.b64encode(django_settings.ANYMAIL["WEBHOOK_SECRET"].encode()).decode()
    return client.post(
        "/anymail/postmark/tracking/",
        json.dumps(payload),
        content_type="application/json",
        headers={"Authorization": f"Basic {auth}"},
    ).status_code


def test_a_delivery_event_for_a_digest_email_delivers_each_of_its_reminders(
    client, providers, customer, eager_tasks
):
    policies_due_together(customer, 3)
    daily_scan.apply(args=[timezone.localdate().isoformat()])
    (email,) = sent(providers, "email")

    assert postmark_delivery(client, email) == 200
    assert postmark_delivery(client, email) == 200  # a replay

    members = Notification.objects.filter(channel="email")
    assert set(members.values_list("status", flat=True)) == {Status.DELIVERED}
    for member in members:
        (event,) = member.events.all()
        assert (event.event_type, event.provider_message_id) == ("delivered", email.id)


def test_a_twilio_status_callback_for_a_digest_sms_delivers_each_of_its_reminders(
    client, providers, customer, settings
):
    settings.DIGEST_CHANNELS = ["sms"]
    settings.PUBLIC_BASE_URL = PUBLIC
    policies_due_together(customer, 2)
    dispatch.send_many(plan_and_queue())
    (sms,) = sent(providers, "sms")
    callback = sms.data["StatusCallback"]  # the URL the real client gave Twilio
    params = {"MessageSid": sms.id, "MessageStatus": "delivered", "AccountSid": "AC" + "0" * 32}
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(callback, params)
    parts = urlsplit(callback)

    response = client.post(
        f"{parts.path}?{parts.query}", params, headers={"X-Twilio-Signature": signature}
    )

    assert response.status_code == 204
    members = Notification.objects.filter(channel="sms")
    assert set(members.values_list("status", flat=True)) == {Status.DELIVERED}
    assert all(member.events.get().event_type == "delivered" for member in members)
    assert set(Notification.objects.filter(channel="email").values_list("status", flat=True)) == {
        Status.SENT
    }


def test_an_admin_previews_the_digest_template_with_the_customers_policies_due_together(
    admin_client, customer
):
    policies_due_together(customer, 3)
    template = MessageTemplate.objects.get(channel="email", kind=MessageTemplate.Kind.DIGEST)

    response = admin_client.get(
        f"/admin/notifications/messagetemplate/{template.pk}/preview/",
        {"policy_number": "HOME-2", "language": "es"},
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert "3 de sus pólizas vencen pronto" in page
    assert all(number in page for number in NUMBERS)


def test_a_digest_template_previewed_on_a_made_up_policy_lists_two(customer):
    template = MessageTemplate.objects.get(channel="sms", kind=MessageTemplate.Kind.DIGEST)

    preview = previews.preview(template, previews.sample_policy())

    assert "SAMPLE-0001" in preview.message.body
    assert "SAMPLE-0002" in preview.message.body
    assert preview.sms_segments == 1


def test_a_rule_cannot_use_a_digest_template(customer):
    template = MessageTemplate.objects.get(channel="email", kind=MessageTemplate.Kind.DIGEST)
    rule = ReminderRule(lead_days=3, channel="email", template=template)

    with pytest.raises(ValidationError, match="Choose a reminder template"):
        rule.full_clean()


def test_a_channel_has_one_digest_template(customer):
    with pytest.raises(IntegrityError):
        MessageTemplate.objects.create(
            name="another", channel="email", kind="digest", subject="s", body="b"
        )


def test_a_customer_with_more_policies_due_than_a_digest_lists_gets_several_digests(
    providers, customer, eager_tasks, settings
):
    settings.DIGEST_MAX_POLICIES = 2
    policies_due_together(customer, 3)

    daily_scan.apply(args=[timezone.localdate().isoformat()])

    emails = sent(providers, "email")
    assert sorted(len([n for n in NUMBERS if n in email.body]) for email in emails) == [1, 2]
    members = Notification.objects.filter(channel="email")
    assert {n.status for n in members} == {Status.SENT}
    assert Digest.objects.count() == 1  # the one of two; a digest of one is a reminder


def test_whatsapp_has_no_digest_template(db):
    template = MessageTemplate(name="WA digest", channel="whatsapp", kind="digest", body="-")

    with pytest.raises(ValidationError):
        template.full_clean()
