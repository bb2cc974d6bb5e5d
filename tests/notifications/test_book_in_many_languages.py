"""Issue 14's book, end to end: German, French and Brazilian-Portuguese customers, one of them
with three policies due together, import completely from one CSV; the daily scan then sends each
customer one message per channel, in their own language and wording, through the real anymail
and twilio clients to the fake provider."""

import io
from datetime import timedelta

import pytest
from django.utils import timezone

from notifications import rendering
from notifications.models import MessageTemplate, Notification
from notifications.tasks import daily_scan
from policies.importers import import_policies
from policies.models import Customer, ProductLine, ProductLineName
from tests.factories import make_agent, policy_file, policy_row

pytestmark = pytest.mark.django_db
LEAD_DAYS = 7
CUSTOMERS = {
    # email: (name, language, phone, time zone)
    "jonas@mail.example": ("Jonas Becker", "de", "+4915112345678", "Europe/Berlin"),
    "camille@mail.example": ("Camille Martin", "fr", "+33612345678", "Europe/Paris"),
    "beatriz@mail.example": ("Beatriz Souza", "pt-BR", "+5511912345678", "America/Sao_Paulo"),
}
POLICIES = [  # number, product line, customer
    ("DE-1", "auto", "jonas@mail.example"),
    ("FR-1", "home", "camille@mail.example"),
    ("BR-1", "auto", "beatriz@mail.example"),
    ("BR-2", "home", "beatriz@mail.example"),
    ("BR-3", "life", "beatriz@mail.example"),
]
NAMES = {
    "auto": {"de": "Kfz-Versicherung", "fr": "assurance auto", "pt": "seguro auto"},
    "home": {"de": "Hausratversicherung", "fr": "assurance habitation", "pt": "seguro residencial"},
    "life": {"de": "Lebensversicherung", "fr": "assurance vie", "pt": "seguro de vida"},
}


@pytest.fixture
def book(seeded_defaults, rules, settings):
    """The CSV imported, its product lines named; reminders 7 days ahead by email and SMS, both
    digest channels (an SMS digest of three may take up to four segments)."""
    settings.DIGEST_CHANNELS = ["email", "sms"]
    settings.SMS_DIGEST_MAX_SEGMENTS = 4
    for channel, name in [("email", "Renewal reminder (email)"), ("sms", "Renewal reminder (SMS)")]:
        rules(LEAD_DAYS, channel, template=MessageTemplate.objects.get(name=name))
    agent = make_agent("agent", "agent@agency.example")
    expiry = timezone.localdate() + timedelta(days=LEAD_DAYS)
    rows = []
    for number, line, email in POLICIES:
        name, language, phone, zone = CUSTOMERS[email]
        rows.append(
            policy_row(
                number,
                agent.email,
                product_line=line,
                customer_name=name,
                customer_email=email,
                customer_phone=phone,
                customer_timezone=zone,
                customer_language=language,
                start_date=(expiry - timedelta(days=365)).isoformat(),
                expiry_date=expiry.isoformat(),
            )
        )
    summary = import_policies(io.BytesIO(policy_file(rows)))
    for line in ProductLine.objects.all():
        for language, name in NAMES[line.code].items():
            ProductLineName.objects.create(product_line=line, language=language, name=name)
    return summary, expiry


def test_a_book_in_many_languages_imports_completely(book):
    summary, _ = book

    assert (summary.created, summary.rejected) == (5, [])
    assert dict(Customer.objects.values_list("email", "language")) == {
        email: language for email, (_, language, _, _) in CUSTOMERS.items()
    }


def test_each_customer_gets_one_message_per_channel_in_their_own_words(
    book, providers, eager_tasks
):
    _, expiry = book

    daily_scan.apply(args=[timezone.localdate().isoformat()])

    emails = {
        message.recipient: message for message in providers.messages if message.channel == "email"
    }
    texts = {
        message.recipient: message for message in providers.messages if message.channel == "sms"
    }
    assert len(emails) == len(texts) == 3  # one message per customer and channel, no more
    assert len(providers.messages) == 6

    def day(language):
        return rendering.date_text(expiry, language)

    jonas = emails["jonas@mail.example"]
    assert jonas.subject == "Ihre Police DE-1 (Kfz-Versicherung) läuft in 7 Tagen ab"
    assert f"läuft in 7 Tagen ab, am {day('de')}." in jonas.body
    assert texts["+4915112345678"].body.startswith(f"Ihre Police DE-1 läuft am {day('de')} ab.")

    camille = emails["camille@mail.example"]
    assert camille.subject == "Votre contrat FR-1 (assurance habitation) expire dans 7 jours"
    assert f"expire dans 7 jours, le {day('fr')}." in camille.body
    assert texts["+33612345678"].body.startswith(f"Votre contrat FR-1 expire le {day('fr')}.")

    # Three policies due together: one email and one SMS listing each, in Portuguese.
    beatriz = emails["beatriz@mail.example"]
    assert beatriz.subject == "3 das suas apólices vencem em breve, a primeira em 7 dias"
    for number, line in [("BR-1", "seguro auto"), ("BR-2", "seguro residencial")]:
        assert f"Apólice {number} ({line}): vence em 7 dias, em {day('pt')}." in beatriz.body
    assert "Apólice BR-3 (seguro de vida)" in beatriz.body
    sms = texts["+5511912345678"].body
    assert sms.startswith("Suas apolices vencem em breve:\n")
    assert all(f"{number} em {day('pt')}" in sms for number in ("BR-1", "BR-2", "BR-3"))

    sent = Notification.objects.filter(status=Notification.Status.SENT)
    assert sent.count() == 10  # every reminder on its own row, each recorded sent
    brazil = sent.filter(customer__email="beatriz@mail.example", channel="email")
    assert {n.provider_message_id for n in brazil} == {beatriz.id}
