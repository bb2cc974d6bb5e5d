"""The default SMS carries the renew link where Twilio shortens it (TWILIO_LINK_SHORTENING_DOMAIN;
without it renew_url is empty in an SMS, and the text reads as before). A default an admin has
edited is left as they wrote it."""

import importlib

from django.db import migrations

PREVIOUS = importlib.import_module("notifications.migrations.0003_template_languages_and_html")

# The link goes before a space, never before punctuation Twilio could take for part of it.
SMS_BODY = (
    "Your {{ policy.product_line }} policy {{ policy.policy_number }} expires "
    "{{ expiry_date_text }}. {% if renew_url %}Renew at {{ renew_url }} or contact "
    "{{ agent.name }}.{% else %}To renew, contact {{ agent.name }} {{ agent.email }}.{% endif %} "
    "Reply STOP to opt out."
)
ES_SMS_BODY = (
    "Su poliza {{ policy.policy_number }} vence el {{ expiry_date_text }}. "
    "{% if renew_url %}Renueve en {{ renew_url }} o contacte a {{ agent.name }}."
    "{% else %}Para renovar, contacte a {{ agent.name }} {{ agent.email }}.{% endif %} "
    "Responda STOP para no recibir mas."
)


def replace_default_sms(apps, *, old: tuple[str, str], new: tuple[str, str]) -> None:
    """The default SMS template's text and Spanish translation, from `old` to `new`, each only
    while it is still exactly `old`."""
    MessageTemplate = apps.get_model("notifications", "MessageTemplate")
    TemplateTranslation = apps.get_model("notifications", "TemplateTranslation")
    (body, es_body), (new_body, new_es_body) = old, new
    sms = MessageTemplate.objects.filter(name="Renewal reminder (SMS)", channel="sms").first()
    if sms is None:
        return
    MessageTemplate.objects.filter(pk=sms.pk, body=body).update(body=new_body)
    TemplateTranslation.objects.filter(template=sms, language="es", body=es_body).update(
        body=new_es_body
    )


def add_renew_link(apps, schema_editor):
    replace_default_sms(
        apps, old=(PREVIOUS.SMS_BODY, PREVIOUS.ES_SMS_BODY), new=(SMS_BODY, ES_SMS_BODY)
    )


def remove_renew_link(apps, schema_editor):
    replace_default_sms(
        apps, old=(SMS_BODY, ES_SMS_BODY), new=(PREVIOUS.SMS_BODY, PREVIOUS.ES_SMS_BODY)
    )


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0017_housekeeping_api_and_events"),
    ]

    operations = [migrations.RunPython(add_renew_link, remove_renew_link)]
