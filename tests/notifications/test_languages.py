"""A customer's language never costs them a reminder: words from the closest translation (the
exact tag, then the language it belongs to, then the site's default), with the dates, the
"today / tomorrow / in N days" and the product line's name written in the language of those
words; the customer's pages in the closest language the site has; and the admin's preview
saying which translation a customer gets and why."""

from datetime import date, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from notifications import preferences, rendering
from notifications.channels.sms import sms_segments
from notifications.models import MessageTemplate, ReminderRule, TemplateTranslation
from policies.models import ProductLine, ProductLineName
from tests.factories import make_agent, make_customer, make_policy

EXPIRY = date(2036, 12, 1)  # ahead of any day these tests run


@pytest.fixture
def template(db):
    """Words that show which translation was used, and in which language its values are."""
    template = MessageTemplate.objects.create(
        name="Shows its language",
        channel="email",
        subject="EN {{ days_left_text }}",
        body="EN {{ expiry_date_text }} | {{ policy.product_name }}",
    )
    for language in ("es", "pt", "de"):
        TemplateTranslation.objects.create(
            template=template,
            language=language,
            subject=f"{language.upper()} {{{{ days_left_text }}}}",
            body=f"{language.upper()} {{{{ expiry_date_text }}}} | {{{{ policy.product_name }}}}",
        )
    return MessageTemplate.objects.prefetch_related("translations").get(pk=template.pk)


@pytest.fixture
def policy(db):
    customer = make_customer("ana@mail.example", name="Ana")
    return make_policy("AUTO-1", customer=customer, agent=make_agent(), expiry_date=EXPIRY)


def read_by(policy, language: str):
    policy.customer.language = language
    return rendering.preview(
        MessageTemplate.objects.prefetch_related("translations").get(name="Shows its language"),
        policy,
    )


@pytest.mark.parametrize(
    ("language", "chosen", "why"),
    [
        ("de", "de", "the customer's language, de"),
        ("es-MX", "es", "no translation in es-MX: es, the language it belongs to"),
        ("pt-BR", "pt", "no translation in pt-BR: pt, the language it belongs to"),
        ("pt_br", "pt", "no translation in pt-BR: pt, the language it belongs to"),
        ("fr", "en", "no translation in fr or a language it belongs to: the default language, en"),
        ("en-GB", "en", "no translation in en-GB: en, the language it belongs to"),
        ("zh-Hant-TW", "en", "no translation in zh-Hant-TW or a language it belongs to"),
    ],
)
def test_the_closest_translation_is_chosen_and_the_reason_given(template, language, chosen, why):
    words = template.in_language(language)

    assert words.language == chosen
    assert words.why.startswith(why)
    expected = template if chosen == "en" else template.translations.get(language=chosen)
    assert words.text == expected


def test_an_exact_translation_wins_over_its_base_language(template):
    TemplateTranslation.objects.create(template=template, language="pt-BR", subject="BR", body="B")
    template = MessageTemplate.objects.prefetch_related("translations").get(pk=template.pk)

    assert template.in_language("pt-BR").language == "pt-BR"
    assert template.in_language("pt-PT").language == "pt"


@pytest.mark.parametrize(
    ("language", "body"),
    [
        ("de", "DE 1. Dezember 2036"),
        ("es-MX", "ES 1 de diciembre de 2036"),
        ("pt-BR", "PT 1 de dezembro de 2036"),
        # No French words: English words, and an English date inside them.
        ("fr", "EN December 1, 2036"),
        ("zh-Hans", "EN December 1, 2036"),
    ],
)
def test_dates_are_written_in_the_language_of_the_words_they_go_into(
    template, policy, language, body
):
    assert read_by(policy, language).body.startswith(body)


def test_a_translation_can_be_added_for_any_language_and_is_stored_in_its_usual_form(template):
    translation = TemplateTranslation(template=template, language="fr_ca", subject="FR", body="B")
    translation.full_clean()
    translation.save()

    assert translation.language == "fr-CA"
    assert read_by_language(template, "fr-CA").language == "fr-CA"


def read_by_language(template, language):
    return (
        MessageTemplate.objects.prefetch_related("translations")
        .get(pk=template.pk)
        .in_language(language)
    )


@pytest.mark.parametrize("language", ["klingon", "xx", "en--US", ""])
def test_a_translation_in_no_known_language_is_refused(template, language):
    with pytest.raises(ValidationError) as refused:
        TemplateTranslation(
            template=template, language=language, subject="S", body="B"
        ).clean_fields()
    assert "language" in refused.value.message_dict


@pytest.mark.parametrize(
    ("language", "days", "said"),
    [
        ("en", 0, "today"),
        ("en", 1, "tomorrow"),
        ("en", 2, "in 2 days"),
        ("en", -1, "yesterday"),
        ("en", -3, "3 days ago"),
        ("es", 0, "hoy"),
        ("es", 1, "mañana"),
        ("es", 30, "dentro de 30 días"),
        ("de", 0, "heute"),
        ("de", 1, "morgen"),
        ("de", 5, "in 5 Tagen"),
        ("fr", 1, "demain"),
        ("fr", 2, "dans 2 jours"),
        ("pt-BR", 0, "hoje"),
        ("pt-BR", 1, "amanhã"),
        # Each language's plural rules: Polish and Russian have several.
        ("pl", 2, "za 2 dni"),
        ("pl", 22, "za 22 dni"),
        ("pl", 5, "za 5 dni"),
        ("ru", 2, "через 2 дня"),
        ("ru", 5, "через 5 дней"),
        ("ru", 21, "через 21 день"),
    ],
)
def test_days_left_read_as_a_person_says_them(language, days, said):
    assert rendering.days_left_text(days, language) == said


@pytest.mark.parametrize(
    ("language", "subject"),
    [
        ("en", "Your auto policy DUE-1 expires today"),
        ("es", "Su póliza de auto DUE-1 vence hoy"),
    ],
)
def test_a_reminder_on_the_expiry_day_says_today_not_in_0_days(seeded_defaults, language, subject):
    customer = make_customer("due@mail.example", language=language)
    today = timezone.localdate(timezone=customer.timezone)
    policy = make_policy("DUE-1", customer=customer, agent=make_agent(), expiry_date=today)
    template = MessageTemplate.objects.get(name="Renewal reminder (email)")

    message = rendering.preview(template, policy)

    assert message.subject == subject
    assert "0 day" not in message.body
    assert "0 día" not in message.body


def test_the_default_templates_say_tomorrow_and_in_n_days(seeded_defaults):
    customer = make_customer("soon@mail.example")
    today = timezone.localdate(timezone=customer.timezone)
    template = MessageTemplate.objects.get(name="Renewal reminder (email)")
    agent = make_agent()

    tomorrow = make_policy("T-1", customer=customer, agent=agent, expiry_date=today + timedelta(1))
    later = make_policy("T-2", customer=customer, agent=agent, expiry_date=today + timedelta(21))

    assert rendering.preview(template, tomorrow).subject.endswith("expires tomorrow")
    assert rendering.preview(template, later).subject.endswith("expires in 21 days")


@pytest.fixture
def named_line(db):
    line = ProductLine.objects.create(code="auto_priv_01")
    names = {"en": "car insurance", "es": "seguro de auto", "pt": "seguro auto"}
    for language, name in names.items():
        ProductLineName.objects.create(product_line=line, language=language, name=name)
    return line


@pytest.mark.parametrize(
    ("language", "shown"),
    [
        ("en", "EN December 1, 2036 | car insurance"),
        ("es-MX", "ES 1 de diciembre de 2036 | seguro de auto"),
        ("pt-BR", "PT 1 de dezembro de 2036 | seguro auto"),
        # German words, and no German name: the default language's.
        ("de", "DE 1. Dezember 2036 | car insurance"),
    ],
)
def test_a_product_line_is_shown_by_its_name_in_the_words_language(
    template, policy, named_line, language, shown
):
    policy.product_line = "auto_priv_01"

    assert read_by(policy, language).body == shown


def test_a_product_line_without_names_is_shown_by_its_code(template, policy):
    assert read_by(policy, "en").body.endswith("| auto")


def test_a_product_line_may_have_its_own_renew_link(policy, seeded_defaults, settings):
    settings.RENEW_URL_TEMPLATE = "https://portal.example/renew/{policy_number}"
    line = ProductLine.objects.create(
        code="life", renew_url="https://life.example/{product_line}/{policy_number}"
    )
    template = MessageTemplate.objects.get(name="Renewal reminder (email)")

    assert "https://portal.example/renew/AUTO-1" in rendering.preview(template, policy).body
    policy.product_line = line.code
    assert "https://life.example/life/AUTO-1" in rendering.preview(template, policy).body


@pytest.mark.parametrize(
    "link", ["https://x.example/{policy}", "javascript:alert(1)", "https://x.example/{0}"]
)
def test_a_renew_link_naming_what_a_policy_does_not_have_is_refused(db, link):
    with pytest.raises(ValidationError):
        ProductLine(code="home", renew_url=link).full_clean()


@pytest.mark.parametrize(
    ("language", "page_language", "words"),
    [
        ("es", "es", "Elija"),
        ("es-MX", "es", "Elija"),
        # No German words on the site: its default, never a page half in German.
        ("de", "en", "Choose"),
        ("pt-BR", "en", "Choose"),
    ],
)
def test_the_customers_page_is_in_the_closest_language_the_site_has(
    client, db, language, page_language, words
):
    customer = make_customer("page@mail.example", language=language)
    url = reverse("customer-preferences", args=[preferences.token_for(customer)])

    page = client.get(url)

    html = page.content.decode()
    assert page.status_code == 200
    assert f'<html lang="{page_language}"' in html
    assert words in html


def test_the_preview_says_which_translation_a_customer_gets_and_why(admin_client, seeded_defaults):
    customer = make_customer("lea@mail.example", name="Lea", language="ja")
    expiry = timezone.localdate() + timedelta(days=14)
    make_policy("HOME-9", customer=customer, agent=make_agent(), expiry_date=expiry)
    rule = ReminderRule.objects.get(lead_days=14, channel="email", product_line="")
    url = reverse("admin:notifications_reminderrule_preview", args=[rule.pk])

    html = admin_client.get(url, {"policy_number": "HOME-9"}).content.decode()
    assert "In en: no translation in ja or a language it belongs to" in html

    html = admin_client.get(url, {"policy_number": "HOME-9", "language": "pt-BR"}).content.decode()
    assert "In pt: no translation in pt-BR: pt, the language it belongs to" in html

    html = admin_client.get(url, {"policy_number": "HOME-9", "language": "es-AR"}).content.decode()
    assert "In es: no translation in es-AR: es, the language it belongs to" in html
    assert "vence dentro de 14 días" in html

    page = admin_client.get(url, {"policy_number": "HOME-9", "language": "klingon"})
    assert "unknown language" in page.content.decode()


@pytest.mark.parametrize(
    ("language", "subject", "sms"),
    [
        (
            "de",
            "Ihre Police AUTO-7 (Kfz-Versicherung) läuft in 14 Tagen ab",
            "Ihre Police AUTO-7 läuft am {date} ab.",
        ),
        (
            "fr",
            "Votre contrat AUTO-7 (assurance auto) expire dans 14 jours",
            "Votre contrat AUTO-7 expire le {date}.",
        ),
        (
            "pt-BR",
            "Sua apólice AUTO-7 (seguro auto) vence em 14 dias",
            "Sua apolice AUTO-7 vence em {date}.",
        ),
    ],
)
def test_german_french_and_brazilian_customers_read_the_seeded_reminders_in_their_language(
    seeded_defaults, language, subject, sms
):
    line = ProductLine.objects.create(code="auto")
    for code, name in {
        "de": "Kfz-Versicherung",
        "fr": "assurance auto",
        "pt": "seguro auto",
    }.items():
        ProductLineName.objects.create(product_line=line, language=code, name=name)
    customer = make_customer("eu@mail.example", language=language, phone="+4915112345678")
    expiry = timezone.localdate(timezone=customer.timezone) + timedelta(days=14)
    policy = make_policy("AUTO-7", customer=customer, agent=make_agent(), expiry_date=expiry)
    email = MessageTemplate.objects.prefetch_related("translations").get(
        name="Renewal reminder (email)"
    )
    text = MessageTemplate.objects.prefetch_related("translations").get(
        name="Renewal reminder (SMS)"
    )

    assert rendering.preview(email, policy).subject == subject
    message = rendering.preview(text, policy)
    assert message.body.startswith(sms.format(date=rendering.date_text(expiry, language)))
    assert sms_segments(message.body) <= 2


def test_two_spellings_of_one_language_are_one_language_in_the_admin(admin_client):
    data = {
        "code": "boat",
        "renew_url": "",
        "names-TOTAL_FORMS": "2",
        "names-INITIAL_FORMS": "0",
        "names-MIN_NUM_FORMS": "0",
        "names-MAX_NUM_FORMS": "1000",
        "names-0-language": "pt-BR",
        "names-0-name": "seguro náutico",
        "names-1-language": "pt_br",
        "names-1-name": "seguro de barco",
    }

    page = admin_client.post(reverse("admin:policies_productline_add"), data)

    assert page.status_code == 200
    assert "duplicate" in page.content.decode()
    assert not ProductLine.objects.exists()


@pytest.mark.parametrize(
    "link",
    ["https://x.example/{agent_email:>9999}", "https://x.example/{policy_number.__class__}"],
)
def test_a_renew_link_may_not_format_its_values(db, link):
    with pytest.raises(ValidationError):
        ProductLine(code="home", renew_url=link).full_clean()
