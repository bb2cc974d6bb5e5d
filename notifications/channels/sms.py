"""SMS through Twilio's Messages API, with the real twilio SDK."""

import json
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from functools import lru_cache
from urllib.parse import urlencode

import requests
import urllib3
from django.conf import settings
from django.urls import reverse
from requests.utils import DEFAULT_CA_BUNDLE_PATH, select_proxy
from twilio.base.exceptions import TwilioException, TwilioRestException, TwilioServiceException
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

from notifications.channels.base import (
    FoundMessage,
    OutgoingMessage,
    PermanentSendError,
    SendError,
    TransientSendError,
    may_have_reached_provider,
)

# Twilio's own code for "too many requests", beside HTTP 429.
TWILIO_RATE_LIMITED = 20429
GSM_7 = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "ÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_7_EXTENDED = set("^{}\\[~]|€\f")  # each takes two of a segment's characters
# How many of a number's latest messages a lookup reads, at most.
LOOKUP_LIMIT = 200
# A link as Twilio's Link Shortening finds one in a body: a web address up to the next space.
WEB_LINK = re.compile(r"https?://\S+")
# Twilio's short link: https://, the Link Shortening domain, "/" and ten alphanumeric characters.
SHORT_LINK_CODE_LENGTH = 10
# Counted in a preview while no domain is configured: a short branded one, 33-character links.
ASSUMED_SHORT_LINK_DOMAIN = "yourdomain.com"


def sms_segments(body: str) -> int:
    """How many SMS segments a body takes: 160 GSM-7 characters in one, 153 a segment once
    split; 70 and 67 when any character needs UCS-2."""
    if all(ch in GSM_7 or ch in GSM_7_EXTENDED for ch in body):
        length = sum(2 if ch in GSM_7_EXTENDED else 1 for ch in body)
        single, multi = 160, 153
    else:
        length = len(body.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if length <= single else -(-length // multi)


def shortens_links() -> bool:
    """Whether Twilio shortens the links of the SMS we send: through Twilio, with a Link
    Shortening domain (settings require the Messaging Service it works through)."""
    return settings.SMS_BACKEND == "twilio" and bool(settings.TWILIO_LINK_SHORTENING_DOMAIN)


def renew_link_for_sms(url: str, *, links_shortened: bool) -> str:
    """The renew link an SMS carries: only a web link Twilio shortens. At full length it costs
    a segment, and a mailto: link (the default) is never shortened."""
    return url if links_shortened and WEB_LINK.fullmatch(url) else ""


def short_link_placeholder() -> str:
    """A stand-in as long as the short links Twilio will make, for counting segments."""
    domain = settings.TWILIO_LINK_SHORTENING_DOMAIN or ASSUMED_SHORT_LINK_DOMAIN
    return f"https://{domain}/" + "x" * SHORT_LINK_CODE_LENGTH


def with_short_links(body: str) -> str:
    """`body` as long as Twilio sends it with Link Shortening: each web link replaced by the
    stand-in of a short link."""
    placeholder = short_link_placeholder()
    return WEB_LINK.sub(lambda link: placeholder, body)


def status_callback_url(notification_id: int, digest_id: int | None = None) -> str:
    """Where Twilio reports this message's status; it names the notification it is about, or
    the digest (whose every reminder the status is about)."""
    query = urlencode({"digest": digest_id} if digest_id else {"notification": notification_id})
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}{reverse('twilio-status')}?{query}"


@contextmanager
def twilio_errors() -> Iterator[None]:
    """A send's failures as dispatch acts on them: Twilio's refusals by their code, and the
    network's (refused, reset, timed out) as transient, perhaps reaching Twilio."""
    try:
        yield
    except (TwilioRestException, TwilioServiceException) as error:
        raise classify_twilio_error(error) from error
    except urllib3.exceptions.HTTPError as error:
        raise TransientSendError(
            f"Twilio unreachable: {error.__class__.__name__}",
            maybe_sent=may_have_reached_provider(error),
        ) from error


@lru_cache(maxsize=1)
def twilio_client(account_sid: str, auth_token: str, base_url: str, timeout: float) -> Client:
    """One client per process, shared by the send threads: its pool keeps a connection alive
    for each of them (twilio's own pool holds 6, and the others would be discarded)."""
    http_client = PooledHttpClient(
        base_url, timeout=timeout, pool_size=max(10, settings.REMINDER_SEND_THREADS)
    )
    client = Client(account_sid, auth_token, http_client=http_client)
    client.api.base_url = base_url  # Twilio itself, or a compatible stand-in
    return client


class PooledHttpClient(HttpClient):
    """twilio's HTTP client interface on urllib3 alone, which requests runs on: the twilio
    Client builds the same request, sent as TwilioHttpClient sends it, without requests'
    per-request work (hooks, cookies, merging settings), a sixth of an SMS's CPU. The
    environment's proxy and CA bundle are read once, for the one host it talks to."""

    def __init__(self, base_url: str, *, timeout: float, pool_size: int):
        super().__init__(logging.getLogger("twilio.http_client"), False, timeout)
        environment = requests.Session().merge_environment_settings(base_url, {}, None, None, None)
        verify = environment["verify"]
        tls = {"cert_reqs": "CERT_REQUIRED" if verify else "CERT_NONE"}
        if isinstance(verify, str):
            tls["ca_cert_dir" if os.path.isdir(verify) else "ca_certs"] = verify
        elif verify:
            tls["ca_certs"] = DEFAULT_CA_BUNDLE_PATH
        proxy = select_proxy(base_url, environment["proxies"])
        if proxy:
            # As requests does: credentials in the proxy's URL become Proxy-Authorization.
            user, password = requests.utils.get_auth_from_url(proxy)
            auth = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
            self.pool = urllib3.ProxyManager(proxy, maxsize=pool_size, proxy_headers=auth, **tls)
        else:
            self.pool = urllib3.PoolManager(maxsize=pool_size, **tls)

    def request(
        self,
        method,
        url,
        params=None,
        data=None,
        headers=None,
        auth=None,
        timeout=None,
        allow_redirects=False,
    ) -> Response:
        timeout = self.timeout if timeout is None else timeout
        headers = dict(headers or {})
        if auth:
            headers.update(urllib3.make_headers(basic_auth=":".join(auth)))
        if params:
            url = f"{url}?{urlencode(_pairs(params))}"
        body = None
        if data is not None:
            json_body = headers.get("Content-Type", "") in (
                "application/json",
                "application/scim+json",
            )
            body = json.dumps(data).encode() if json_body else urlencode(_pairs(data)).encode()
        response = self.pool.request(
            method.upper(),
            url,
            body=body,
            headers=headers,
            # Bounded as a whole, not only per read: no send outlives its worker's lease.
            timeout=urllib3.Timeout(connect=timeout, read=timeout, total=timeout),
            retries=urllib3.Retry(0, read=False),  # as requests: none, raised as they come
            redirect=allow_redirects,
        )
        charset = response.headers.get("Content-Type", "").partition("charset=")[2]
        text = response.data.decode(charset.strip() or "utf-8", errors="replace")
        self._test_only_last_response = Response(response.status, text, response.headers)
        return self._test_only_last_response


def _pairs(values: dict) -> list[tuple[str, object]]:
    """A form's fields as requests encodes them: a list is the field repeated, None left out."""
    pairs = []
    for name, value in values.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None:
                pairs.append((name, item))
    return pairs


class TwilioSmsChannel:
    can_look_up = True

    def send(self, message: OutgoingMessage) -> str:
        client = _client()
        if settings.TWILIO_MESSAGING_SERVICE_SID:
            sender = {"messaging_service_sid": settings.TWILIO_MESSAGING_SERVICE_SID}
            if shortens_links():
                # Only when a domain is configured: Link Shortening needs one on the service.
                sender["shorten_urls"] = True
        else:
            sender = {"from_": settings.TWILIO_FROM_NUMBER}
        with twilio_errors():
            sent = client.messages.create(
                to=message.to,
                body=message.body,
                status_callback=status_callback_url(message.notification_id, message.digest_id),
                **sender,
            )
        return sent.sid

    def find_sent(self, message: OutgoingMessage, *, since: datetime) -> list[FoundMessage]:
        """The SMS Twilio accepted for this notification since `since`: Twilio's latest
        messages to the number (at most LOOKUP_LIMIT) whose body begins with this reminder's,
        its links perhaps shortened. A rendered body names its policy and expiry, so it is this
        notification's own; Twilio takes no idempotency key and returns no status callback URL
        to match by. Not filtered by DateSent: a message Twilio still holds in its queue (a
        Messaging Service under its throughput limit) has no date_sent yet, and must be found
        all the same; nor is the reading stopped at the first older message, as the list is
        ordered by date sent.
        Raises TransientSendError when Twilio cannot answer now."""
        if not message.body:
            raise TransientSendError("no body to match Twilio's messages with")
        sent_body = _as_twilio_keeps(message.body)
        return sent_to(message.to, since=since, matches=lambda body: bool(sent_body.match(body)))


def sent_to(to: str, *, since: datetime, matches) -> list[FoundMessage]:
    """Twilio's latest messages to `to` (at most LOOKUP_LIMIT) created since `since` whose body
    `matches`; TransientSendError when Twilio cannot list them now."""
    found = []
    try:
        for sent in _client().messages.stream(to=to, limit=LOOKUP_LIMIT, page_size=50):
            created = sent.date_created
            if (created is None or created >= since) and matches(sent.body or ""):
                found.append(FoundMessage(sent.sid, created))
    except TwilioException as error:  # a page that came back an error: "Unable to fetch page"
        raise TransientSendError(f"Twilio's message list failed: {_page_error(error)}") from error
    except urllib3.exceptions.HTTPError as error:
        raise TransientSendError(
            f"Twilio's message list unreachable: {error.__class__.__name__}"
        ) from error
    return found


def _as_twilio_keeps(body: str) -> re.Pattern:
    """What Twilio's copy of `body` begins with: the same words, each link perhaps replaced by
    a short link (Link Shortening), and perhaps a Messaging Service's opt-out sentence after."""
    return re.compile(r"\S+".join(re.escape(words) for words in WEB_LINK.split(body)))


def _page_error(error: TwilioException) -> str:
    response = error.args[1] if len(error.args) > 1 else None
    status = getattr(response, "status_code", None)
    return f"{error.args[0] if error.args else error} (HTTP {status})" if status else str(error)


def _client() -> Client:
    return twilio_client(
        settings.TWILIO_ACCOUNT_SID,
        settings.TWILIO_AUTH_TOKEN,
        settings.TWILIO_API_BASE_URL,
        settings.TWILIO_TIMEOUT_SECONDS,
    )


def classify_twilio_error(error: TwilioRestException | TwilioServiceException) -> SendError:
    # TwilioRestException says why in .msg, TwilioServiceException in .detail or .title.
    why = getattr(error, "msg", "") or getattr(error, "detail", "") or getattr(error, "title", "")
    reason = f"Twilio error {error.code or error.status}: {why}"
    if error.status == 429 or error.status >= 500 or error.code == TWILIO_RATE_LIMITED:
        return TransientSendError(reason, code=str(error.code or error.status))
    return PermanentSendError(reason, code=str(error.code or error.status))
