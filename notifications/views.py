from django.http import HttpResponse
from django.utils.html import escape
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from notifications import preferences

PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1"><title>Renewly</title></head>
<body style="font-family: sans-serif; max-width: 32rem; margin: 3rem auto; padding: 0 1rem">
{body}</body></html>"""


@csrf_exempt  # RFC 8058: the mail client POSTs with no cookie and no form of ours
@require_http_methods(["GET", "POST"])
def one_click_unsubscribe(request, token: str):
    """List-Unsubscribe target. POST unsubscribes at once (RFC 8058 one-click); GET only asks,
    so that a link scanner fetching the URL changes nothing."""
    try:
        customer = preferences.customer_from(token)
    except preferences.InvalidLink as error:
        return HttpResponse(
            PAGE.format(body=f"<h1>Link not valid</h1><p>{escape(error)}</p>"), status=400
        )
    if request.method == "POST":
        preferences.unsubscribe_from_email(customer)
        return HttpResponse(
            PAGE.format(body="<h1>Unsubscribed</h1><p>You will get no more reminders by email.</p>")
        )
    return HttpResponse(
        PAGE.format(
            body='<h1>Stop reminders by email?</h1><form method="post">'
            '<button type="submit">Unsubscribe from email reminders</button></form>'
        )
    )


@require_http_methods(["GET", "POST"])
def customer_preferences(request, token: str):
    """The customer's channels, changed through the signed link in every reminder."""
    try:
        customer = preferences.customer_from(token)
    except preferences.InvalidLink as error:
        return HttpResponse(
            PAGE.format(body=f"<h1>Link not valid</h1><p>{escape(error)}</p>"), status=400
        )
    if request.method == "POST":
        preferences.set_channels(
            customer,
            email=request.POST.get("email") == "on",
            sms=request.POST.get("sms") == "on",
        )
        return HttpResponse(PAGE.format(body="<h1>Saved</h1><p>Your choices are saved.</p>"))
    checked = {True: " checked", False: ""}
    return HttpResponse(
        PAGE.format(
            body='<h1>Your reminders</h1><form method="post">'
            f'<label><input type="checkbox" name="email"{checked[customer.email_consent]}> '
            "Email</label><br>"
            f'<label><input type="checkbox" name="sms"{checked[customer.sms_consent]}> '
            'SMS</label><br><button type="submit">Save</button></form>'
        )
    )
