"""The migrations say what the models say, in one line of history: a model change without its
migration, or two branches' migrations that both follow the same one, fails here, not at
deploy time."""

from io import StringIO

from django.core.management import call_command


def test_every_model_change_has_its_migration_and_the_history_has_one_leaf(db):
    out = StringIO()
    # Exits non-zero on a missing migration; raises CommandError on conflicting leaves.
    call_command("makemigrations", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()
