import os
import shlex
import subprocess
import sys

from cron_descriptor import get_description
from crontab import CronTab
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django_celery_beat.models import PeriodicTask

from notifications.schedule import DAILY_SCAN_NAME, crontab_expression, daily_scan_task

MARKER = "renewly: daily reminders"
RELEASE_MARKER = "renewly: release deferred reminders"
# What the release PeriodicTask does every minute under Beat: reconcile what dead workers left
# sending, and send the reminders whose quiet hours or retry backoff are over, and those whose
# task was lost.
RELEASE_EXPRESSION = "* * * * *"
MARKERS = (MARKER, RELEASE_MARKER)


class Command(BaseCommand):
    help = (
        "Cron mode, for sites that cannot run Beat: install, remove or show the crontab entries "
        "that run `run_reminders` at the time of the daily scan's PeriodicTask and "
        "`run_reminders --release` every minute."
    )

    def add_arguments(self, parser):
        parser.add_argument("action", choices=["install", "remove", "show"])
        parser.add_argument(
            "--tabfile", help="edit this crontab file instead of the current user's crontab"
        )

    def handle(self, *args, action, tabfile, **options):
        cron = self._crontab(tabfile)
        ours = [job for marker in MARKERS for job in cron.find_comment(marker)]
        if action == "show":
            self._show(ours)
            return
        for marker in MARKERS:  # installing twice leaves one entry of each
            cron.remove_all(comment=marker)
        if action == "install":
            expression, zone = self._schedule()
            job = self._new_job(cron, expression, MARKER, "run_reminders")
            release = self._new_job(
                cron, RELEASE_EXPRESSION, RELEASE_MARKER, "run_reminders --release"
            )
            self.stdout.write(f"Installed: {job}")
            self.stdout.write(f"Schedule: {get_description(expression)} ({zone}).")
            self.stdout.write(f"Installed: {release}")
        else:
            self.stdout.write(f"Removed {len(ours)} entry(ies)." if ours else "Nothing to remove.")
        try:
            cron.write(tabfile) if tabfile else cron.write()
        except (OSError, subprocess.SubprocessError) as error:
            raise CommandError(f"cannot write {self._where(tabfile)}: {describe(error)}") from None

    def _new_job(self, cron: CronTab, expression: str, marker: str, arguments: str):
        job = cron.new(command=self._command(arguments), comment=marker)
        job.setall(expression)
        # cron starts jobs with an almost empty environment: hand over the configuration.
        for name in settings.ENVIRONMENT_NAMES:
            if name in os.environ:
                job.env[name] = os.environ[name]
        return job

    def _crontab(self, tabfile: str | None) -> CronTab:
        if tabfile is not None and os.path.isdir(tabfile):
            raise CommandError(f"--tabfile {tabfile}: is a directory; name a crontab file")
        try:
            if tabfile is None:
                return CronTab(user=True)
            return CronTab(tabfile=tabfile) if os.path.exists(tabfile) else CronTab(tab="")
        except (OSError, subprocess.SubprocessError, UnicodeDecodeError) as error:
            raise CommandError(f"cannot read {self._where(tabfile)}: {describe(error)}") from None

    def _where(self, tabfile: str | None) -> str:
        return f"--tabfile {tabfile}" if tabfile else "the current user's crontab"

    def _show(self, jobs) -> None:
        expression, zone = self._schedule()
        self.stdout.write(f"Schedule: {get_description(expression)} ({zone}), cron '{expression}'")
        if not jobs:
            self.stdout.write("No cron entry is installed (Beat runs the scan).")
        for job in jobs:
            self.stdout.write(f"Cron entry: {job}")

    def _schedule(self) -> tuple[str, str]:
        """The daily scan's crontab expression and its time zone, as the admin set them."""
        try:
            task = daily_scan_task()
        except PeriodicTask.DoesNotExist:
            raise CommandError(
                f"there is no PeriodicTask named {DAILY_SCAN_NAME!r}: run migrate"
            ) from None
        if task.crontab is None:
            raise CommandError("the daily scan's PeriodicTask has no crontab schedule")
        return crontab_expression(task.crontab), str(task.crontab.timezone)

    def _command(self, arguments: str) -> str:
        manage = settings.BASE_DIR / "manage.py"
        return (
            f"cd {shlex.quote(str(settings.BASE_DIR))} && "
            f"{shlex.quote(sys.executable)} {shlex.quote(str(manage))} {arguments} "
            f">> {shlex.quote(str(settings.VAR_DIR / 'cron.log'))} 2>&1"
        )


def describe(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
