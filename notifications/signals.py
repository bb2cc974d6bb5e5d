"""What the engine tells whoever watches it (ops counts these for /metrics). The engine sends
them and never depends on who listens."""

from django.dispatch import Signal

# A send went to a channel's provider, or failed before the provider could answer it:
# channel ("email", "sms"), provider ("postmark", "twilio", "outbox"...), outcome ("accepted",
# "transient_error", "permanent_error", or "error": neither, a bug or a misconfiguration) and
# seconds (how long the send took).
send_attempted = Signal()

# A provider's callback was answered: webhook (the URL's name, "twilio-status"...) and outcome
# ("accepted"; "refused": a missing or wrong signature or credentials; "invalid").
webhook_received = Signal()
