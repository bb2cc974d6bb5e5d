"""The customer's side of Renewly: no login, the signed link in each reminder is the key."""

from django.shortcuts import redirect, render
from django.utils import translation
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from notifications import preferences
from notifications.forms import ChannelPreferencesForm
from notifications.models import ConsentChange
from policies import languages

# Mail scanners probe links with HEAD (and GET): only a POST changes anything. No page here may
# be cached: each shows, or changes, one customer's choices.
SAFE_METHODS = ("GET", "HEAD")


@csrf_exempt  # RFC 8058: the mail client POSTs with no cookie and no form of ours
@never_cache
@require_http_methods([*SAFE_METHODS, "POST"])
def one_click_unsubscribe(request, token: str):
    """List-Unsubscribe target. POST unsubscribes from email at once (RFC 8058 one-click); GET,
    a person opening the link, leads to the preferences page, where nothing changes unasked."""
    if request.method in SAFE_METHODS:
        return redirect("customer-preferences", token=token)
    try:
        customer = preferences.customer_from(token)
    except preferences.InvalidLink as error:
        return invalid_link(request, error)
    preferences.unsubscribe_from_email(customer)
    context = page_context(customer, token)
    with translation.override(context["LANGUAGE_CODE"]):
        return render(request, "notifications/preferences_unsubscribed.html", context)


@never_cache
@require_http_methods([*SAFE_METHODS, "POST"])
def customer_preferences(request, token: str):
    """The customer's channels, changed through the signed link in every reminder."""
    try:
        customer = preferences.customer_from(token)
    except preferences.InvalidLink as error:
        return invalid_link(request, error)
    context = page_context(customer, token)
    form = ChannelPreferencesForm(
        request.POST if request.method == "POST" else None,
        initial={
            "email": customer.email_consent,
            "sms": customer.sms_consent,
            "whatsapp": customer.whatsapp_consent,
        },
    )
    with translation.override(context["LANGUAGE_CODE"]):
        if request.method == "POST" and form.is_valid():
            preferences.set_channels(
                customer, **form.cleaned_data, source=ConsentChange.Source.PREFERENCES_PAGE
            )
            return render(request, "notifications/preferences_saved.html", context)
        return render(request, "notifications/preferences.html", {**context, "form": form})


def page_context(customer, token: str) -> dict:
    return {
        "customer": customer,
        "token": token,
        "email_to": preferences.masked_email(customer.email),
        "sms_to": preferences.masked_phone(customer.phone),
        # The page is in the customer's language, or the closest the site has words in
        # (pt-BR: pt, else the default), and base.html's <html lang> says which.
        "LANGUAGE_CODE": languages.site_language(customer.language),
    }


def invalid_link(request, error: preferences.InvalidLink):
    """Nothing changes. With no customer to go by, the page speaks the browser's language."""
    language = translation.get_language_from_request(request)
    with translation.override(language):
        return render(
            request,
            "notifications/preferences_invalid.html",
            {"reason": str(error), "LANGUAGE_CODE": language},
            status=400,
        )
