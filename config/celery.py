import os

from celery import Celery, signals
from kombu.transport import TRANSPORT_ALIASES

# filesystem:// means the embedded broker's transport, in every connection of every process
# (a broker URL given on the command line too); any other URL keeps kombu's own.
TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("renewly")
# Every Celery setting is a CELERY_* Django setting, read from the environment in settings.py.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@signals.task_prerun.connect
@signals.task_postrun.connect
def close_broken_database_connections(sender=None, **_signal_arguments) -> None:
    """Each task starts, and ends, on database connections that work: one the database dropped
    (a restart, a failover) is closed, to be opened again on first use, as Django does around
    every request. Celery's own fixup closes them only every CELERY_DB_REUSE_MAX tasks, and a
    worker thread would otherwise fail every task on its dead connection."""
    from django.db import close_old_connections

    if not getattr(sender.request, "is_eager", False):  # run in place: the caller's connection
        close_old_connections()
