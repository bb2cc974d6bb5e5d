"""A CPU profile of a running worker, taken from outside it with py-spy (a sampling profiler:
the worker runs its own code, unchanged, while py-spy reads its stacks). Only the samples of a
thread holding the GIL count: on a threads-pool worker, that is where its CPU goes, not where
its send threads wait for the provider."""

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Renewly's own packages: the inclusive table shows their functions only (the frames around
# them, threads and Celery's tracer, are on every stack and say nothing).
OWN_PACKAGES = {"api", "config", "events", "notifications", "ops", "policies", "workspace"}


def package_of(frame: str) -> str:
    """`send (notifications/dispatch.py)`: `notifications`; `wait (threading.py)`: `threading`."""
    _, found, path = frame.rpartition(" (")
    return path.rstrip(")").split("/")[0].removesuffix(".py") if found else frame


@dataclass
class Profile:
    samples: int
    own: Counter[str]  # samples whose innermost frame is this function
    inclusive: Counter[str]  # samples with this function anywhere on the stack

    @classmethod
    def read(cls, raw: Path) -> "Profile":
        """py-spy's raw (collapsed stacks) output: `outer;...;inner count`, a stack a line."""
        own, inclusive, samples = Counter(), Counter(), 0
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            frames = [frame or "(unknown)" for frame in stack.split(";")]
            frames = [frame for frame in frames if not frame.startswith("process ")]
            if not frames:
                continue
            samples += int(count)
            own[frames[-1]] += int(count)
            for frame in set(frames):
                inclusive[frame] += int(count)
        return cls(samples, own, inclusive)

    def summary(self, top: int) -> str:
        by_package = Counter()
        for frame, count in self.own.items():
            by_package[package_of(frame)] += count
        ours = Counter(
            {frame: n for frame, n in self.inclusive.items() if package_of(frame) in OWN_PACKAGES}
        )

        def table(title: str, counts: Counter[str]) -> list[str]:
            rows = [f"  {title}"]
            for frame, count in counts.most_common(top):
                rows.append(f"    {100 * count / self.samples:5.1f}%  {frame}")
            return rows

        return "\n".join(
            [
                f"{self.samples:,} samples of threads holding the GIL",
                *table("own time by package (the code running, whoever called it):", by_package),
                *table("own time by function:", self.own),
                *table("inclusive time of Renewly's functions (and what they call):", ours),
            ]
        )


class PySpyRecorder:
    """`py-spy record` on one process for the duration of the block, into `raw`."""

    def __init__(self, pid: int, raw: Path, rate: int = 200):
        executable = shutil.which("py-spy", path=str(Path(sys.executable).parent))
        if executable is None:
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install -e '.[dev]'")
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.unlink(missing_ok=True)
        self.raw = raw
        self._arguments = [
            executable,
            "record",
            f"--pid={pid}",
            "--format=raw",
            f"--output={raw}",
            f"--rate={rate}",
            "--gil",
            "--nolineno",
            "--nonblocking",  # the worker is not paused at each sample
        ]
        self._log = raw.with_suffix(".log")

    def __enter__(self) -> "PySpyRecorder":
        with open(self._log, "wb") as log:
            self._process = subprocess.Popen(self._arguments, stdout=log, stderr=log)
        return self

    def __exit__(self, *exc_info) -> None:
        self._process.send_signal(signal.SIGINT)  # py-spy writes its output, then exits
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if exc_info[0] is None and not self.raw.exists():
            raise RuntimeError(f"py-spy wrote no profile:\n{self._log.read_text()}")
