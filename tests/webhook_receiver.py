"""An insurer's system receiving Renewly's events, on 127.0.0.1: it verifies every request with
the standardwebhooks library, as any Standard Webhooks receiver would, and counts what it got
by webhook-id. Tests and benchmarks deliver to it over real HTTP.

    with WebhookReceiver(secret) as receiver:
        receiver.script(["500", "500"])   # the next two valid requests get HTTP 500
        receiver.stop(); receiver.start()  # down (connections refused), then back, same port
        receiver.accepted                 # {webhook-id: payload} of requests answered 2xx
        receiver.received                 # every valid request's webhook-id, in order
        receiver.rejected                 # requests whose signature did not verify (HTTP 401)
"""

import json
import threading
from collections import Counter, deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class WebhookReceiver:
    def __init__(self, secret: str):
        self.secret = secret
        self._port = 0  # chosen at the first start; a start after stop() listens there again
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        self._script: deque[str] = deque()
        self.accepted: dict[str, dict] = {}
        self._accepted_ids: list[str] = []
        self.received: list[str] = []
        self.rejected = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}/renewly/events"

    def script(self, outcomes: list[str]) -> None:
        """The answers ("ok", or an HTTP status like "500") to the next valid requests."""
        with self._lock:
            self._script.extend(outcomes)

    def accepted_count(self) -> Counter:
        """How many times each webhook-id was answered 2xx (a retry after a lost answer: 2)."""
        with self._lock:
            return Counter(self._accepted_ids)

    def start(self) -> "WebhookReceiver":
        self._server = _Server(self, self._port)
        self._port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "WebhookReceiver":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _answer(self, body: bytes, headers: dict[str, str]) -> int:
        try:
            payload = Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            with self._lock:
                self.rejected += 1
            return 401
        webhook_id = headers["webhook-id"]
        with self._lock:
            self.received.append(webhook_id)
            outcome = self._script.popleft() if self._script else "ok"
            if outcome != "ok":
                return int(outcome)
            self.accepted[webhook_id] = payload
            self._accepted_ids.append(webhook_id)
        return 200


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128

    def __init__(self, receiver: WebhookReceiver, port: int):
        self.receiver = receiver
        super().__init__(("127.0.0.1", port), _Handler)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a requests Session expects
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format, *args) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        status = self.server.receiver._answer(body, dict(self.headers.items()))
        answer = json.dumps({"status": status}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)
