"""`manage.py check --deploy` passes, warnings included, under the production configuration the
README documents ("Deploying behind HTTPS"): the very lines of its example, in a fresh process."""

import os
import re
import secrets
import subprocess
import sys

from tests.workers import BASE_DIR

README = BASE_DIR / "README.md"


def documented_production_environment() -> dict[str, str]:
    section = README.read_text().split("### Deploying behind HTTPS", 1)[1]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL).group(1)
    environment = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    assert environment["SECRET_KEY"].startswith("<")  # a placeholder, never a real key
    environment["SECRET_KEY"] = secrets.token_urlsafe(50)
    return {**environment, "DEBUG": "0"}  # as docker-compose.yml sets it


def check_deploy(tmp_path, environment: dict[str, str]) -> subprocess.CompletedProcess:
    # Nothing of the test run's own environment (DEBUG, DJANGO_ALLOW_ASYNC_UNSAFE from the
    # browser tests...): production has only what it was given.
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=BASE_DIR,
        env={"PATH": os.environ["PATH"], "RENEWLY_VAR_DIR": str(tmp_path), **environment},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_deploy_passes_under_the_documented_production_settings(tmp_path):
    result = check_deploy(tmp_path, documented_production_environment())

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_without_the_https_settings(tmp_path):
    environment = {
        name: value
        for name, value in documented_production_environment().items()
        if not name.startswith("SECURE_")
    }

    result = check_deploy(tmp_path, environment)

    assert result.returncode != 0
    assert "security.W004" in result.stderr  # HSTS
    assert "security.W008" in result.stderr  # the redirect to HTTPS
