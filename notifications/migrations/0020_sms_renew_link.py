"""The default SMS carries the renew link where Twilio shortens it (TWILIO_LINK_SHORTENING_DOMAIN;
without it renew_url is empty in an SMS, and the text reads as before). Only the sentence as
shipped is replaced, wherever it still stands: an admin's own words are left as they wrote them,
and another rewording of the rest of the text does not stop it."""

from django.db import migrations

# The link goes before a space, never before punctuation Twilio could take for part of it.
NEW_SENTENCES = {
    "To renew, contact {{ agent.name }} {{ agent.email }}.": (
        "{% if renew_url %}Renew at {{ renew_url }} or contact {{ agent.name }}."
        "{% else %}To renew, contact {{ agent.name }} {{ agent.email }}.{% endif %}"
    ),
    "Para renovar, contacte a {{ agent.name }} {{ agent.email }}.": (
        "{% if renew_url %}Renueve en {{ renew_url }} o contacte a {{ agent.name }}."
        "{% else %}Para renovar, contacte a {{ agent.name }} {{ agent.email }}.{% endif %}"
    ),
}


def reword_default_sms(apps, reword) -> None:
    """The default SMS template's text and translations, each as `reword` returns it."""
    MessageTemplate = apps.get_model("notifications", "MessageTemplate")
    TemplateTranslation = apps.get_model("notifications", "TemplateTranslation")
    sms = MessageTemplate.objects.filter(name="Renewal reminder (SMS)", channel="sms").first()
    if sms is None:
        return
    for text in [sms, *TemplateTranslation.objects.filter(template=sms)]:
        body = reword(text.body)
        if body != text.body:
            text.body = body
            text.save(update_fields=["body"])


def with_renew_link(body: str) -> str:
    for sentence, conditional in NEW_SENTENCES.items():
        if conditional not in body:  # the sentence stands on its own
            body = body.replace(sentence, conditional)
    return body


def without_renew_link(body: str) -> str:
    for sentence, conditional in NEW_SENTENCES.items():
        body = body.replace(conditional, sentence)
    return body


def add_renew_link(apps, schema_editor):
    reword_default_sms(apps, with_renew_link)


def remove_renew_link(apps, schema_editor):
    reword_default_sms(apps, without_renew_link)


class Migration(migrations.Migration):
    dependencies = [
        ("notifications", "0019_product_line_roles"),
    ]

    operations = [migrations.RunPython(add_renew_link, remove_renew_link)]
