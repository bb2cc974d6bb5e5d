"""docker-compose.yml is checked by Debian's docker-compose, which validates the file's schema
(unknown keys included) with no Docker engine running."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.workers import BASE_DIR

SERVICES = {"postgres", "redis", "migrate", "web", "worker", "bulk-worker", "beat", "flower"}
REQUIRED = {
    "SECRET_KEY": "compose-check",
    "FLOWER_BASIC_AUTH": "ops:compose-check",
    "PUBLIC_BASE_URL": "https://renewly.example",
}


def compose(*args: str, compose_file: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    if shutil.which("docker-compose") is None:
        message = "docker-compose is not installed (make system-deps installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return subprocess.run(
        ["docker-compose", "-f", str(compose_file), *args],
        capture_output=True,
        text=True,
        # The stack's variables only as given: the test run's own (SECRET_KEY...) are not the .env.
        env={
            **{name: value for name, value in os.environ.items() if name not in REQUIRED},
            **(REQUIRED if env is None else env),
        },
        timeout=60,
    )


def test_compose_file_is_valid():
    result = compose("config", "-q", compose_file=BASE_DIR / "docker-compose.yml")
    assert result.returncode == 0, result.stderr


def test_compose_file_starts_the_whole_stack_with_health_checks():
    result = compose("config", "--services", compose_file=BASE_DIR / "docker-compose.yml")
    assert set(result.stdout.split()) == SERVICES
    text = (BASE_DIR / "docker-compose.yml").read_text()
    assert text.count("healthcheck:") == 7  # every long-running service


def test_compose_check_rejects_an_unknown_key(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    original = (BASE_DIR / "docker-compose.yml").read_text()
    broken.write_text(original.replace("\n  redis:\n", "\n  redis:\n    restart_policy: always\n"))
    result = compose("config", "-q", compose_file=broken)
    assert result.returncode != 0
    assert "restart_policy" in result.stderr


def service(name: str, env: dict | None = None) -> str:
    """The service's part of the resolved file: its lines, up to the next service's."""
    result = compose("config", compose_file=BASE_DIR / "docker-compose.yml", env=env)
    assert result.returncode == 0, result.stderr
    section = re.search(rf"^  {name}:\n((?:    .*\n)*)", result.stdout, re.MULTILINE)
    return section.group(1)


def test_web_health_check_asks_liveness_by_address():
    assert "http://127.0.0.1:8000/healthz" in service("web")


def test_flower_is_behind_basic_auth_from_the_environment_and_on_the_host_only():
    flower = service("flower")
    assert "FLOWER_BASIC_AUTH: ops:compose-check" in flower
    assert "CELERY_BROKER_URL: redis://redis:6379/0" in flower
    assert "127.0.0.1:5555:5555" in flower


@pytest.mark.parametrize("required", list(REQUIRED))
def test_the_stack_refuses_to_start_without_a_required_variable(required):
    without_it = {name: value for name, value in REQUIRED.items() if name != required}
    result = compose("config", "-q", compose_file=BASE_DIR / "docker-compose.yml", env=without_it)
    assert result.returncode != 0
    assert required in result.stderr


@pytest.mark.parametrize("name", ["web", "worker", "bulk-worker", "beat"])
def test_web_worker_and_beat_build_links_and_check_twilio_against_public_base_url(name):
    assert "PUBLIC_BASE_URL: https://renewly.example" in service(name)


def test_web_is_published_on_the_hosts_loopback_only_by_default():
    assert "    ports:\n    - 127.0.0.1:8000:8000/tcp\n" in service("web")


def test_https_settings_reach_the_app_from_the_environment():
    behind_proxy = {
        **REQUIRED,
        "SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
        "SECURE_SSL_REDIRECT": "1",
        "SECURE_HSTS_SECONDS": "3600",
    }
    web = service("web", env=behind_proxy)
    assert "SECURE_PROXY_SSL_HEADER: X-Forwarded-Proto" in web
    assert "SECURE_SSL_REDIRECT: '1'" in web
    assert "SECURE_HSTS_SECONDS: '3600'" in web
    defaults = service("worker")
    assert "SECURE_SSL_REDIRECT: '0'" in defaults
    assert "SECURE_COOKIES: '1'" in defaults


def test_reminders_and_long_jobs_have_workers_of_their_own():
    assert "    - --queues=celery\n" in service("worker")
    assert "    - --queues=celery-bulk\n" in service("bulk-worker")


def test_an_installation_sharing_the_broker_names_both_its_queues_after_its_own():
    shared = {**REQUIRED, "CELERY_TASK_DEFAULT_QUEUE": "renewly-acme"}
    for name, queue in [("worker", "renewly-acme"), ("bulk-worker", "renewly-acme-bulk")]:
        resolved = service(name, env=shared)
        assert f"    - --queues={queue}\n" in resolved
        # Each process derives the same long-jobs queue from the same variable (config/queues.py).
        assert "CELERY_TASK_DEFAULT_QUEUE: renewly-acme\n" in resolved
