import sys

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from policies.importers import COLUMNS, ImportFileError, UnknownAgents, import_policies
from policies.management.arguments import positive_int


class Command(BaseCommand):
    help = (
        "Create or update policies (and their customers) from a CSV file with the columns "
        + ",".join(COLUMNS)
        + ". Re-importing a file changes nothing; bad rows are reported and skipped."
    )

    def add_arguments(self, parser):
        parser.add_argument("path", help="the CSV file to import")
        parser.add_argument(
            "--chunk-size", type=positive_int, default=5000, help="rows per transaction (5000)"
        )
        parser.add_argument(
            "--unknown-agents",
            choices=UnknownAgents.values,
            help="a row naming an agent Renewly does not know: reject the row, or create the "
            "agent (with no usable password until an admin invites them); default: the "
            "IMPORT_UNKNOWN_AGENTS setting",
        )

    def handle(self, *args, path, chunk_size, unknown_agents, **options):
        with tqdm(total=0, unit="rows", desc="Importing", disable=not sys.stderr.isatty()) as bar:

            def show_progress(done: int, total: int) -> None:
                bar.total = total
                bar.update(done - bar.n)

            try:
                summary = import_policies(
                    path,
                    chunk_size=chunk_size,
                    progress=show_progress,
                    unknown_agents=unknown_agents,
                )
            except FileNotFoundError:
                raise CommandError(f"{path}: no such file") from None
            except IsADirectoryError:
                raise CommandError(f"{path}: is a directory, not a CSV file") from None
            except OSError as error:  # unreadable: permissions, an I/O error
                raise CommandError(f"{path}: cannot be read ({error.strerror})") from None
            except ImportFileError as error:
                raise CommandError(f"{path}: {error}; nothing was imported") from None

        for email in summary.agents_created:
            self.stdout.write(f"created agent {email} (no usable password until invited)")
        for rejected in summary.rejected:
            self.stderr.write(f"line {rejected.line}: {rejected.reason}")
        counts = summary.as_dict()
        self.stdout.write(
            "Imported {total} rows: {created} created, {updated} updated, "
            "{unchanged} unchanged, {rejected} rejected".format(**counts)
        )
