"""docker-compose.yml is checked by Debian's docker-compose, which validates the file's schema
(unknown keys included) with no Docker engine running."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.workers import BASE_DIR

SERVICES = {"postgres", "redis", "migrate", "web", "worker", "beat"}


def compose(*args: str, compose_file: Path) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        message = "docker-compose is not installed (make system-deps installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run(
        ["docker-compose", "-f", str(compose_file), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "SECRET_KEY": "compose-check"},
        timeout=60,
    )


def test_compose_file_is_valid():
    result = compose("config", "-q", compose_file=BASE_DIR / "docker-compose.yml")
    assert result.returncode == 0, result.stderr


def test_compose_file_starts_the_whole_stack_with_health_checks():
    result = compose("config", "--services", compose_file=BASE_DIR / "docker-compose.yml")
    assert set(result.stdout.split()) == SERVICES
    text = (BASE_DIR / "docker-compose.yml").read_text()
    assert text.count("healthcheck:") == 5  # every long-running service


def test_compose_check_rejects_an_unknown_key(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    original = (BASE_DIR / "docker-compose.yml").read_text()
    broken.write_text(original.replace("\n  redis:\n", "\n  redis:\n    restart_policy: always\n"))
    result = compose("config", "-q", compose_file=broken)
    assert result.returncode != 0
    assert "restart_policy" in result.stderr
