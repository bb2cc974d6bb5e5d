from django import forms
from django.utils.translation import gettext_lazy as _


class ChannelPreferencesForm(forms.Form):
    """The channels a customer accepts reminders on; an unticked box turns a channel off."""

    email = forms.BooleanField(required=False, label=_("Reminders by email"))
    sms = forms.BooleanField(required=False, label=_("Reminders by SMS (text message)"))
    # Ticking it is the customer's own opt-in, recorded in their consent history.
    whatsapp = forms.BooleanField(required=False, label=_("Reminders on WhatsApp"))
