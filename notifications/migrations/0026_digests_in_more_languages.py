"""The digest templates in German, French and Portuguese too, as the reminders (0021): a
customer with several policies due together reads the one message in their language."""

from django.db import migrations

EMAIL = {
    "de": {
        "subject": "{{ policies|length }} Ihrer Policen laufen bald ab, die erste "
        "{{ days_left_text }}",
        "body": """Guten Tag {{ customer.name }},

diese Policen laufen bald ab:
{% for policy in policies %}
- Police {{ policy.policy_number }} ({{ policy.product_name }}): läuft {{ policy.days_left_text }} ab, am {{ policy.expiry_date_text }}. Verlängern: {{ policy.renew_url }}{% endfor %}

Damit Ihr Versicherungsschutz lückenlos bleibt, verlängern Sie jede vor ihrem Datum.

Ihr Berater, {{ agent.name }}, hilft Ihnen gern: {{ agent.email }}{% if agent.phone %} oder {{ agent.phone }}{% endif %}.

Renewly, im Auftrag Ihres Versicherers
Wie wir Sie erinnern: {{ preferences_url }}""",
        "html_body": """<p>Guten Tag {{ customer.name }},</p>
<p>diese Policen laufen bald ab:</p>
<ul>{% for policy in policies %}
<li>Police <strong>{{ policy.policy_number }}</strong> ({{ policy.product_name }}): läuft {{ policy.days_left_text }} ab, am <strong>{{ policy.expiry_date_text }}</strong>. <a href="{{ policy.renew_url }}">Verlängern</a></li>{% endfor %}
</ul>
<p>Verlängern Sie jede vor ihrem Datum, damit Ihr Versicherungsschutz lückenlos bleibt.</p>
<p>Ihr Berater, {{ agent.name }}, hilft Ihnen gern: <a href="mailto:{{ agent.email }}">{{ agent.email }}</a>{% if agent.phone %} oder {{ agent.phone }}{% endif %}.</p>
<p style="color:#5b6675;font-size:13px">Renewly, im Auftrag Ihres Versicherers &middot; <a href="{{ preferences_url }}">Wie wir Sie erinnern</a></p>""",
    },
    "fr": {
        "subject": "{{ policies|length }} de vos contrats expirent bientôt, le premier "
        "{{ days_left_text }}",
        "body": """Bonjour {{ customer.name }},

Ces contrats expirent bientôt :
{% for policy in policies %}
- Contrat {{ policy.policy_number }} ({{ policy.product_name }}) : expire {{ policy.days_left_text }}, le {{ policy.expiry_date_text }}. Renouveler : {{ policy.renew_url }}{% endfor %}

Pour rester couvert sans interruption, renouvelez chacun avant sa date.

Votre agent, {{ agent.name }}, peut vous aider : {{ agent.email }}{% if agent.phone %} ou {{ agent.phone }}{% endif %}.

Renewly, pour le compte de votre assureur
Choisissez comment nous vous prévenons : {{ preferences_url }}""",
        "html_body": """<p>Bonjour {{ customer.name }},</p>
<p>Ces contrats expirent bientôt :</p>
<ul>{% for policy in policies %}
<li>Contrat <strong>{{ policy.policy_number }}</strong> ({{ policy.product_name }}) : expire {{ policy.days_left_text }}, le <strong>{{ policy.expiry_date_text }}</strong>. <a href="{{ policy.renew_url }}">Le renouveler</a></li>{% endfor %}
</ul>
<p>Renouvelez chacun avant sa date pour rester couvert sans interruption.</p>
<p>Votre agent, {{ agent.name }}, peut vous aider : <a href="mailto:{{ agent.email }}">{{ agent.email }}</a>{% if agent.phone %} ou {{ agent.phone }}{% endif %}.</p>
<p style="color:#5b6675;font-size:13px">Renewly, pour le compte de votre assureur &middot; <a href="{{ preferences_url }}">Choisissez comment nous vous prévenons</a></p>""",
    },
    "pt": {
        "subject": "{{ policies|length }} das suas apólices vencem em breve, a primeira "
        "{{ days_left_text }}",
        "body": """Olá, {{ customer.name }}.

Estas apólices vencem em breve:
{% for policy in policies %}
- Apólice {{ policy.policy_number }} ({{ policy.product_name }}): vence {{ policy.days_left_text }}, em {{ policy.expiry_date_text }}. Renovar: {{ policy.renew_url }}{% endfor %}

Para manter sua cobertura sem interrupção, renove cada uma antes da data.

Seu corretor, {{ agent.name }}, pode ajudar: {{ agent.email }}{% if agent.phone %} ou {{ agent.phone }}{% endif %}.

Renewly, em nome da sua seguradora
Escolha como avisamos você: {{ preferences_url }}""",
        "html_body": """<p>Olá, {{ customer.name }}.</p>
<p>Estas apólices vencem em breve:</p>
<ul>{% for policy in policies %}
<li>Apólice <strong>{{ policy.policy_number }}</strong> ({{ policy.product_name }}): vence {{ policy.days_left_text }}, em <strong>{{ policy.expiry_date_text }}</strong>. <a href="{{ policy.renew_url }}">Renovar</a></li>{% endfor %}
</ul>
<p>Renove cada uma antes da data para manter sua cobertura sem interrupção.</p>
<p>Seu corretor, {{ agent.name }}, pode ajudar: <a href="mailto:{{ agent.email }}">{{ agent.email }}</a>{% if agent.phone %} ou {{ agent.phone }}{% endif %}.</p>
<p style="color:#5b6675;font-size:13px">Renewly, em nome da sua seguradora &middot; <a href="{{ preferences_url }}">Escolha como avisamos você</a></p>""",
    },
}
# One policy a line (a line's end also ends a link, for Twilio's Link Shortening); GSM-7 only.
SMS = {
    "de": (
        "Ihre Policen laufen bald ab:\n"
        "{% for policy in policies %}{{ policy.policy_number }} am {{ policy.expiry_date_text }}"
        "{% if policy.renew_url %} {{ policy.renew_url }}{% endif %}\n{% endfor %}"
        "Zur Verlängerung: {{ agent.name }} {{ agent.email }}. Antworten Sie STOP zum Abmelden."
    ),
    "fr": (
        "Vos contrats expirent bientot:\n"
        "{% for policy in policies %}{{ policy.policy_number }} le {{ policy.expiry_date_text }}"
        "{% if policy.renew_url %} {{ policy.renew_url }}{% endif %}\n{% endfor %}"
        "Pour renouveler, contactez {{ agent.name }} {{ agent.email }}. "
        "Répondez STOP pour ne plus recevoir."
    ),
    "pt": (
        "Suas apolices vencem em breve:\n"
        "{% for policy in policies %}{{ policy.policy_number }} em {{ policy.expiry_date_text }}"
        "{% if policy.renew_url %} {{ policy.renew_url }}{% endif %}\n{% endfor %}"
        "Para renovar, fale com {{ agent.name }} {{ agent.email }}. Responda STOP para sair."
    ),
}
DIGESTS = {
    "email": "Policies due together (email digest)",
    "sms": "Policies due together (SMS digest)",
}


def add_translations(apps, schema_editor):
    """Beside the seeded digest templates, where an admin has not written their own."""
    MessageTemplate = apps.get_model("notifications", "MessageTemplate")
    TemplateTranslation = apps.get_model("notifications", "TemplateTranslation")
    for channel, name in DIGESTS.items():
        template = MessageTemplate.objects.filter(name=name, channel=channel, kind="digest").first()
        if template is None:
            continue
        for language in ("de", "fr", "pt"):
            words = EMAIL[language] if channel == "email" else {"body": SMS[language]}
            TemplateTranslation.objects.get_or_create(
                template=template, language=language, defaults=words
            )


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0025_digests_on_every_channel"),
    ]

    operations = [
        migrations.RunPython(add_translations, migrations.RunPython.noop),
    ]
