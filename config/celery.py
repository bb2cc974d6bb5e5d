import os

from celery import Celery
from kombu.transport import TRANSPORT_ALIASES

# filesystem:// means the embedded broker's transport, in every connection of every process
# (a broker URL given on the command line too); any other URL keeps kombu's own.
TRANSPORT_ALIASES["filesystem"] = "config.broker:Transport"

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("renewly")
# Every Celery setting is a CELERY_* Django setting, read from the environment in settings.py.
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
