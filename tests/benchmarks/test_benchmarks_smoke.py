"""Every benchmark at its smallest size (`--smoke`), on the real PostgreSQL (and Redis, for those
that start workers): a benchmark that crashes, or whose run lost or doubled anything, fails here
rather than on the day someone needs its figures. The full sizes are `make bench`'s."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
POSTGRES = "postgres://postgres@127.0.0.1:5432"

REDIS = "redis://127.0.0.1:6379/10"  # its queues are the benchmark's own

BENCHMARKS = [
    "bench_import.py",
    "bench_planning.py",
    "bench_dispatch.py",
    "bench_workspace.py",
    "bench_reports.py",
    "bench_upload.py",
    "bench_api.py",
    "bench_isolation.py",
]
# Options a benchmark's smoke run tries too, and what each must then print.
ALSO = {"bench_dispatch.py": (["--profile"], "CPU profile of")}


@pytest.mark.services
@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_the_benchmark_runs_at_its_smoke_size(benchmark, require_service):
    require_service("PostgreSQL", f"{POSTGRES}/postgres")
    require_service("Redis", REDIS)
    environment = {
        **os.environ,
        "BENCH_REDIS_URL": REDIS,
        # A database of its own: it creates and drops test_<name> beside the suite's.
        "DATABASE_URL": f"{POSTGRES}/renewly_smoke_{Path(benchmark).stem}",
    }

    options, printed = ALSO.get(benchmark, ([], ""))
    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "benchmarks" / benchmark), "--smoke", *options],
        capture_output=True,
        text=True,
        env=environment,
        cwd=BASE_DIR,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip(), "it reported no figure"
    assert printed in result.stdout
