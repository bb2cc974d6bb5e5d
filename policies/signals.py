"""What the domain tells the apps built on it, which it never imports (the reminder engine
records outcomes from them). Sent inside the transaction of the change, with Signal.send: what a
receiver records commits exactly when the change does."""

from django.dispatch import Signal

# An import moved policies' expiry dates later (a renewal, as the insurer's file tells it):
# renewals, a list of (policy id, old expiry date, new expiry date).
policies_renewed = Signal()
