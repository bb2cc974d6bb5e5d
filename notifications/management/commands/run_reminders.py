import time

from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from notifications.models import ReminderRun
from notifications.selectors import SUMMARY_COLUMNS, in_flight_count, run_summary
from notifications.tasks import daily_scan, release_reminders
from policies.management.arguments import iso_date, positive_seconds


class Command(BaseCommand):
    help = (
        "Run one daily reminder cycle exactly as Beat does: send the daily scan through the "
        "broker to the workers. With --wait, wait until every reminder is on its way or waiting "
        "(quiet hours, a retry's backoff), then summarise. With --release, do what the release "
        "PeriodicTask does instead (cron mode runs it every minute)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--date",
            dest="run_date",
            type=iso_date,
            default=None,
            help="the run date (YYYY-MM-DD); default: today in TIME_ZONE",
        )
        parser.add_argument("--wait", action="store_true", help="wait and print a summary")
        parser.add_argument(
            "--release",
            action="store_true",
            help="send the reminders whose quiet hours or retry backoff are over, and those "
            "whose task was lost, instead of the daily scan",
        )
        parser.add_argument(
            "--timeout",
            type=positive_seconds,
            default=600,
            help="seconds --wait waits at most (600)",
        )

    def handle(self, *args, run_date, wait, release, timeout, **options):
        if release:
            if run_date or wait:
                raise CommandError("--release takes neither --date nor --wait")
            result = release_reminders.delay()
            self.stdout.write(
                f"Sent the release of waiting reminders to the workers ({result.id})."
            )
            return
        run_date = run_date or timezone.localdate()
        result = daily_scan.delay(run_date.isoformat())
        self.stdout.write(f"Sent the daily scan for {run_date} to the workers (task {result.id}).")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        try:
            scan = result.get(timeout=timeout, interval=0.5)
        except CeleryTimeoutError:
            raise CommandError(
                f"No worker ran the scan within {timeout:.0f} s: is a Celery worker consuming "
                f"{settings.CELERY_BROKER_URL}?"
            ) from None
        run = ReminderRun.objects.get(pk=scan["run_id"])
        while in_flight_count(run) and time.monotonic() < deadline:
            time.sleep(0.5)
        self._print_summary(run, scan)
        if in_flight_count(run):
            raise CommandError(f"Some reminders were still on their way after {timeout:.0f} s.")

    def _print_summary(self, run: ReminderRun, scan: dict) -> None:
        summary = run_summary(run)
        columns = list(SUMMARY_COLUMNS)
        self.stdout.write("")
        self.stdout.write(
            f"Reminders for {run.run_date}: {scan['planned']} planned, {scan['skipped']} skipped "
            f"(catch-up), {scan['cancelled']} cancelled (policy changed), "
            f"{scan['enqueued']} sent to the workers."
        )
        self.stdout.write("")
        self.stdout.write(f"{'channel':<9}" + "".join(f"{column:>11}" for column in columns))
        for channel, counts in summary.items():
            self.stdout.write(f"{channel:<9}" + "".join(f"{counts[c]:>11}" for c in columns))
        totals = {c: sum(counts[c] for counts in summary.values()) for c in columns}
        self.stdout.write(f"{'total':<9}" + "".join(f"{totals[c]:>11}" for c in columns))
        if settings.EMAIL_BACKEND == "notifications.channels.outbox.EmailBackend":
            self.stdout.write(f"\nEmail written to {settings.OUTBOX_DIR / 'email'}")
        if settings.SMS_BACKEND == "outbox":
            self.stdout.write(f"SMS written to {settings.OUTBOX_DIR / 'sms'}")
