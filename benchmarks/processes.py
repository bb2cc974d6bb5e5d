"""The child processes of a benchmark (workers, Beat, private servers): each dies with the
benchmark, even when the benchmark is killed, and is stopped with whatever it started."""

import ctypes
import os
import signal
import subprocess
from contextlib import suppress

PR_SET_PDEATHSIG = 1


def die_with_parent(signal_number: int = signal.SIGTERM):
    """A preexec_fn: the child gets `signal_number` when the benchmark dies, even by SIGKILL.
    (Run after subprocess has switched user, which would clear it.)"""

    def arrange() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal_number)

    return arrange


def stop_warm(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM (a worker's warm shutdown), then whatever is left of its group."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=timeout)
    kill_group(process)


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the process and every process of its group, and reap it."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
