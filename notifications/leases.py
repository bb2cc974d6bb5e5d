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
from django.utils import timezone

from notifications.models import WorkerLease

logger = logging.getLogger(__name__)


def lease_duration() -> timedelta:
    return timedelta(seconds=settings.REMINDER_WORKER_LEASE_SECONDS)


def longest_send() -> float:
    """Seconds a send may take before its client gives up on it: the providers' timeouts."""
    return float(max(settings.EMAIL_TIMEOUT, settings.TWILIO_TIMEOUT_SECONDS))


class ProcessLease:
    """This process's lease. `renew()` at the start of every batch; `holds(lease_id)` before
    every send."""

    def __init__(self):
        self._lock = threading.Lock()
        self.id: int | None = None
        self._renewal_began = float("-inf")  # time.monotonic() before the last renewal

    def renew(self) -> int:
        """Extend the lease, or take a new one when it lapsed (a process that was stopped, or
        cut off from the database, for too long: the sweep may have taken its claims over, and
        they stay lost to it). Returns the lease's id."""
        with self._lock:
            began = time.monotonic()
            extended = self.id is not None and (
                WorkerLease.objects.filter(pk=self.id, expires_at__gt=Now()).update(
                    expires_at=Now() + lease_duration()
                )
            )
            if not extended:
                lease = WorkerLease.objects.create(
                    name=f"{socket.gethostname()}:{os.getpid()}",
                    expires_at=timezone.now() + lease_duration(),
                )
                if self.id is not None:
                    logger.warning("lease %s lapsed; this process now holds %s", self.id, lease.pk)
                self.id = lease.pk
            self._renewal_began = began
            return self.id

    def holds(self, lease_id: int) -> bool:
        """Whether a send for a notification claimed under `lease_id` may start now: the lease
        is still this process's, and will outlive the send."""
        with self._lock:
            left = self._renewal_began + settings.REMINDER_WORKER_LEASE_SECONDS - time.monotonic()
            return lease_id == self.id and left > longest_send()


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
