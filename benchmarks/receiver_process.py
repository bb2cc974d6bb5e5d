"""An insurer's webhook receiver (tests/webhook_receiver.py) in a process of its own, for the
benchmarks: it verifies every request's signature and counts by webhook-id, and its CPU is not
the benchmark's. Forked before the parent opens a database connection or starts a thread, as
benchmarks/provider_process.py's fake provider is.

    receiver = WebhookReceiverProcess(secret)
    receiver.url                  # where the subscription POSTs
    receiver.accepted_total()     # requests answered 2xx so far
    receiver.collect()            # {webhook-id: [acceptance times]}, rejected count; forgets them
    receiver.stop()
"""

import multiprocessing
import signal
import time
from contextlib import suppress

from tests.webhook_receiver import WebhookReceiver


class TimedReceiver(WebhookReceiver):
    """Notes when it accepted each request (time.time(), comparable across processes)."""

    def __init__(self, secret: str):
        super().__init__(secret)
        self.accepted_at: dict[str, list[float]] = {}
        self.total = 0

    def _answer(self, body: bytes, headers: dict[str, str]) -> int:
        status = super()._answer(body, headers)
        if 200 <= status < 300:
            with self._lock:
                self.accepted_at.setdefault(headers["webhook-id"], []).append(time.time())
                self.total += 1
        return status

    def collect(self) -> dict:
        with self._lock:
            report = {"accepted_at": self.accepted_at, "rejected": self.rejected}
            self.accepted_at, self.total, self.rejected = {}, 0, 0
            self.accepted.clear()
            self._accepted_ids.clear()
            self.received.clear()
        return report


def serve_receiver(conn, parent_conn, secret: str) -> None:
    """Child process: serve a TimedReceiver until told to stop (or the parent goes away)."""
    parent_conn.close()  # the parent's end, inherited: else its death would not close the pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it, even on Ctrl-C
    receiver = TimedReceiver(secret).start()
    try:
        conn.send(receiver.url)
        while True:
            try:
                command = conn.recv()
            except EOFError:  # the parent died
                return
            match command:
                case "total":
                    conn.send(receiver.total)
                case "collect":
                    conn.send(receiver.collect())
                case _:
                    return
    finally:
        receiver.stop()


class WebhookReceiverProcess:
    def __init__(self, secret: str):
        context = multiprocessing.get_context("fork")  # before any thread or DB connection
        self.conn, child_conn = context.Pipe()
        self.process = context.Process(
            target=serve_receiver, args=(child_conn, self.conn, secret), daemon=True
        )
        self.process.start()
        child_conn.close()
        if not self.conn.poll(30):
            raise RuntimeError("the webhook receiver did not start")
        self.url = self.conn.recv()

    def _ask(self, command: str):
        self.conn.send(command)
        return self.conn.recv()

    def accepted_total(self) -> int:
        return self._ask("total")

    def collect(self) -> dict:
        """{"accepted_at": {webhook-id: [times answered 2xx]}, "rejected": bad signatures},
        since the last collect."""
        return self._ask("collect")

    def stop(self) -> None:
        with suppress(OSError):
            self.conn.send("stop")
        self.process.join(10)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self.conn.close()
