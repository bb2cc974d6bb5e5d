"""A staff user who may edit message templates can only format the reminder's own facts: no
password hash, no other customer, no other template, no debug dump, through the admin's form,
its preview, its test send or the daily sends."""

import datetime
import re
from datetime import timedelta

import pytest
from django.core import mail
from django.template import Context
from django.urls import reverse
from django.utils import timezone

from notifications import dispatch, preferences, rendering, templating
from notifications.models import MessageTemplate, Notification, ReminderRule, TemplateTranslation
from tests.factories import (
    make_agent,
    make_customer,
    make_policy,
    make_staff,
    queue_an_email_and_an_sms,
)

ATTACKS = {
    "a password hash": "{{ agent.user.password }}",
    "other customers through the relations": (
        "{{ customer.notifications.all.0.rule.notifications.all }}"
    ),
    "an admin template": "{% include 'admin/base.html' %}",
    "a tag library": "{% load static %}{% static 'x' %}",
    "the context dump": "{% debug %}",
    "unescaped values": "{{ customer.name|safe }}",
    "escaping turned off": "{% autoescape off %}{{ customer.name }}{% endautoescape %}",
    "a loop over anything": "{% for n in customer.notifications.all %}{{ n }}{% endfor %}",
}


@pytest.fixture
def template(seeded_defaults):
    return MessageTemplate.objects.get(name="Renewal reminder (email)")


@pytest.fixture
def policy(seeded_defaults):
    customer = make_customer("lucia@mail.example", name="Lucía Gómez")
    expiry = timezone.localdate() + timedelta(days=20)
    return make_policy("HOME-7", customer=customer, agent=make_agent(), expiry_date=expiry)


def template_form(template: MessageTemplate, **changes) -> dict:
    return {
        "name": template.name,
        "channel": template.channel,
        "subject": template.subject,
        "body": template.body,
        "html_body": template.html_body,
        "translations-TOTAL_FORMS": "0",
        "translations-INITIAL_FORMS": "0",
        **changes,
    }


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_a_template_reaching_beyond_its_facts_is_refused_on_save(admin_client, template, attack):
    change = reverse("admin:notifications_messagetemplate_change", args=[template.pk])
    body_before = template.body

    response = admin_client.post(change, template_form(template, body="Hello\n" + attack))

    assert response.status_code == 200  # the form again, with the reason
    assert "Line 2:" in response.content.decode()
    template.refresh_from_db()
    assert template.body == body_before


def test_an_unknown_value_is_named_with_its_line_and_what_is_available(admin_client, template):
    change = reverse("admin:notifications_messagetemplate_change", args=[template.pk])

    response = admin_client.post(
        change, template_form(template, subject="Renew {{ policy.number }}")
    )

    html = response.content.decode()
    assert "Line 1: there is no value &#x27;policy.number&#x27;" in html
    assert "policy.policy_number" in html


def test_a_template_that_does_not_compile_is_refused_instead_of_failing_every_send(
    admin_client, template
):
    change = reverse("admin:notifications_messagetemplate_change", args=[template.pk])
    body = "Dear {{ customer.name }},\n\n{% if %}renew{% endif %}"

    response = admin_client.post(change, template_form(template, body=body))

    assert "Line 3: Unexpected end of expression in if tag." in response.content.decode()
    template.refresh_from_db()
    assert "{% if %}" not in template.body


def test_a_translation_is_checked_like_its_template(admin_client, template):
    change = reverse("admin:notifications_messagetemplate_change", args=[template.pk])
    spanish = template.translations.get(language="es")
    form = template_form(
        template,
        **{
            "translations-TOTAL_FORMS": "1",
            "translations-INITIAL_FORMS": "1",
            "translations-0-id": str(spanish.pk),
            "translations-0-template": str(template.pk),
            "translations-0-language": "es",
            "translations-0-subject": spanish.subject,
            "translations-0-body": "{{ agent.user.password }}",
            "translations-0-html_body": spanish.html_body,
        },
    )

    response = admin_client.post(change, form)

    assert "there is no value &#x27;agent.user.password&#x27;" in response.content.decode()
    spanish.refresh_from_db()
    assert "password" not in spanish.body


def test_the_seeded_templates_pass_the_checks(seeded_defaults):
    for text in [*MessageTemplate.objects.all(), *TemplateTranslation.objects.all()]:
        text.full_clean()


def test_a_template_sees_plain_values_only(policy):
    values = rendering.values_for(policy, policy.customer, policy.expiry_date, 14)

    def plain(value) -> bool:
        if isinstance(value, dict):
            return all(isinstance(key, str) and plain(item) for key, item in value.items())
        if isinstance(value, list):  # a digest's policies: a list of plain dicts
            return all(isinstance(item, dict) and plain(item) for item in value)
        return isinstance(value, str | int | datetime.date)

    assert plain(values)
    assert set(values) == set(templating.VARIABLES)
    # Even compiled by Django's own engine, the hash is not there to be found.
    unchecked = templating.ENGINE.from_string("[{{ agent.user.password }}]")
    assert unchecked.render(Context(values)) == "[]"


def test_a_bad_template_already_stored_makes_the_preview_say_why(admin_client, template, policy):
    MessageTemplate.objects.filter(pk=template.pk).update(body="{{ agent.user.password }}")
    rule = ReminderRule.objects.filter(template=template).first()
    url = reverse("admin:notifications_reminderrule_preview", args=[rule.pk])

    response = admin_client.get(url, {"policy_number": "HOME-7"})

    assert response.status_code == 200
    html = response.content.decode()
    assert "cannot be rendered" in html
    assert "there is no value &#x27;agent.user.password&#x27;" in html
    assert "pbkdf2" not in html
    response = admin_client.post(url + "?policy_number=HOME-7", {"to": "admin@example.com"})
    assert mail.outbox == []


def test_a_bad_template_already_stored_fails_its_reminders_and_sends_nothing(outbox, db):
    queued = queue_an_email_and_an_sms("pat@mail.example", "+14155550123")
    email = queued["email"]
    MessageTemplate.objects.filter(pk=email.rule.template_id).update(
        body="{{ agent.user.password }}"
    )

    dispatch.send_many([email.pk])

    email.refresh_from_db()
    assert email.status == Notification.Status.FAILED
    assert "there is no value 'agent.user.password'" in email.last_error
    assert not (outbox / "email").exists() or not any((outbox / "email").iterdir())


BREAKERS = {
    "a tag without its argument": "{% filter %}x{% endfilter %}",
    "nesting past Python's recursion limit": "{% if not "
    + "not " * 2000
    + "days_left %}x{% endif %}",
    "a division by zero": "{{ days_left|divisibleby:0 }}",
    "a time format on a date": '{{ expiry_date|date:"H" }}',
    "a padding filter": '{{ customer.name|center:"100000000" }}',
    "a template longer than any reminder": "{{ customer.name }}" * 2000,
}


@pytest.mark.parametrize("breaker", BREAKERS.values(), ids=BREAKERS.keys())
def test_a_template_that_would_break_or_blow_up_is_refused_with_a_reason_not_a_500(
    admin_client, template, breaker
):
    change = reverse("admin:notifications_messagetemplate_change", args=[template.pk])
    body_before = template.body

    response = admin_client.post(change, template_form(template, body=breaker))

    assert response.status_code == 200
    assert 'class="errorlist' in response.content.decode()
    template.refresh_from_db()
    assert template.body == body_before


def test_a_filter_that_cannot_format_its_value_writes_nothing_rather_than_failing_a_send():
    """Only the Spanish branch divides by zero, so the check's sample (English) passes it."""
    checked = templating.check(
        "[{% if customer.language == 'es' %}{{ days_left|divisibleby:0 }}{% endif %}]"
    )
    values = {**templating.SAMPLE_VALUES, "customer": {"name": "Ana", "language": "es"}}

    assert checked.render(values, autoescape=False) == "[]"


def test_a_rendered_reminder_is_capped_in_length():
    checked = templating.check("{{ customer.name }}{{ customer.name }}")
    values = {**templating.SAMPLE_VALUES, "customer": {"name": "x" * 60_000}}

    with pytest.raises(templating.TemplateProblem, match="more than the 100,000"):
        checked.render(values, autoescape=False)


def test_a_template_editor_previews_a_made_up_customer_and_no_real_one(
    client, template, policy, staff_roles
):
    editor = make_staff("wordsmith", roles=["Template editors"])
    client.force_login(editor)
    rule = ReminderRule.objects.filter(template=template).first()
    url = reverse("admin:notifications_reminderrule_preview", args=[rule.pk])

    page = client.get(url, {"policy_number": "HOME-7"}).content.decode()

    assert "Alex Sample" in page
    assert "made-up customer" in page
    assert "<strong>SAMPLE-0001</strong>" in page
    for real in ("<strong>HOME-7</strong>", "Lucía Gómez", "lucia@mail.example"):
        assert real not in page
    tokens = preferences.token_for(policy.customer)
    assert tokens not in page


def test_a_test_email_carries_no_customers_links_nor_one_click_unsubscribe(
    admin_client, template, policy
):
    rule = ReminderRule.objects.filter(template=template).first()
    url = reverse("admin:notifications_reminderrule_preview", args=[rule.pk])

    admin_client.post(url + "?policy_number=HOME-7", {"to": "admin@example.com"})

    (sent,) = mail.outbox
    assert "List-Unsubscribe" not in sent.extra_headers
    assert "List-Unsubscribe" not in sent.message()
    assert preferences.token_for(policy.customer) not in sent.body
    assert "/preferences/preview/" in sent.body


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        (
            "{% firstof customer.name as policies %}"
            "{% for policy in policies %}{{ policy.policy_number }}{% endfor %}",
            "'as policies' would hide the value policies",
        ),
        ("{% now 'Y' as policy %}{{ policy }}", "'as policy' would hide the value policy"),
        ("{{ policies }}", "they are not written as they are"),
        ('{{ policies|default:"none" }}', "they are not written as they are"),
    ],
)
def test_a_digest_template_cannot_turn_its_list_into_something_else(source, problem):
    with pytest.raises(templating.TemplateProblem, match=re.escape(problem)):
        templating.check(source)
