"""The operator's commands: cron mode for sites without Beat, and run_reminders' answer when no
worker is listening."""

import subprocess
import sys
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule

from notifications.models import Notification
from notifications.schedule import DAILY_SCAN_NAME, daily_scan_task
from tests.factories import queue_an_email_and_an_sms
from tests.workers import BASE_DIR, worker_environment

pytestmark = pytest.mark.django_db


def cron(*args: str, capsys) -> str:
    call_command("reminders_cron", *args)
    return capsys.readouterr().out


def test_the_daily_scan_is_a_periodic_task_at_eight_by_default():
    task = daily_scan_task()
    assert task.name == DAILY_SCAN_NAME
    assert task.task == "notifications.tasks.daily_scan"
    assert task.enabled
    assert (task.crontab.minute, task.crontab.hour) == ("0", "8")
    assert task.crontab.human_readable.startswith("At 08:00 AM")


def test_show_describes_the_schedule_in_words(tmp_path, capsys):
    out = cron("show", "--tabfile", str(tmp_path / "crontab"), capsys=capsys)
    assert "At 08:00 AM" in out
    assert "No cron entry is installed" in out


def test_installing_twice_leaves_one_entry_at_the_periodic_tasks_time(tmp_path, capsys):
    tabfile = tmp_path / "crontab"
    cron("install", "--tabfile", str(tabfile), capsys=capsys)
    cron("install", "--tabfile", str(tabfile), capsys=capsys)
    jobs = [line for line in tabfile.read_text().splitlines() if "run_reminders" in line]
    assert len(jobs) == 2
    assert jobs[0].startswith("0 8 * * * ")
    assert "renewly: daily reminders" in jobs[0]
    # Without Beat, what waits in the database (quiet hours, a retry's backoff) is released
    # every minute, as the release PeriodicTask would.
    assert jobs[1].startswith("* * * * * ")
    assert "run_reminders --release" in jobs[1]


def test_the_cron_entry_follows_the_schedule_an_admin_edited(tmp_path, capsys):
    task = daily_scan_task()
    task.crontab = CrontabSchedule.objects.create(minute="30", hour="6", timezone="Europe/Madrid")
    task.save()
    tabfile = tmp_path / "crontab"
    out = cron("install", "--tabfile", str(tabfile), capsys=capsys)
    assert "At 06:30 AM (Europe/Madrid)" in out
    assert any(line.startswith("30 6 * * * ") for line in tabfile.read_text().splitlines())


def test_the_cron_entry_carries_the_configuration(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://renewly@db.internal/renewly")
    tabfile = tmp_path / "crontab"
    cron("install", "--tabfile", str(tabfile), capsys=capsys)
    assert "DATABASE_URL=postgres://renewly@db.internal/renewly" in tabfile.read_text()


def test_remove_takes_the_entry_out_and_keeps_other_jobs(tmp_path, capsys):
    tabfile = tmp_path / "crontab"
    tabfile.write_text("15 3 * * * /usr/bin/backup\n")
    cron("install", "--tabfile", str(tabfile), capsys=capsys)
    out = cron("remove", "--tabfile", str(tabfile), capsys=capsys)
    assert "Removed 2" in out
    assert tabfile.read_text().strip() == "15 3 * * * /usr/bin/backup"


def test_cron_mode_without_the_periodic_task_says_to_migrate(tmp_path):
    daily_scan_task().delete()
    with pytest.raises(CommandError, match="run migrate"):
        call_command("reminders_cron", "show", "--tabfile", str(tmp_path / "crontab"))


@pytest.mark.django_db(transaction=True)
def test_run_reminders_waiting_with_no_worker_says_so(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "run_reminders", "--wait", "--timeout", "2"],
        cwd=BASE_DIR,
        env=worker_environment(broker_url="filesystem://localhost/", var_dir=tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "No worker ran the scan within 2 s" in result.stderr


@pytest.mark.usefixtures("eager_tasks")
def test_run_reminders_release_sends_what_waited_out_its_backoff(outbox, capsys):
    waiting = queue_an_email_and_an_sms("pat@mail.example", "+14155550100")["email"]
    Notification.objects.filter(pk=waiting.pk).update(
        status=Notification.Status.DEFERRED, send_after=timezone.now() - timedelta(seconds=1)
    )

    call_command("run_reminders", "--release")

    assert "Sent the release of waiting reminders" in capsys.readouterr().out
    assert Notification.objects.get(pk=waiting.pk).status == Notification.Status.SENT
    assert (outbox / "email" / f"notification-{waiting.pk}.eml").exists()


# --- Bad input: a message naming it and a non-zero exit, never a traceback --------------------


def test_installing_into_a_tabfile_that_is_a_directory_names_the_problem(tmp_path):
    with pytest.raises(CommandError, match="is a directory; name a crontab file"):
        call_command("reminders_cron", "install", "--tabfile", str(tmp_path))


def test_installing_where_the_tabfile_cannot_be_written_names_the_problem(tmp_path):
    where = tmp_path / "no-such-folder" / "crontab"
    with pytest.raises(CommandError, match=f"cannot write --tabfile {where}: No such file"):
        call_command("reminders_cron", "install", "--tabfile", str(where))


def test_a_tabfile_that_cannot_be_read_names_the_problem(tmp_path):
    not_text = tmp_path / "crontab"
    not_text.write_bytes(b"\xff\xfe0 8 * * * run\n")
    with pytest.raises(CommandError, match=f"cannot read --tabfile {not_text}: 'utf-8' codec"):
        call_command("reminders_cron", "show", "--tabfile", str(not_text))


def test_an_unknown_cron_action_is_refused(tmp_path):
    with pytest.raises(CommandError, match="invalid choice: 'reinstall'"):
        call_command("reminders_cron", "reinstall", "--tabfile", str(tmp_path / "crontab"))


@pytest.mark.parametrize(
    ("args", "reason"),
    [
        (["--date", "2026-02-30"], "--date: '2026-02-30' is not a date (expected YYYY-MM-DD)"),
        (["--date", "03/01/2026"], "--date: '03/01/2026' is not a date"),
        (["--timeout", "0"], "--timeout: '0' is not a number of seconds above 0"),
        (["--timeout", "-1"], "--timeout: '-1' is not a number of seconds above 0"),
        (["--timeout", "nan"], "--timeout: 'nan' is not a number of seconds above 0"),
        (["--timeout", "soon"], "--timeout: 'soon' is not a number of seconds"),
        (["--release", "--wait"], "--release takes neither --date nor --wait"),
    ],
)
def test_run_reminders_refuses_bad_arguments_before_sending_anything(args, reason):
    with pytest.raises(CommandError) as refused:
        call_command("run_reminders", *args)
    assert reason in str(refused.value)


@pytest.mark.django_db(transaction=True)
def test_cron_mode_on_a_directory_through_manage_py_exits_non_zero_without_a_traceback(
    tmp_path,
):
    result = subprocess.run(
        [sys.executable, "manage.py", "reminders_cron", "install", "--tabfile", str(tmp_path)],
        cwd=BASE_DIR,
        env=worker_environment(broker_url="filesystem://localhost/", var_dir=tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "is a directory; name a crontab file" in result.stderr
    assert "Traceback" not in result.stderr
