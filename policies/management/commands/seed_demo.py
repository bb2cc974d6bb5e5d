from django.core.management.base import BaseCommand
from django.utils import timezone

from policies.demo import DEMO_PASSWORD, seed_demo
from policies.management.arguments import iso_date


class Command(BaseCommand):
    help = "Create demo agents, an admin login and a few hundred policies around a demo day."

    def add_arguments(self, parser):
        parser.add_argument(
            "--today",
            type=iso_date,
            default=None,
            help="the demo day (YYYY-MM-DD); expiry dates are placed around it. Default: today.",
        )

    def handle(self, *args, today, **options):
        today = today or timezone.localdate()
        summary = seed_demo(today=today)
        counts = summary.as_dict()
        self.stdout.write(
            f"Demo data for {today}: {counts['created']} policies created, "
            f"{counts['updated']} updated, {counts['unchanged']} unchanged."
        )
        self.stdout.write(
            f"Logins (password '{DEMO_PASSWORD}'): admin, and agents alice, bruno, chen."
        )
