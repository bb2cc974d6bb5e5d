"""Digests: one message for a customer's reminders due together on one channel. Templates gain a
kind (reminder or digest); a Digest row is the message several reminders went in. The default
digest templates, email and SMS, in English and Spanish, are seeded here."""

import django.db.models.deletion
from django.db import migrations, models

import notifications.templating

DIGEST_TEMPLATES = {
    "email": "Policies due together (email digest)",
    "sms": "Policies due together (SMS digest)",
}
EMAIL_SUBJECT = "{{ policies|length }} of your policies expire soon, the first {{ days_left_text }}"
EMAIL_BODY = """Dear {{ customer.name }},

These policies of yours expire soon:
{% for policy in policies %}
- {{ policy.product_name|capfirst }} policy {{ policy.policy_number }}: expires {{ policy.days_left_text }}, on {{ policy.expiry_date_text }}. Renew: {{ policy.renew_url }}{% endfor %}

To keep your cover without a gap, renew each before its date.

Your agent, {{ agent.name }}, can help: {{ agent.email }}{% if agent.phone %} or {{ agent.phone }}{% endif %}.

Renewly, on behalf of your insurer
Choose how we remind you: {{ preferences_url }}"""
EMAIL_HTML = """<p>Dear {{ customer.name }},</p>
<p>These policies of yours expire soon:</p>
<ul>{% for policy in policies %}
<li>{{ policy.product_name|capfirst }} policy <strong>{{ policy.policy_number }}</strong>: expires {{ policy.days_left_text }}, on <strong>{{ policy.expiry_date_text }}</strong>. <a href="{{ policy.renew_url }}">Renew it</a></li>{% endfor %}
</ul>
<p>Renew each before its date to keep your cover without a gap.</p>
<p>Your agent, {{ agent.name }}, can help: <a href="mailto:{{ agent.email }}">{{ agent.email }}</a>{% if agent.phone %} or {{ agent.phone }}{% endif %}.</p>
<p style="color:#5b6675;font-size:13px">Renewly, on behalf of your insurer &middot; <a href="{{ preferences_url }}">Choose how we remind you</a></p>"""
# One policy a line: a line's end also ends a link, for Twilio's Link Shortening.
SMS_BODY = (
    "Your policies expire soon:\n"
    "{% for policy in policies %}{{ policy.policy_number }} {{ policy.days_left_text }}"
    "{% if policy.renew_url %} {{ policy.renew_url }}{% endif %}\n{% endfor %}"
    "To renew, contact {{ agent.name }} {{ agent.email }}. Reply STOP to opt out."
)
ES_EMAIL_SUBJECT = (
    "{{ policies|length }} de sus pólizas vencen pronto, la primera {{ days_left_text }}"
)
ES_EMAIL_BODY = """Estimado/a {{ customer.name }}:

Estas pólizas suyas vencen pronto:
{% for policy in policies %}
- Póliza de {{ policy.product_name }} {{ policy.policy_number }}: vence {{ policy.days_left_text }}, el {{ policy.expiry_date_text }}. Renovar: {{ policy.renew_url }}{% endfor %}

Para mantener su cobertura sin interrupciones, renueve cada una antes de su fecha.

Su agente, {{ agent.name }}, puede ayudarle: {{ agent.email }}{% if agent.phone %} o {{ agent.phone }}{% endif %}.

Renewly, en nombre de su aseguradora
Elija cómo le avisamos: {{ preferences_url }}"""
ES_EMAIL_HTML = """<p>Estimado/a {{ customer.name }}:</p>
<p>Estas pólizas suyas vencen pronto:</p>
<ul>{% for policy in policies %}
<li>Póliza de {{ policy.product_name }} <strong>{{ policy.policy_number }}</strong>: vence {{ policy.days_left_text }}, el <strong>{{ policy.expiry_date_text }}</strong>. <a href="{{ policy.renew_url }}">Renovarla</a></li>{% endfor %}
</ul>
<p>Renueve cada una antes de su fecha para mantener su cobertura sin interrupciones.</p>
<p>Su agente, {{ agent.name }}, puede ayudarle: <a href="mailto:{{ agent.email }}">{{ agent.email }}</a>{% if agent.phone %} o {{ agent.phone }}{% endif %}.</p>
<p style="color:#5b6675;font-size:13px">Renewly, en nombre de su aseguradora &middot; <a href="{{ preferences_url }}">Elija cómo le avisamos</a></p>"""
# No accents (GSM-7), so the date written out rather than "dentro de 3 días".
ES_SMS_BODY = (
    "Sus polizas vencen pronto:\n"
    "{% for policy in policies %}{{ policy.policy_number }} el {{ policy.expiry_date_text }}"
    "{% if policy.renew_url %} {{ policy.renew_url }}{% endif %}\n{% endfor %}"
    "Para renovar, contacte a {{ agent.name }} {{ agent.email }}. "
    "Responda STOP para no recibir mas."
)
TEXTS = {
    "email": {
        "en": {"subject": EMAIL_SUBJECT, "body": EMAIL_BODY, "html_body": EMAIL_HTML},
        "es": {"subject": ES_EMAIL_SUBJECT, "body": ES_EMAIL_BODY, "html_body": ES_EMAIL_HTML},
    },
    "sms": {"en": {"body": SMS_BODY}, "es": {"body": ES_SMS_BODY}},
}


def create_digest_templates(apps, schema_editor):
    """Each channel's digest template, unless it has one (an admin's stays theirs)."""
    MessageTemplate = apps.get_model("notifications", "MessageTemplate")
    TemplateTranslation = apps.get_model("notifications", "TemplateTranslation")
    for channel, name in DIGEST_TEMPLATES.items():
        if MessageTemplate.objects.filter(channel=channel, kind="digest").exists():
            continue
        template, created = MessageTemplate.objects.get_or_create(
            name=name, defaults={"channel": channel, "kind": "digest", **TEXTS[channel]["en"]}
        )
        if created:
            TemplateTranslation.objects.create(
                template=template, language="es", **TEXTS[channel]["es"]
            )


def remove_digest_templates(apps, schema_editor):
    apps.get_model("notifications", "MessageTemplate").objects.filter(
        name__in=DIGEST_TEMPLATES.values(), kind="digest"
    ).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0023_whatsapp_content_in_any_language"),
        ("policies", "0006_languages_and_product_lines"),
    ]

    operations = [
        migrations.CreateModel(
            name="Digest",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "channel",
                    models.CharField(choices=[("email", "Email"), ("sms", "SMS")], max_length=8),
                ),
                ("to", models.CharField(max_length=254)),
                ("subject", models.CharField(blank=True, max_length=255)),
                (
                    "body",
                    models.TextField(
                        help_text="As sent: what Twilio's copy is matched by in recovery."
                    ),
                ),
                ("provider_message_id", models.CharField(blank=True, max_length=255)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
            ],
            options={
                "ordering": ["-created_at", "-id"],
            },
        ),
        migrations.AddField(
            model_name="messagetemplate",
            name="kind",
            field=models.CharField(
                choices=[
                    ("reminder", "Reminder (one policy)"),
                    ("digest", "Digest (several policies due together)"),
                ],
                db_default="reminder",
                default="reminder",
                help_text="A digest lists its policies with {% for policy in policies %}; rules use reminder templates, and a channel has at most one digest template.",
                max_length=8,
            ),
        ),
        migrations.AlterField(
            model_name="messagetemplate",
            name="body",
            field=models.TextField(
                help_text='The plain-text body (the whole SMS). Django template syntax with {% if %}, {% firstof %} and the formatting filters, e.g. {{ expiry_date|date:"j F Y" }}. Available: customer.name, customer.email, customer.phone, customer.language, policy.policy_number, policy.product_line, policy.product_name, policy.start_date, policy.expiry_date, agent.name, agent.email, agent.phone, expiry_date, expiry_date_text, days_left, days_left_text, lead_days, renew_url, preferences_url, policies. expiry_date is a date; expiry_date_text is it written out, and days_left_text is "today", "tomorrow" or "in 3 days", both in the language of the words they go into; policy.product_name is the product line\'s name in it (its code when it has none).',
                validators=[notifications.templating.validate],
            ),
        ),
        migrations.AlterField(
            model_name="templatetranslation",
            name="body",
            field=models.TextField(
                help_text='Django template syntax with {% if %}, {% firstof %} and the formatting filters, e.g. {{ expiry_date|date:"j F Y" }}. Available: customer.name, customer.email, customer.phone, customer.language, policy.policy_number, policy.product_line, policy.product_name, policy.start_date, policy.expiry_date, agent.name, agent.email, agent.phone, expiry_date, expiry_date_text, days_left, days_left_text, lead_days, renew_url, preferences_url, policies. expiry_date is a date; expiry_date_text is it written out, and days_left_text is "today", "tomorrow" or "in 3 days", both in the language of the words they go into; policy.product_name is the product line\'s name in it (its code when it has none).',
                validators=[notifications.templating.validate],
            ),
        ),
        migrations.AddConstraint(
            model_name="messagetemplate",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind__in", ["reminder", "digest"])), name="template_kind_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="messagetemplate",
            constraint=models.UniqueConstraint(
                condition=models.Q(("kind", "digest")),
                fields=("channel",),
                name="template_one_digest_per_channel",
            ),
        ),
        migrations.AddField(
            model_name="digest",
            name="customer",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.CASCADE,
                related_name="digests",
                to="policies.customer",
            ),
        ),
        migrations.AddField(
            model_name="notification",
            name="digest",
            field=models.ForeignKey(
                blank=True,
                db_index=False,
                help_text="The one message it went in with other reminders due together; empty when it went (or goes) on its own.",
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="notifications",
                to="notifications.digest",
            ),
        ),
        migrations.AddIndex(
            model_name="notification",
            index=models.Index(
                condition=models.Q(("digest__isnull", False)),
                fields=["digest"],
                name="notification_digest",
            ),
        ),
        migrations.AddConstraint(
            model_name="digest",
            constraint=models.CheckConstraint(
                condition=models.Q(("channel__in", ["email", "sms"])), name="digest_channel_valid"
            ),
        ),
        migrations.RunPython(create_digest_templates, remove_digest_templates),
    ]
