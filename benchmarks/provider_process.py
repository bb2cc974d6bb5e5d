"""The fake Twilio + Postmark provider (tests/fake_provider.py) in a process of its own, for the
benchmarks and the fault suite: what it counts is independent of the workers it counts for, and
its CPU is not theirs. Forked before the parent opens a database connection or starts a thread.

The parent drives it over a pipe: `collect()` what it accepted, `accepted_count()` while a run
goes on, `always(outcome)` to make every send answer 503, 429, time out... (tests/fake_provider.py
lists the outcomes), and `go_down()` / `come_back()` for a provider that stops listening and
later answers again on the same address."""

import multiprocessing
import signal
from contextlib import suppress
from urllib.parse import parse_qs, urlsplit

from tests.fake_provider import ALL, FakeProvider, worker_environment


def serve_fake_provider(conn, parent_conn, latency: float, hang_seconds: float) -> None:
    """Child process: serve a FakeProvider until told to stop (or the parent goes away)."""
    parent_conn.close()  # the parent's end, inherited: else its death would not close the pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it, even on Ctrl-C
    fake = FakeProvider(latency=latency, hang_seconds=hang_seconds, status_callbacks=False).start()
    try:
        conn.send(fake.django_settings())
        while True:
            try:
                command, *arguments = conn.recv()
            except EOFError:  # the parent died
                return
            match command:
                case "collect":  # what was accepted so far, and forget it
                    conn.send(_fake_report(fake))
                    fake.reset()
                case "count":
                    conn.send(sum(fake.accepted.values()))
                case "always":
                    fake.always(ALL, *arguments)
                    conn.send(None)
                case "down":
                    # Open keep-alive connections are hung up on; new ones are refused.
                    fake.always(ALL, "reset")
                    fake.always_lookups("reset")
                    fake.stop()
                    conn.send(None)
                case "up":
                    fake.always(ALL, "ok")
                    fake.always_lookups("ok")
                    fake.start()
                    conn.send(None)
                case _:
                    return
    finally:
        fake.stop()


def _fake_report(fake) -> dict:
    messages = []
    for sent in fake.messages:
        if sent.channel == "email":
            notification_id = sent.metadata.get("notification_id", "")
        else:  # the SMS channel names its notification in the status callback URL
            query = parse_qs(urlsplit(sent.data.get("StatusCallback", "")).query)
            notification_id = query.get("notification", [""])[0]
        accepted_at = sent.accepted_at.timestamp()  # the fake's clock, when it accepted it
        messages.append((sent.channel, sent.recipient, notification_id, accepted_at))
    return {
        "accepted": fake.accepted,
        "attempts": fake.attempts,
        "requests": fake.send_requests,
        "messages": messages,
    }


class FakeProviderProcess:
    def __init__(self, latency: float, hang_seconds: float = 30.0):
        context = multiprocessing.get_context("fork")  # before any thread or DB connection
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=serve_fake_provider,
            args=(child_conn, self.conn, latency, hang_seconds),
            daemon=True,
        )
        self.process.start()
        child_conn.close()
        if not self.conn.poll(30):
            raise RuntimeError("the fake provider did not start")
        self.django_settings = self.conn.recv()

    def worker_environment(self, from_number: str) -> dict[str, str]:
        """The environment that points a worker's anymail Postmark backend and twilio client
        here."""
        return worker_environment(self.django_settings, from_number)

    def _ask(self, *command):
        self.conn.send(command)
        return self.conn.recv()

    def collect(self) -> dict:
        """What it accepted since the last collect: per recipient, and each message as
        (channel, recipient, notification id, acceptance time)."""
        return self._ask("collect")

    def accepted_count(self) -> int:
        return self._ask("count")

    def always(self, outcome: str) -> None:
        """Every send, to anyone, from now on: "503", "429", "timeout", "ok"..."""
        self._ask("always", outcome)

    def go_down(self) -> None:
        self._ask("down")

    def come_back(self) -> None:
        self._ask("up")

    def stop(self) -> None:
        with suppress(OSError):
            self.conn.send(("stop",))
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self.conn.close()
