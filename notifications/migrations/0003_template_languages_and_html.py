"""Templates gain an HTML body and translations. The default templates get both: a renew link,
the expiry date written out in the customer's language, and a Spanish version."""

import django.db.models.deletion
from django.db import migrations, models

EMAIL_SUBJECT = (
    "Your {{ policy.product_line }} policy {{ policy.policy_number }} expires in "
    "{{ days_left }} day{{ days_left|pluralize }}"
)
EMAIL_BODY = """Dear {{ customer.name }},

Your {{ policy.product_line }} policy {{ policy.policy_number }} expires on {{ expiry_date_text }}, in {{ days_left }} day{{ days_left|pluralize }}.

To keep your cover without a gap, renew before that date: {{ renew_url }}

Your agent, {{ agent.name }}, can help: {{ agent.email }}{% if agent.phone %} or {{ agent.phone }}{% endif %}.

Renewly, on behalf of your insurer
Choose how we remind you: {{ preferences_url }}"""
EMAIL_HTML = """<p>Dear {{ customer.name }},</p>
<p>Your {{ policy.product_line }} policy <strong>{{ policy.policy_number }}</strong> expires on <strong>{{ expiry_date_text }}</strong>, in {{ days_left }} day{{ days_left|pluralize }}.</p>
<p><a href="{{ renew_url }}">Renew your policy</a> before that date to keep your cover without a gap.</p>
<p>Your agent, {{ agent.name }}, can help: <a href="mailto:{{ agent.email }}">{{ agent.email }}</a>{% if agent.phone %} or {{ agent.phone }}{% endif %}.</p>
<p style="color:#5b6675;font-size:13px">Renewly, on behalf of your insurer &middot; <a href="{{ preferences_url }}">Choose how we remind you</a></p>"""
SMS_BODY = (
    "Your {{ policy.product_line }} policy {{ policy.policy_number }} expires "
    "{{ expiry_date_text }}. To renew, contact {{ agent.name }} {{ agent.email }}. "
    "Reply STOP to opt out."
)

ES_EMAIL_SUBJECT = (
    "Su póliza de {{ policy.product_line }} {{ policy.policy_number }} vence en "
    "{{ days_left }} día{{ days_left|pluralize }}"
)
ES_EMAIL_BODY = """Estimado/a {{ customer.name }}:

Su póliza de {{ policy.product_line }} {{ policy.policy_number }} vence el {{ expiry_date_text }}, dentro de {{ days_left }} día{{ days_left|pluralize }}.

Para mantener su cobertura sin interrupciones, renuévela antes de esa fecha: {{ renew_url }}

Su agente, {{ agent.name }}, puede ayudarle: {{ agent.email }}{% if agent.phone %} o {{ agent.phone }}{% endif %}.

Renewly, en nombre de su aseguradora
Elija cómo le avisamos: {{ preferences_url }}"""
ES_EMAIL_HTML = """<p>Estimado/a {{ customer.name }}:</p>
<p>Su póliza de {{ policy.product_line }} <strong>{{ policy.policy_number }}</strong> vence el <strong>{{ expiry_date_text }}</strong>, dentro de {{ days_left }} día{{ days_left|pluralize }}.</p>
<p><a href="{{ renew_url }}">Renueve su póliza</a> antes de esa fecha para mantener su cobertura sin interrupciones.</p>
<p>Su agente, {{ agent.name }}, puede ayudarle: <a href="mailto:{{ agent.email }}">{{ agent.email }}</a>{% if agent.phone %} o {{ agent.phone }}{% endif %}.</p>
<p style="color:#5b6675;font-size:13px">Renewly, en nombre de su aseguradora &middot; <a href="{{ preferences_url }}">Elija cómo le avisamos</a></p>"""
# No accents: GSM-7 has no "ó" or "á", and one of them turns one SMS segment into three.
ES_SMS_BODY = (
    "Su poliza {{ policy.policy_number }} vence el {{ expiry_date_text }}. "
    "Para renovar, contacte a {{ agent.name }} {{ agent.email }}. Responda STOP para no recibir mas."
)


def update_default_templates(apps, schema_editor):
    MessageTemplate = apps.get_model("notifications", "MessageTemplate")
    TemplateTranslation = apps.get_model("notifications", "TemplateTranslation")
    email = MessageTemplate.objects.filter(name="Renewal reminder (email)", channel="email").first()
    if email:
        email.subject, email.body, email.html_body = EMAIL_SUBJECT, EMAIL_BODY, EMAIL_HTML
        email.save(update_fields=["subject", "body", "html_body"])
        TemplateTranslation.objects.get_or_create(
            template=email,
            language="es",
            defaults={
                "subject": ES_EMAIL_SUBJECT,
                "body": ES_EMAIL_BODY,
                "html_body": ES_EMAIL_HTML,
            },
        )
    sms = MessageTemplate.objects.filter(name="Renewal reminder (SMS)", channel="sms").first()
    if sms:
        sms.body = SMS_BODY
        sms.save(update_fields=["body"])
        TemplateTranslation.objects.get_or_create(
            template=sms, language="es", defaults={"body": ES_SMS_BODY}
        )


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0002_defaults"),
    ]

    operations = [
        migrations.AddField(
            model_name="messagetemplate",
            name="html_body",
            field=models.TextField(
                blank=True,
                help_text="Email only, optional: the HTML body. Values are HTML-escaped for you.",
            ),
        ),
        migrations.AlterField(
            model_name="messagetemplate",
            name="body",
            field=models.TextField(
                help_text="The plain-text body (the whole SMS). Django template syntax. Available: customer, policy, agent, expiry_date (a date), expiry_date_text (written out in the customer's language), days_left, lead_days, renew_url, preferences_url."
            ),
        ),
        migrations.CreateModel(
            name="TemplateTranslation",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "language",
                    models.CharField(choices=[("en", "English"), ("es", "Spanish")], max_length=8),
                ),
                ("subject", models.CharField(blank=True, max_length=200)),
                (
                    "body",
                    models.TextField(
                        help_text="Django template syntax. Available: customer, policy, agent, expiry_date (a date), expiry_date_text (written out in the customer's language), days_left, lead_days, renew_url, preferences_url."
                    ),
                ),
                ("html_body", models.TextField(blank=True)),
                (
                    "template",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="translations",
                        to="notifications.messagetemplate",
                    ),
                ),
            ],
            options={
                "ordering": ["language"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("template", "language"), name="template_translation_unique_language"
                    )
                ],
            },
        ),
        migrations.RunPython(update_default_templates, migrations.RunPython.noop),
    ]
