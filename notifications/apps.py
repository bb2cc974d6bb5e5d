from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    name = "notifications"
    verbose_name = "Notifications"

    def ready(self):
        from celery.signals import worker_init, worker_process_init

        # webhooks: connects anymail's tracking signal on import.
        from notifications import dispatch, leases, outcomes, webhooks  # noqa: F401
        from policies import signals

        signals.policies_renewed.connect(outcomes.imported_renewals, dispatch_uid="outcomes")

        # Each worker process sends on threads of its own: the main process of a solo or
        # threads pool (worker_init), each child of a prefork pool (worker_process_init).
        # Each renews its worker lease on a heartbeat thread, for as long as it lives.
        for started in (worker_init, worker_process_init):
            started.connect(dispatch.start_send_threads, dispatch_uid=f"send-threads-{started}")
            started.connect(leases.start_heartbeat, dispatch_uid=f"lease-heartbeat-{started}")
