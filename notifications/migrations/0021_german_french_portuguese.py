"""The default reminders in German, French and Portuguese (Brazilian wording, for pt and pt-BR
alike), beside English and Spanish. An SMS keeps to GSM-7 where it can: an accent outside it
(Portuguese's ã, ç) turns one segment into three."""

from django.db import migrations

EMAIL = {
    "de": {
        "subject": "Ihre Police {{ policy.policy_number }} ({{ policy.product_name }}) läuft "
        "{{ days_left_text }} ab",
        "body": """Guten Tag {{ customer.name }},

Ihre Police {{ policy.policy_number }} ({{ policy.product_name }}) läuft {{ days_left_text }} ab, am {{ expiry_date_text }}.

Damit Ihr Versicherungsschutz lückenlos bleibt, verlängern Sie bitte vor diesem Datum: {{ renew_url }}

Ihr Berater, {{ agent.name }}, hilft Ihnen gern: {{ agent.email }}{% if agent.phone %} oder {{ agent.phone }}{% endif %}.

Renewly, im Auftrag Ihres Versicherers
Wie wir Sie erinnern: {{ preferences_url }}""",
        "html_body": """<p>Guten Tag {{ customer.name }},</p>
<p>Ihre Police <strong>{{ policy.policy_number }}</strong> ({{ policy.product_name }}) läuft {{ days_left_text }} ab, am <strong>{{ expiry_date_text }}</strong>.</p>
<p><a href="{{ renew_url }}">Verlängern Sie Ihre Police</a> vor diesem Datum, damit Ihr Versicherungsschutz lückenlos bleibt.</p>
<p>Ihr Berater, {{ agent.name }}, hilft Ihnen gern: <a href="mailto:{{ agent.email }}">{{ agent.email }}</a>{% if agent.phone %} oder {{ agent.phone }}{% endif %}.</p>
<p style="color:#5b6675;font-size:13px">Renewly, im Auftrag Ihres Versicherers &middot; <a href="{{ preferences_url }}">Wie wir Sie erinnern</a></p>""",
    },
    "fr": {
        "subject": "Votre contrat {{ policy.policy_number }} ({{ policy.product_name }}) expire "
        "{{ days_left_text }}",
        "body": """Bonjour {{ customer.name }},

Votre contrat {{ policy.policy_number }} ({{ policy.product_name }}) expire {{ days_left_text }}, le {{ expiry_date_text }}.

Pour rester couvert sans interruption, renouvelez-le avant cette date : {{ renew_url }}

Votre agent, {{ agent.name }}, peut vous aider : {{ agent.email }}{% if agent.phone %} ou {{ agent.phone }}{% endif %}.

Renewly, pour le compte de votre assureur
Choisissez comment nous vous prévenons : {{ preferences_url }}""",
        "html_body": """<p>Bonjour {{ customer.name }},</p>
<p>Votre contrat <strong>{{ policy.policy_number }}</strong> ({{ policy.product_name }}) expire {{ days_left_text }}, le <strong>{{ expiry_date_text }}</strong>.</p>
<p><a href="{{ renew_url }}">Renouvelez votre contrat</a> avant cette date pour rester couvert sans interruption.</p>
<p>Votre agent, {{ agent.name }}, peut vous aider : <a href="mailto:{{ agent.email }}">{{ agent.email }}</a>{% if agent.phone %} ou {{ agent.phone }}{% endif %}.</p>
<p style="color:#5b6675;font-size:13px">Renewly, pour le compte de votre assureur &middot; <a href="{{ preferences_url }}">Choisissez comment nous vous prévenons</a></p>""",
    },
    "pt": {
        "subject": "Sua apólice {{ policy.policy_number }} ({{ policy.product_name }}) vence "
        "{{ days_left_text }}",
        "body": """Olá, {{ customer.name }}.

Sua apólice {{ policy.policy_number }} ({{ policy.product_name }}) vence {{ days_left_text }}, em {{ expiry_date_text }}.

Para manter sua cobertura sem interrupção, renove antes dessa data: {{ renew_url }}

Seu corretor, {{ agent.name }}, pode ajudar: {{ agent.email }}{% if agent.phone %} ou {{ agent.phone }}{% endif %}.

Renewly, em nome da sua seguradora
Escolha como avisamos você: {{ preferences_url }}""",
        "html_body": """<p>Olá, {{ customer.name }}.</p>
<p>Sua apólice <strong>{{ policy.policy_number }}</strong> ({{ policy.product_name }}) vence {{ days_left_text }}, em <strong>{{ expiry_date_text }}</strong>.</p>
<p><a href="{{ renew_url }}">Renove sua apólice</a> antes dessa data para manter sua cobertura sem interrupção.</p>
<p>Seu corretor, {{ agent.name }}, pode ajudar: <a href="mailto:{{ agent.email }}">{{ agent.email }}</a>{% if agent.phone %} ou {{ agent.phone }}{% endif %}.</p>
<p style="color:#5b6675;font-size:13px">Renewly, em nome da sua seguradora &middot; <a href="{{ preferences_url }}">Escolha como avisamos você</a></p>""",
    },
}
SMS = {
    "de": (
        "Ihre Police {{ policy.policy_number }} läuft am {{ expiry_date_text }} ab. "
        "{% if renew_url %}Verlängern: {{ renew_url }} oder {{ agent.name }} fragen."
        "{% else %}Zur Verlängerung: {{ agent.name }} {{ agent.email }}.{% endif %} "
        "Antworten Sie STOP zum Abmelden."
    ),
    "fr": (
        "Votre contrat {{ policy.policy_number }} expire le {{ expiry_date_text }}. "
        "{% if renew_url %}Renouvelez sur {{ renew_url }} ou contactez {{ agent.name }}."
        "{% else %}Pour renouveler, contactez {{ agent.name }} {{ agent.email }}.{% endif %} "
        "Répondez STOP pour ne plus recevoir."
    ),
    "pt": (
        "Sua apolice {{ policy.policy_number }} vence em {{ expiry_date_text }}. "
        "{% if renew_url %}Renove em {{ renew_url }} ou fale com {{ agent.name }}."
        "{% else %}Para renovar, fale com {{ agent.name }} {{ agent.email }}.{% endif %} "
        "Responda STOP para sair."
    ),
}


def add_translations(apps, schema_editor):
    """Added beside the seeded templates, where an admin has not written their own."""
    MessageTemplate = apps.get_model("notifications", "MessageTemplate")
    TemplateTranslation = apps.get_model("notifications", "TemplateTranslation")
    email = MessageTemplate.objects.filter(name="Renewal reminder (email)", channel="email").first()
    sms = MessageTemplate.objects.filter(name="Renewal reminder (SMS)", channel="sms").first()
    for language, words in EMAIL.items():
        if email:
            TemplateTranslation.objects.get_or_create(
                template=email, language=language, defaults=words
            )
        if sms:
            TemplateTranslation.objects.get_or_create(
                template=sms, language=language, defaults={"body": SMS[language]}
            )


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0020_sms_renew_link"),
    ]

    operations = [
        migrations.RunPython(add_translations, migrations.RunPython.noop),
    ]
