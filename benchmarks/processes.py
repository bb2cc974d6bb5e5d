"""The child processes of a benchmark (workers, Beat, private servers): each dies with the
benchmark, even when the benchmark is killed, and is stopped with whatever it started; and what
each costs in CPU, read from /proc."""

import ctypes
import os
import signal
import subprocess
from collections import defaultdict
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

PR_SET_PDEATHSIG = 1
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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


# --- What they cost (/proc) ---------------------------------------------------------------


@dataclass(frozen=True)
class Proc:
    ppid: int
    comm: str
    cpu: float  # seconds, its own
    reaped_cpu: float  # seconds, of its children that exited


def process_table() -> dict[int, Proc]:
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as stat:
                    head, _, rest = stat.read().rpartition(")")
                fields = rest.split()
                ticks = [int(value) for value in fields[11:15]]  # utime stime cutime cstime
            except (OSError, IndexError, ValueError):
                continue
            table[int(entry.name)] = Proc(
                ppid=int(fields[1]),
                comm=head.partition("(")[2],
                cpu=(ticks[0] + ticks[1]) / CLOCK_TICKS,
                reaped_cpu=(ticks[2] + ticks[3]) / CLOCK_TICKS,
            )
    return table


def descendants(root: int, table: dict[int, Proc]) -> list[int]:
    children = defaultdict(list)
    for pid, proc in table.items():
        children[proc.ppid].append(pid)
    found, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            found.append(pid)
        stack.extend(children.get(pid, ()))
    return found


def tree_cpu(root: int, table: dict[int, Proc]) -> float:
    """CPU seconds of a process, its live descendants and those it reaped."""
    pids = descendants(root, table)
    return sum(table[pid].cpu for pid in pids) + (table[root].reaped_cpu if pids else 0)


def worker_memory(pid: int) -> dict[str, int]:
    """A process's resident size now (VmRSS) and at its peak since the last reset (VmHWM)."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) * 1024
    return fields


def reset_peak_memory(pid: int) -> None:
    Path(f"/proc/{pid}/clear_refs").write_text("5")  # VmHWM starts again from VmRSS
