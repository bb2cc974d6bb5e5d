"""What the engine tells whoever watches it: ops counts sends and webhooks for /metrics, events
records changes in its outbox. The engine sends them and never depends on who listens."""

import logging

from django.dispatch import Signal

logger = logging.getLogger(__name__)

# A send went to a channel's provider, or failed before the provider could answer it:
# channel ("email", "sms"), provider ("postmark", "twilio", "outbox"...), outcome ("accepted",
# "transient_error", "permanent_error", or "error": neither, a bug or a misconfiguration) and
# seconds (how long the send took).
send_attempted = Signal()

# Recovery asked a provider about a send whose worker died or got no answer: channel,
# provider, outcome ("found", "not_found", "unavailable", "waiting", "resent_unverified").
reconciled = Signal()

# A provider's callback was answered: webhook (the URL's name, "twilio-status"...) and outcome
# ("accepted"; "refused": a missing or wrong signature or credentials; "invalid").
webhook_received = Signal()

# The four below are sent inside the transaction of the change they announce, with
# Signal.send, not `tell`: a receiver that fails rolls the change back, so that whatever a
# receiver records (events' outbox) commits exactly when the change does.

# Notifications moved to a status (lifecycle.move): ids (those that moved, no others) and to.
notifications_moved = Signal()

# Customers' consent to a channel changed (preferences.change_consent): customer_ids (those
# whose consent changed), channel, accepted (True: opted in), source (ConsentChange.Source),
# changed_by (who, where the source says: an API key's name).
consent_changed = Signal()

# Active policies lapsed (outcomes: the daily scan past their expiry, or the API): policy_ids.
policies_lapsed = Signal()

# Customers' email address bounced, and is undeliverable from now (tracking): customer_ids.
email_undeliverable = Signal()


def tell(signal: Signal, sender, **facts) -> None:
    """Send `signal` to its receivers; one that raises is logged, never let through: what is
    told (a message the provider accepted, say) must not change because a watcher broke."""
    for receiver, result in signal.send_robust(sender, **facts):
        if isinstance(result, Exception):
            logger.error("signal receiver %r failed", receiver, exc_info=result)
