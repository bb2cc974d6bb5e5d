from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "ops"
    verbose_name = "Operations"

    def ready(self):
        from notifications import signals
        from ops import metrics

        # What the engine tells, counted for /metrics in every process that sends or answers.
        signals.send_attempted.connect(metrics.count_send, dispatch_uid="ops.metrics.count_send")
        signals.reconciled.connect(
            metrics.count_reconciliation, dispatch_uid="ops.metrics.count_reconciliation"
        )
        signals.webhook_received.connect(
            metrics.count_webhook_request, dispatch_uid="ops.metrics.count_webhook_request"
        )
