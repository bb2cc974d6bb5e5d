"""The fake provider speaks the real wire formats: the real twilio SDK and the real anymail
Postmark backend talk to it over HTTP, and accept what it answers."""

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
import requests
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from anymail.message import AnymailMessage
from twilio.base.exceptions import TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from tests.fake_provider import ALL, FakeProvider

TO = "+14155550100"
OTHER = "+14155550101"
FROM = "+15005550006"
SERVICE = "MG" + "0" * 32


@pytest.fixture
def fake():
    with FakeProvider() as provider:
        yield provider


@pytest.fixture
def twilio(fake):
    return fake.twilio_client(timeout=2)


@pytest.fixture
def postmark(fake, settings):
    """Django's mail goes through anymail's Postmark backend, to the fake."""
    overrides = fake.django_settings()
    settings.EMAIL_BACKEND = overrides["EMAIL_BACKEND"]
    settings.ANYMAIL = overrides["ANYMAIL"]
    return settings


class _Received(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, self.headers, dict(parse_qsl(body.decode()))))
        self.send_response(204)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format, *args):
        pass


@pytest.fixture
def receiver():
    """Where status callbacks land: `.url`, and `.received` as (path, headers, params)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Received)
    server.received = []
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def send_sms(twilio, to=TO, **kwargs):
    return twilio.messages.create(to=to, body=kwargs.pop("body", "P-1 expires soon"), **kwargs)


def send_email(to=("pat@mail.example",), **kwargs):
    message = AnymailMessage(
        subject="Your policy P-1 expires on 2030-01-31",
        body="Dear Pat, P-1 expires soon.",
        from_email="Renewly <reminders@renewly.example>",
        to=list(to),
        **kwargs,
    )
    message.send()
    return message


# --- Twilio -----------------------------------------------------------------------------------


def test_twilio_create_returns_the_fakes_message(fake, twilio):
    message = send_sms(twilio, from_=FROM)

    [sent] = fake.messages
    assert message.sid == sent.id
    assert message.sid.startswith("SM")
    assert len(message.sid) == 34
    assert (message.status, message.to, message.from_) == ("queued", TO, FROM)
    assert (message.body, message.num_segments, message.error_code) == (
        "P-1 expires soon",
        "1",
        None,
    )
    assert message.account_sid == fake.account_sid
    assert message.date_created is not None
    assert sent.channel == "sms"
    assert sent.recipient == TO
    assert sent.data["Body"] == "P-1 expires soon"
    assert twilio.messages(message.sid).fetch().status == "delivered"


def test_a_messaging_service_message_starts_accepted_without_a_sender(twilio):
    message = send_sms(twilio, messaging_service_sid=SERVICE)

    assert (message.status, message.from_, message.messaging_service_sid) == (
        "accepted",
        None,
        SERVICE,
    )
    assert message.num_segments == "0"


@pytest.mark.parametrize(
    ("body", "segments"),
    [
        ("a" * 160, "1"),
        ("a" * 161, "2"),
        ("€" * 80, "1"),  # GSM-7's extension characters take two places
        ("€" * 81, "2"),
        ("ü" * 160, "1"),
        ("ł" * 70, "1"),  # UCS-2
        ("ł" * 71, "2"),
    ],
)
def test_twilio_counts_segments(twilio, body, segments):
    assert send_sms(twilio, from_=FROM, body=body).num_segments == segments


@pytest.mark.parametrize(
    ("outcome", "code"), [("invalid", 21211), ("not_mobile", 21614), ("unsubscribed", 21610)]
)
def test_twilio_rejections_raise_with_the_code(fake, twilio, outcome, code):
    fake.script(TO, [outcome])

    with pytest.raises(TwilioRestException) as raised:
        send_sms(twilio, from_=FROM)

    assert (raised.value.status, raised.value.code) == (400, code)
    assert fake.accepted == Counter()
    assert fake.attempts == Counter({TO: 1})


def test_twilio_server_errors_and_rate_limits_then_success(fake, twilio):
    fake.script(TO, ["500", "429", "ok"])

    statuses = []
    for _ in range(2):
        with pytest.raises(TwilioRestException) as raised:
            send_sms(twilio, from_=FROM)
        statuses.append((raised.value.status, raised.value.code))
    message = send_sms(twilio, from_=FROM)

    assert statuses == [(500, 20500), (429, 20429)]
    assert message.sid == fake.messages[0].id
    assert fake.attempts == Counter({TO: 3})
    assert fake.accepted == Counter({TO: 1})


def test_twilio_checks_credentials_and_required_fields(fake, twilio):
    intruder = Client(fake.account_sid, "wrong-token")
    intruder.api.base_url = fake.base_url
    with pytest.raises(TwilioRestException) as raised:
        send_sms(intruder, from_=FROM)
    assert (raised.value.status, raised.value.code) == (401, 20003)

    with pytest.raises(TwilioRestException) as raised:
        twilio.messages.create(to=TO, body="no sender")
    assert (raised.value.status, raised.value.code) == (400, 21603)
    assert fake.attempts == Counter()


def test_status_callbacks_arrive_signed(fake, twilio, receiver):
    url = receiver.url + "/webhooks/twilio/status/?notification=7"
    message = send_sms(twilio, from_=FROM, status_callback=url)

    fake.wait_for_callbacks(2)
    validator = RequestValidator(fake.auth_token)
    assert [params["MessageStatus"] for _, _, params in receiver.received] == ["sent", "delivered"]
    for path, headers, params in receiver.received:
        assert path == "/webhooks/twilio/status/?notification=7"
        assert validator.validate(url, params, headers["X-Twilio-Signature"])
        assert not validator.validate(
            url, {**params, "MessageStatus": "x"}, headers["X-Twilio-Signature"]
        )
        assert params["MessageSid"] == params["SmsSid"] == message.sid
        assert (params["AccountSid"], params["To"], params["From"]) == (fake.account_sid, TO, FROM)
        assert params["ApiVersion"] == "2010-04-01"
        assert "ErrorCode" not in params
    assert [callback.status for callback in fake.callbacks] == [204, 204]


def test_undelivered_callback_carries_the_error_code(fake, twilio, receiver):
    fake.always(TO, "undelivered:30003")
    url = receiver.url + "/status"
    message = send_sms(twilio, from_=FROM, status_callback=url)

    fake.wait_for_callbacks(2)
    statuses = [(p["MessageStatus"], p.get("ErrorCode")) for _, _, p in receiver.received]
    assert statuses == [("sent", None), ("undelivered", "30003")]
    fetched = twilio.messages(message.sid).fetch()
    assert (fetched.status, fetched.error_code) == ("undelivered", 30003)


def test_a_messaging_service_reports_queued_first(fake, twilio, receiver):
    send_sms(twilio, messaging_service_sid=SERVICE, status_callback=receiver.url + "/status")

    callbacks = fake.wait_for_callbacks(3)
    assert [c.params["MessageStatus"] for c in callbacks] == ["queued", "sent", "delivered"]
    assert {c.params["MessagingServiceSid"] for c in callbacks} == {SERVICE}


def test_callbacks_can_go_through_a_proxy_or_be_turned_off(fake, twilio, receiver):
    public = "https://renewly.example/webhooks/twilio/status/?notification=3"
    fake.callback_base_url = receiver.url
    send_sms(twilio, from_=FROM, status_callback=public)
    fake.wait_for_callbacks(2)
    path, headers, params = receiver.received[0]
    assert path == "/webhooks/twilio/status/?notification=3"
    assert RequestValidator(fake.auth_token).validate(public, params, headers["X-Twilio-Signature"])

    fake.reset()
    fake.status_callbacks = False
    message = send_sms(twilio, from_=FROM, status_callback=public)
    assert twilio.messages(message.sid).fetch().status == "delivered"
    assert fake.messages[0].status == "delivered"
    assert fake.callbacks == []


# --- Postmark through anymail ----------------------------------------------------------------


def test_postmark_send_returns_the_fakes_message_id(fake, postmark):
    message = send_email(
        metadata={"notification": "42"},
        tags=["renewal-reminder"],
        headers={"X-Renewly-Notification": "42"},
    )
    [sent] = fake.messages

    assert message.anymail_status.message_id == sent.id
    assert message.anymail_status.status == {"sent"}
    assert sent.channel == "email"
    assert sent.recipient == "pat@mail.example"
    assert sent.subject == "Your policy P-1 expires on 2030-01-31"
    assert sent.body == "Dear Pat, P-1 expires soon."
    assert sent.sender == "Renewly <reminders@renewly.example>"
    assert sent.metadata == {"notification": "42"}
    assert sent.headers == {"X-Renewly-Notification": "42"}
    assert sent.tag == "renewal-reminder"


def test_postmark_receives_the_html_body(fake, postmark):
    message = AnymailMessage("Subject", "text", "from@renewly.example", ["pat@mail.example"])
    message.attach_alternative("<p>html</p>", "text/html")
    message.send()

    assert (fake.messages[0].body, fake.messages[0].html) == ("text", "<p>html</p>")


@pytest.mark.parametrize("outcome", ["inactive", "unsubscribed", "invalid"])
def test_postmark_refusals_raise_recipients_refused(fake, postmark, outcome):
    fake.always("Pat@Mail.example", outcome)

    with pytest.raises(AnymailRecipientsRefused):
        send_email()

    assert fake.accepted == Counter()
    assert fake.attempts == Counter({"pat@mail.example": 1})


def test_postmark_partly_inactive_sends_to_the_others(fake, postmark):
    fake.always("gone@mail.example", "inactive")

    message = send_email(to=["pat@mail.example", "gone@mail.example"])

    recipients = message.anymail_status.recipients
    assert recipients["gone@mail.example"].status == "rejected"
    assert recipients["pat@mail.example"].status == "sent"
    assert fake.accepted == Counter({"pat@mail.example": 1})


def test_postmark_server_error_raises_api_error(fake, postmark):
    fake.script(ALL, ["500"])

    with pytest.raises(AnymailAPIError) as raised:
        send_email()

    assert raised.value.status_code == 500
    assert not isinstance(raised.value, AnymailRecipientsRefused)
    send_email()  # the script is used up
    assert fake.accepted == Counter({"pat@mail.example": 1})


def test_postmark_checks_the_server_token(fake, postmark):
    postmark.ANYMAIL = {**postmark.ANYMAIL, "POSTMARK_SERVER_TOKEN": "wrong"}

    with pytest.raises(AnymailAPIError) as raised:
        send_email()

    assert raised.value.status_code == 401
    assert fake.attempts == Counter()


def test_postmark_batch_gives_each_recipient_its_message(fake, postmark):
    message = send_email(
        to=["pat@mail.example", "sam@mail.example"],
        merge_metadata={"pat@mail.example": {"n": "1"}, "sam@mail.example": {"n": "2"}},
    )

    recipients = message.anymail_status.recipients
    by_recipient = {sent.recipient: sent for sent in fake.messages}
    assert recipients["pat@mail.example"].message_id == by_recipient["pat@mail.example"].id
    assert recipients["sam@mail.example"].message_id == by_recipient["sam@mail.example"].id
    assert by_recipient["sam@mail.example"].metadata == {"n": "2"}
    assert fake.accepted == Counter({"pat@mail.example": 1, "sam@mail.example": 1})


# --- Latency, timeouts, resets, counting ----------------------------------------------------


def test_latency_is_applied_to_every_send(fake, twilio, postmark):
    fake.latency = 0.2

    started = time.monotonic()
    send_sms(twilio, from_=FROM)
    send_email()
    assert time.monotonic() - started >= 0.4

    fake.reset()
    started = time.monotonic()
    send_sms(twilio, from_=FROM)
    assert time.monotonic() - started < 0.2


def test_a_timed_out_send_still_goes_out(fake, postmark):
    fake.script(ALL, ["timeout", "timeout"])
    postmark.ANYMAIL = {**postmark.ANYMAIL, "REQUESTS_TIMEOUT": 0.2}

    with pytest.raises(requests.Timeout):  # twilio does not wrap transport errors
        send_sms(fake.twilio_client(timeout=0.2), from_=FROM)
    with pytest.raises(AnymailAPIError) as raised:
        send_email()

    assert isinstance(raised.value, requests.Timeout)
    assert fake.accepted == Counter({TO: 1, "pat@mail.example": 1})


def test_a_reset_connection_sends_nothing(fake, twilio, postmark):
    fake.script(ALL, ["reset", "reset"])

    with pytest.raises(requests.ConnectionError):
        send_sms(twilio, from_=FROM)
    with pytest.raises(AnymailAPIError) as raised:
        send_email()

    assert isinstance(raised.value, requests.ConnectionError)
    assert fake.accepted == Counter()
    send_sms(twilio, from_=FROM)  # a new connection works
    assert fake.accepted == Counter({TO: 1})


def test_counts_per_recipient(fake, twilio, postmark):
    fake.always(OTHER, "unsubscribed")
    send_sms(twilio, from_=FROM)
    send_sms(twilio, from_=FROM)
    send_email(to=["Pat@Mail.example"])
    with pytest.raises(TwilioRestException):
        send_sms(twilio, to=OTHER, from_=FROM)

    assert fake.accepted == Counter({TO: 2, "pat@mail.example": 1})
    assert fake.attempts == Counter({TO: 2, "pat@mail.example": 1, OTHER: 1})
    assert [sent.channel for sent in fake.messages] == ["sms", "sms", "email"]

    fake.reset()
    assert (fake.accepted, fake.attempts, fake.messages) == (Counter(), Counter(), [])
    send_sms(twilio, to=OTHER, from_=FROM)  # reset forgets standing outcomes too
    assert fake.accepted == Counter({OTHER: 1})


def test_unknown_outcomes_are_refused_early(fake):
    with pytest.raises(ValueError, match="unknown outcome"):
        fake.script(TO, ["200"])
    with pytest.raises(ValueError, match="unknown outcome"):
        fake.always(TO, "bounced")
