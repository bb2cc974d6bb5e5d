"""The fault suite at its smoke size (`benchmarks/faults.py --smoke`: 1,000 reminders; one
worker SIGKILLed mid-dispatch, the broker killed and back empty, two Beats on one schedule, on
Redis): every reminder goes out exactly once through each fault, or this fails with the
suite's table. `make faults` runs every fault, on Redis and RabbitMQ."""

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

BASE_DIR = Path(__file__).resolve().parents[2]
POSTGRES = "postgres://postgres@127.0.0.1:5432"


@pytest.mark.services
def test_every_reminder_goes_out_once_through_the_smoke_faults(require_service):
    require_service("PostgreSQL", f"{POSTGRES}/postgres")
    # The cases' databases are named after this session's: <name>_smoke_<fault>_<broker>.
    name = urlsplit(os.environ.get("DATABASE_URL", "")).path.strip("/") or "renewly"
    environment = {**os.environ, "DATABASE_URL": f"{POSTGRES}/{name}_smoke"}

    result = subprocess.run(
        [sys.executable, str(BASE_DIR / "benchmarks" / "faults.py"), "--smoke"],
        capture_output=True,
        text=True,
        env=environment,
        cwd=BASE_DIR,
        timeout=600,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "| sigkill-one | redis |" in result.stdout
    assert "Traceback" not in result.stderr
