"""The policy commands refuse bad input with a message naming it and a non-zero exit, never a
traceback: through call_command (a CommandError) and through manage.py itself."""

import subprocess
import sys

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from policies.models import Policy
from tests.policies.test_importer import csv_text, row
from tests.workers import BASE_DIR, worker_environment

pytestmark = pytest.mark.django_db


@pytest.fixture
def good_csv(tmp_path, agent) -> str:
    path = tmp_path / "policies.csv"
    path.write_text(csv_text([row("P-1")]))
    return str(path)


def test_importing_a_directory_names_the_problem(tmp_path):
    with pytest.raises(CommandError, match=r": is a directory, not a CSV file$"):
        call_command("import_policies", str(tmp_path))


def test_importing_a_path_that_cannot_be_read_names_the_problem(good_csv):
    with pytest.raises(CommandError, match=r"cannot be read \(Not a directory\)"):
        call_command("import_policies", f"{good_csv}/inside")


@pytest.mark.parametrize(
    ("size", "reason"),
    [("0", "0 is not at least 1"), ("-5", "-5 is not at least 1"), ("ten", "'ten' is not a")],
)
def test_a_chunk_size_below_one_or_not_a_number_is_refused(good_csv, size, reason):
    with pytest.raises(CommandError, match=f"--chunk-size: {reason}"):
        call_command("import_policies", good_csv, "--chunk-size", size)
    assert Policy.objects.count() == 0


@pytest.mark.parametrize("day", ["2026-13-01", "2026-02-30", "20260301", "tomorrow"])
def test_seed_demo_refuses_a_day_that_is_not_a_date(day):
    with pytest.raises(CommandError, match=f"--today: '{day}' is not a date \\(expected YYYY"):
        call_command("seed_demo", "--today", day)
    assert Policy.objects.count() == 0


def manage(*args: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env=worker_environment(broker_url="filesystem://localhost/", var_dir=tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.django_db(transaction=True)
def test_manage_py_refuses_bad_input_with_no_traceback(tmp_path, agent):
    path = tmp_path / "policies.csv"
    path.write_text(csv_text([row("P-1")]))

    chunk = manage("import_policies", str(path), "--chunk-size", "0", tmp_path=tmp_path)
    folder = manage("import_policies", str(tmp_path), tmp_path=tmp_path)

    assert chunk.returncode == 2  # argparse's usage error
    assert "--chunk-size: 0 is not at least 1" in chunk.stderr
    assert folder.returncode == 1
    assert "is a directory, not a CSV file" in folder.stderr
    for result in (chunk, folder):
        assert "Traceback" not in result.stderr
    assert Policy.objects.count() == 0
