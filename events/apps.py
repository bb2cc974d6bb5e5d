from django.apps import AppConfig


class EventsConfig(AppConfig):
    """Events out: what happened to reminders and consent, written in the same transaction as
    the change and delivered, signed, to the insurer's systems (imports policies and
    notifications)."""

    name = "events"
    verbose_name = "Events to other systems"
