from django.apps import AppConfig
from django.db.models.signals import post_delete


class PoliciesConfig(AppConfig):
    name = "policies"
    verbose_name = "Policies"

    def ready(self):
        from policies import feeds
        from policies.models import Feed

        # A deleted feed (one or a bulk delete) takes its PeriodicTask with it.
        post_delete.connect(feeds.delete_schedule, sender=Feed, dispatch_uid="feed_schedule")
