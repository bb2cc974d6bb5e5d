"""A sending process's lease: how the rest of the system tells a worker that is still sending
from one that died (a SIGKILL, the OOM killer, a lost node) with notifications claimed.

Each process that sends holds one WorkerLease row and renews it, in the database's own clock,
at every batch and every REMINDER_WORKER_LEASE_SECONDS / 4 from a heartbeat thread. A
notification it claims records the lease. Once the lease has lapsed, the recovery sweep
(notifications.recovery) takes the notification over and asks the provider whether it went.

For that question to have a true answer, no send may still be on its way when the lease lapses:
a process starts a send only while its lease has more than the longest provider timeout left
(as far as it knows: it counts from before its last renewal began), and never once its lease
was lost and replaced."""

import logging
import os
import socket
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import connection
from django.db.models.functions import Now

from notifications.models import WorkerLease

logger = logging.getLogger(__name__)


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.REMINDER_WORKER_LEASE_SECONDS)


def longest_send() -> float:
    """Seconds a send may take before its client gives up on it. The providers' timeouts bound
    each step of a request (connecting, then each read), not the whole: twice the longest."""
    return 2.0 * max(settings.EMAIL_TIMEOUT, settings.TWILIO_TIMEOUT_SECONDS)


class ProcessLease:
    """This process's lease. `renew()` at the start of every batch; `holds(lease_id)` before
    every send; `abandon(lease_id)` when a batch fails half-way, so that what it left sending
    is recovered instead of held for as long as the process lives."""

    def __init__(self):
        self._renewing = threading.Lock()
        # (lease id, time.monotonic() before its last renewal began), replaced whole: read by
        # every send without a lock, never waiting on a renewal's round trip.
        self._state: tuple[int | None, float] = (None, float("-inf"))

    @property
    def id(self) -> int | None:
        return self._state[0]

    def renew(self) -> int:
        """Extend the lease, or take a new one when it lapsed (a process that was stopped, or
        cut off from the database, for too long: the sweep may have taken its claims over, and
        they stay lost to it) or was abandoned. Returns the lease's id."""
        with self._renewing:
            began, lease_id = time.monotonic(), self.id
            extended = lease_id is not None and (
                WorkerLease.objects.filter(pk=lease_id, expires_at__gt=Now()).update(
                    expires_at=Now() + lease_duration()
                )
            )
            if not extended:
                new_id = WorkerLease.objects.create(
                    name=f"{socket.gethostname()}:{os.getpid()}",
                    expires_at=Now() + lease_duration(),  # in the database's clock, as renewals
                ).pk
                if lease_id is not None:
                    logger.warning("lease %s lapsed; this process now holds %s", lease_id, new_id)
                lease_id = new_id
            self._state = (lease_id, began)
            return lease_id

    def holds(self, lease_id: int) -> bool:
        """Whether a send for a notification claimed under `lease_id` may start now: the lease
        is still this process's, and will outlive the send."""
        held_id, renewal_began = self._state
        left = renewal_began + settings.REMINDER_WORKER_LEASE_SECONDS - time.monotonic()
        return lease_id == held_id and left > longest_send()

    def abandon(self, lease_id: int) -> None:
        """Stop renewing `lease_id`: it lapses, and recovery takes over what it holds. The next
        renewal takes a new lease."""
        with self._renewing:
            if self.id == lease_id:
                self._state = (None, float("-inf"))
                logger.warning("lease %s abandoned: recovery takes over what it holds", lease_id)


_lease = ProcessLease()
_heartbeat_started_for: int | None = None  # the pid whose heartbeat runs


def current() -> ProcessLease:
    return _lease


def start_heartbeat(**_signal_arguments) -> None:
    """Renew this process's lease every quarter of its duration, on a thread of its own, for
    as long as the process lives: a batch waiting on a slow provider keeps its claims. A child
    forked from a process that had one starts its own, with a lease of its own."""
    global _lease, _heartbeat_started_for
    if _heartbeat_started_for == os.getpid():
        return
    _lease, _heartbeat_started_for = ProcessLease(), os.getpid()
    threading.Thread(target=_beat, args=(_lease,), name="lease-heartbeat", daemon=True).start()


def _beat(lease: ProcessLease) -> None:
    while True:
        try:
            lease.renew()
        except Exception:  # the database is away: the lease may lapse, and sends stop
            logger.warning("could not renew the worker lease", exc_info=True)
            connection.close()  # this thread's: the next try opens a fresh one
        time.sleep(settings.REMINDER_WORKER_LEASE_SECONDS / 4)
