from django.apps import AppConfig


class EventsConfig(AppConfig):
    """Events out: what happened to reminders and consent, written in the same transaction as
    the change and delivered, signed, to the insurer's systems (imports policies and
    notifications)."""

    name = "events"
    verbose_name = "Events to other systems"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from events import outbox, receivers
        from events.models import Subscription
        from notifications import signals

        signals.notifications_moved.connect(receivers.notifications_moved, dispatch_uid="events")
        signals.consent_changed.connect(receivers.consent_changed, dispatch_uid="events")
        signals.email_undeliverable.connect(receivers.email_undeliverable, dispatch_uid="events")
        signals.policies_lapsed.connect(receivers.policies_lapsed, dispatch_uid="events")
        for changed in (post_save, post_delete):
            changed.connect(outbox.forget_subscribers, sender=Subscription, dispatch_uid="events")
