"""The fake provider speaks the real wire formats: the real twilio SDK and the real anymail
Postmark backend talk to it over HTTP, and accept what it answers; the twilio SDK and requests
read its lookups (Twilio's Messages list, Postmark's outbound search) as the real ones."""

import threading
import time
from collections import Counter
from datetime import UTC, date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl

import pytest
import requests
from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from anymail.message import AnymailMessage
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from notifications.channels.sms import twilio_client
from tests.fake_provider import (
    ALL,
    DEFAULT_MESSAGING_SERVICE_SID,
    DEFAULT_SHORT_LINK_DOMAIN,
    FakeProvider,
)

TO = "+14155550100"
OTHER = "+14155550101"
FROM = "+15005550006"
SERVICE = DEFAULT_MESSAGING_SERVICE_SID


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


def at(moment: str):
    """A clock stopped at that time, for FakeProvider.clock."""
    seconds = datetime.fromisoformat(moment).timestamp()
    return lambda: seconds


def search_postmark(fake, token=None, timeout=2, **params):
    """Postmark's outbound search as Renewly calls it: requests, at POSTMARK_API_URL + path."""
    url = fake.django_settings()["ANYMAIL"]["POSTMARK_API_URL"] + "messages/outbound"
    headers = {
        "Accept": "application/json",
        "X-Postmark-Server-Token": token or fake.postmark_token,
    }
    return requests.get(url, params=params, headers=headers, timeout=timeout)


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
    ("service", "code"),
    [("MG-not-a-sid", 21705), ("MG" + "ab" * 15, 21705), ("MG" + "0" * 32, 21701)],
)
def test_a_malformed_or_unknown_messaging_service_is_refused_as_twilio_does(
    fake, twilio, service, code
):
    with pytest.raises(TwilioRestException) as refused:
        send_sms(twilio, messaging_service_sid=service)

    assert (refused.value.status, refused.value.code) == (400, code)
    assert service in refused.value.msg
    assert fake.messages == []


def test_link_shortening_replaces_each_link_with_one_of_the_services_domain(fake, twilio):
    long_link = "https://portal.insurer.example/renew/P-1?agent=sam%40agency.example"
    body = f"P-1 expires soon. Renew at {long_link} or see http://insurer.example/help"

    message = send_sms(twilio, messaging_service_sid=SERVICE, shorten_urls=True, body=body)

    (sent,) = fake.messages
    assert sent.data["ShortenUrls"] == "true"
    assert sent.data["Body"] == body  # the request, as received
    words = sent.body.split()
    short_links = [word for word in words if word.startswith("https://")]
    assert len(short_links) == 2
    for short in short_links:
        domain, _, code = short.removeprefix("https://").partition("/")
        assert (domain, len(code), code.isalnum()) == (DEFAULT_SHORT_LINK_DOMAIN, 10, True)
    assert [fake.short_links[short] for short in short_links] == [
        long_link,
        "http://insurer.example/help",
    ]
    assert message.body == sent.body == twilio.messages(message.sid).fetch().body
    assert sent.body.startswith("P-1 expires soon. Renew at https://rnwl.example/")


def test_without_shorten_urls_a_services_links_go_as_written(fake, twilio):
    body = "Renew at https://portal.insurer.example/renew/P-1 today"

    send_sms(twilio, messaging_service_sid=SERVICE, body=body)

    (sent,) = fake.messages
    assert sent.body == body
    assert "ShortenUrls" not in sent.data
    assert fake.short_links == {}


def test_shorten_urls_without_a_messaging_service_is_refused(fake, twilio):
    with pytest.raises(TwilioRestException) as refused:
        send_sms(twilio, from_=FROM, shorten_urls=True, body="Renew at https://x.example/a")

    assert refused.value.status == 400
    assert fake.messages == []


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
    with pytest.raises(ValueError, match="unknown lookup outcome"):
        fake.script_lookups(["inactive"])
    with pytest.raises(ValueError, match="unknown outcome"):
        fake.always_lookups("bounced")


# --- Lookups: Twilio's Messages list ---------------------------------------------------------


def test_twilio_list_pages_through_one_numbers_messages_newest_first(fake, twilio):
    fake.clock = at("2026-12-02T10:00:00+00:00")
    sids = [send_sms(twilio, from_=FROM, body=f"P-{n}").sid for n in range(5)]
    send_sms(twilio, to=OTHER, from_=FROM)

    since = datetime(2026, 12, 2, 9, 59, 59, tzinfo=UTC)
    listed = twilio.messages.list(to=TO, date_sent_after=since, page_size=2)

    assert [message.sid for message in listed] == sids[::-1]
    assert fake.lookups == Counter({"sms": 3})  # pages of 2, 2 and 1
    streamed = twilio.messages.stream(to=TO, page_size=2, limit=3)
    assert [message.body for message in streamed] == ["P-4", "P-3", "P-2"]
    assert listed[0].date_sent == datetime(2026, 12, 2, 10, tzinfo=UTC)
    assert fake.messages[4].accepted_at == datetime(2026, 12, 2, 10, tzinfo=UTC)


def test_twilio_list_answers_in_twilios_envelope(fake, twilio):
    sids = [send_sms(twilio, from_=FROM).sid for _ in range(3)]
    auth = (fake.account_sid, fake.auth_token)
    uri = f"/2010-04-01/Accounts/{fake.account_sid}/Messages.json"

    first = requests.get(fake.base_url + uri, params={"PageSize": 2}, auth=auth).json()
    second = requests.get(fake.base_url + first["next_page_uri"], auth=auth).json()
    back = requests.get(fake.base_url + second["previous_page_uri"], auth=auth).json()

    assert [m["sid"] for m in first["messages"]] == sids[:0:-1]
    assert (first["page"], first["page_size"], first["start"], first["end"]) == (0, 2, 0, 1)
    assert first["previous_page_uri"] is None
    assert first["uri"] == first["first_page_uri"] == uri + "?PageSize=2&Page=0"
    assert [m["sid"] for m in second["messages"]] == sids[:1]
    assert (second["page"], second["start"], second["end"], second["next_page_uri"]) == (
        1,
        2,
        2,
        None,
    )
    assert back["messages"] == first["messages"]
    oldest = second["messages"][0]
    assert oldest == requests.get(fake.base_url + oldest["uri"], auth=auth).json()  # as fetched


def test_the_projects_twilio_client_pages_through_the_list_too(fake):
    client = twilio_client.__wrapped__(fake.account_sid, fake.auth_token, fake.base_url, 2.0)
    fake.clock = at("2026-12-02T10:00:00+00:00")
    sids = [send_sms(client, from_=FROM).sid for _ in range(3)]

    since = datetime(2026, 12, 2, 10, tzinfo=UTC)
    listed = client.messages.list(to=TO, date_sent_after=since, page_size=2)

    assert [message.sid for message in listed] == sids[::-1]
    assert fake.lookups == Counter({"sms": 2})


def test_twilio_date_filters_compare_the_gmt_day_alone(fake, twilio):
    fake.clock = at("2026-12-01T23:30:00+00:00")
    yesterday = send_sms(twilio, from_=FROM).sid
    fake.clock = at("2026-12-02T00:30:00+00:00")
    early = send_sms(twilio, from_=FROM).sid
    fake.clock = at("2026-12-02T20:00:00+00:00")
    late = send_sms(twilio, from_=FROM).sid

    def listed(**filters):
        return [message.sid for message in twilio.messages.list(to=TO, **filters)]

    assert listed(date_sent_after=datetime(2026, 12, 2, 12, tzinfo=UTC)) == [late, early]
    assert listed(date_sent_before=datetime(2026, 12, 1, tzinfo=UTC)) == [yesterday]
    assert listed(date_sent=date(2026, 12, 2)) == [late, early]
    assert listed(date_sent_after=datetime(2026, 12, 3, tzinfo=UTC)) == []
    assert listed() == [late, early, yesterday]


def test_a_message_not_sent_yet_is_dated_by_its_creation(fake, twilio, receiver):
    fake.callback_delay = 30  # it stays "accepted" (stop() cuts the wait short)
    fake.clock = at("2026-12-02T10:00:00+00:00")
    status_callback = receiver.url + "/status"
    message = send_sms(twilio, messaging_service_sid=SERVICE, status_callback=status_callback)

    since = datetime(2026, 12, 2, 10, tzinfo=UTC)
    [listed] = twilio.messages.list(to=TO, date_sent_after=since)

    assert (listed.sid, listed.status, listed.date_sent) == (message.sid, "accepted", None)


def test_twilio_list_checks_credentials_and_parameters(fake, twilio):
    intruder = Client(fake.account_sid, "wrong-token")
    intruder.api.base_url = fake.base_url
    with pytest.raises(TwilioException) as raised:  # the SDK's lists raise no TwilioRestException
        intruder.messages.list(to=TO)
    assert raised.value.args[1].status_code == 401

    uri = f"{fake.base_url}/2010-04-01/Accounts/{fake.account_sid}/Messages.json"
    auth = (fake.account_sid, fake.auth_token)
    for params in ({"DateSent>": "yesterday"}, {"PageSize": "0"}, {"PageToken": "PASMgone"}):
        response = requests.get(uri, params=params, auth=auth)
        assert (response.status_code, response.json()["code"]) == (400, 20001)
    assert fake.lookups == Counter()


# --- Lookups: Postmark's outbound message search -------------------------------------------


def test_postmark_search_finds_a_message_by_its_metadata(fake, postmark):
    fake.clock = at("2026-12-02T10:00:00+00:00")
    for n in (1, 2, 3):
        send_email(metadata={"notification_id": str(n)}, tags=["renewal-reminder"])

    response = search_postmark(fake, count=10, offset=0, metadata_notification_id="2")

    assert response.status_code == 200
    assert response.json() == {
        "TotalCount": 1,
        "Messages": [
            {
                "Tag": "renewal-reminder",
                "MessageID": fake.messages[1].id,
                "MessageStream": "outbound",
                "To": [{"Email": "pat@mail.example", "Name": None}],
                "Cc": [],
                "Bcc": [],
                "Recipients": ["pat@mail.example"],
                "ReceivedAt": "2026-12-02T10:00:00+00:00",
                "From": "Renewly <reminders@renewly.example>",
                "Subject": "Your policy P-1 expires on 2030-01-31",
                "Attachments": [],
                "Status": "Sent",
                "TrackOpens": False,
                "TrackLinks": "None",
                "Metadata": {"notification_id": "2"},
                "Sandboxed": False,
            }
        ],
    }
    assert search_postmark(fake, count=10, offset=0, metadata_notification_id="4").json() == {
        "TotalCount": 0,
        "Messages": [],
    }


def test_postmark_search_filters(fake, postmark):
    fake.clock = at("2026-12-01T23:30:00+00:00")
    send_email(to=["sam@mail.example"])
    fake.clock = at("2026-12-02T10:00:00+00:00")
    send_email(tags=["renewal-reminder"])

    def total(**filters):
        return search_postmark(fake, count=10, offset=0, **filters).json()["TotalCount"]

    assert total() == 2
    assert total(recipient="PAT@mail.example") == 1
    assert total(fromemail="reminders@renewly.example", status="sent") == 2
    assert (total(tag="renewal-reminder"), total(status="queued")) == (1, 0)
    assert total(subject="your policy p-1 expires on 2030-01-31") == 2
    assert (total(fromdate="2026-12-02"), total(todate="2026-12-01")) == (1, 1)
    assert total(fromdate="2026-12-02T09:59:00", todate="2026-12-02T10:00:00Z") == 1
    assert total(messagestream="broadcast") == 0


def test_postmark_search_pages_by_count_and_offset_newest_first(fake, postmark):
    ids = [send_email(to=[f"p{n}@mail.example"]).anymail_status.message_id for n in range(3)]

    def page(offset):
        found = search_postmark(fake, count=2, offset=offset).json()
        return found["TotalCount"], [message["MessageID"] for message in found["Messages"]]

    assert page(0) == (3, [ids[2], ids[1]])
    assert page(2) == (3, [ids[0]])
    assert page(4) == (3, [])
    with_slash = requests.get(
        f"{fake.base_url}/messages/outbound/?count=1&offset=0",
        headers={"X-Postmark-Server-Token": fake.postmark_token},
    )
    assert [message["MessageID"] for message in with_slash.json()["Messages"]] == [ids[2]]


@pytest.mark.parametrize(
    "params",
    [
        {"offset": 0},
        {"count": 10},
        {"count": 0, "offset": 0},
        {"count": 501, "offset": 0},
        {"count": 500, "offset": 9501},
        {"count": "ten", "offset": 0},
        {"count": 10, "offset": 0, "fromdate": "yesterday"},
    ],
)
def test_postmark_search_refuses_a_bad_query(fake, params):
    response = search_postmark(fake, **params)

    assert response.status_code == 422
    assert response.json()["ErrorCode"] == 700
    assert response.json()["Message"].startswith("Messages query exception: ")
    assert fake.lookups == Counter()


def test_postmark_search_checks_the_server_token(fake):
    response = search_postmark(fake, token="wrong", count=10, offset=0)

    assert (response.status_code, response.json()["ErrorCode"]) == (401, 10)
    assert fake.lookups == Counter()


# --- Lookup faults ---------------------------------------------------------------------------


def test_lookup_faults_leave_sends_alone_and_the_reverse(fake, twilio, postmark):
    fake.script_lookups(["503", "reset"])
    send_sms(twilio, from_=FROM)
    send_email()

    with pytest.raises(TwilioException) as raised:
        twilio.messages.list(to=TO)
    assert raised.value.args[1].status_code == 503
    with pytest.raises(requests.ConnectionError):
        search_postmark(fake, count=10, offset=0)
    assert len(twilio.messages.list(to=TO)) == 1  # the script is used up

    fake.always_lookups("500")
    fake.script(ALL, ["500"])
    with pytest.raises(AnymailAPIError):
        send_email()
    failed = search_postmark(fake, count=10, offset=0)
    assert (failed.status_code, failed.json()["ErrorCode"]) == (500, 500)
    send_email()  # sends work while lookups fail
    fake.always_lookups("ok")
    assert search_postmark(fake, count=10, offset=0).json()["TotalCount"] == 2
    assert fake.lookups == Counter({"sms": 2, "email": 3})

    fake.reset()
    assert fake.lookups == Counter()
    assert search_postmark(fake, count=10, offset=0).status_code == 200


def test_a_timed_out_lookup_answers_too_late(fake):
    fake.hang_seconds = 1.0
    fake.script_lookups(["timeout"])

    with pytest.raises(requests.Timeout):
        search_postmark(fake, timeout=0.2, count=10, offset=0)
    assert search_postmark(fake, count=10, offset=0).status_code == 200
