import base64
import secrets
import uuid

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from policies.models import Customer


class EventType(models.TextChoices):
    """What Renewly tells other systems. Adding a type is one line here: a notification's move
    to status `x` is announced as "notification.x" whenever that type is listed (events.
    receivers); other types need the one line that records them. Stored without `choices`, so
    a new type needs no migration."""

    NOTIFICATION_SENT = "notification.sent", "A reminder was accepted by its provider"
    NOTIFICATION_DELIVERED = "notification.delivered", "A reminder was delivered"
    NOTIFICATION_FAILED = "notification.failed", "A reminder failed"
    NOTIFICATION_BOUNCED = "notification.bounced", "A reminder email bounced"
    CUSTOMER_OPTED_OUT = "customer.opted_out", "A customer refused a channel"
    CUSTOMER_OPTED_IN = "customer.opted_in", "A customer accepted a channel again"
    POLICY_UNREACHABLE = "policy.unreachable", "No channel is left to remind a customer"
    POLICY_LAPSED = "policy.lapsed", "A policy ran out without a renewal"


def new_secret() -> str:
    """A signing secret in Standard Webhooks' form: "whsec_" and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


def validate_secret(value: str) -> None:
    try:
        key = base64.b64decode(value.removeprefix("whsec_"), validate=True)
    except ValueError:
        key = b""
    if len(key) < 24:
        raise ValidationError('A secret is "whsec_" and at least 24 bytes in base64.')


def validate_event_types(value) -> None:
    if not isinstance(value, list) or not set(value) <= set(EventType.values):
        raise ValidationError(f"Choose among {', '.join(EventType.values)}.")


class Subscription(models.Model):
    """An insurer's system that wants some types of events, POSTed to its URL and signed with
    its secret (Standard Webhooks). One that fails for too long is disabled (active off, with
    the reason), and the admins are told."""

    name = models.CharField(max_length=100, unique=True)
    url = models.URLField(max_length=500, help_text="Where events are POSTed, as JSON.")
    secret = models.CharField(
        max_length=100,
        default=new_secret,
        validators=[validate_secret],
        help_text="The receiver verifies each request with it. Copy it now: once saved, it is "
        "never shown again.",
    )
    # A JSON list rather than an ArrayField: the demo runs on SQLite.
    event_types = models.JSONField(
        default=list, validators=[validate_event_types], help_text="The event types it gets."
    )
    active = models.BooleanField(
        default=True, help_text="Off: it gets no new events, and what waits is not sent."
    )
    disabled_reason = models.TextField(blank=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    consecutive_failures = models.PositiveIntegerField(
        default=0, help_text="Attempts failed since its last success."
    )
    failing_since = models.DateTimeField(
        null=True, blank=True, help_text="The first failed attempt since its last success."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(active=False) | Q(disabled_at__isnull=True),
                name="subscription_active_not_disabled",
            ),
        ]

    def __str__(self) -> str:
        state = "" if self.active else " (off)"
        return f"{self.name} → {self.url}{state}"

    def clean(self):
        if self.active:  # switched on again by hand: no longer disabled
            self.disabled_at, self.disabled_reason = None, ""

    @property
    def masked_secret(self) -> str:
        return f"{self.secret[:9]}…" if self.secret else ""


class Event(models.Model):
    """The outbox: one change, written in the transaction of the change itself, so that an
    event exists exactly when its change committed. Its id is its `sequence`, increasing with
    time: two changes of one notification, or of one customer's consent, are serialized by
    their rows' locks, so their sequence is the order they happened in."""

    type = models.CharField(max_length=64)  # an EventType value; see EventType on `choices`
    uid = models.UUIDField(default=uuid.uuid4, editable=False, help_text="Its webhook-id.")
    customer = models.ForeignKey(
        Customer, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    data = models.JSONField(help_text="Plain values, the payload's `data`.")
    # An event that must happen once only (policy.unreachable: once per policy and expiry).
    once_key = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["type", "once_key"], condition=~Q(once_key=""), name="event_once"
            ),
        ]
        # Housekeeping's purge of old events, oldest first.
        indexes = [models.Index(fields=["created_at"], name="event_created")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.type} at {self.created_at:%Y-%m-%d %H:%M:%S}"

    @property
    def webhook_id(self) -> str:
        """The same for every attempt and every subscription: receivers drop replays by it."""
        return f"evt_{self.uid.hex}"

    def payload(self) -> dict:
        return {
            "id": self.webhook_id,
            "type": self.type,
            "created_at": self.created_at.isoformat(),
            "sequence": self.pk,
            "data": self.data,
        }


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERING = "delivering", "Delivering"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class Delivery(models.Model):
    """One event for one subscription, moved only through events.lifecycle. A worker claims it
    (delivering) until `claimed_until`: one that died leaves it to be claimed again after that,
    and the receiver gets it again with the same webhook-id (at least once)."""

    Status = DeliveryStatus

    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="deliveries")
    # No constraint in the database: a process that has not yet reread the subscriptions may
    # still write a delivery for one just deleted, and that must not roll its change back.
    # Such a delivery is never claimed (due() joins active subscriptions), and purged.
    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="deliveries", db_constraint=False
    )
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(
        null=True, blank=True, help_text="Pending: not tried before this time."
    )
    claim = models.UUIDField(null=True, blank=True, help_text="Delivering: the worker's claim.")
    claimed_until = models.DateTimeField(
        null=True, blank=True, help_text="Delivering: claimed again by another after this."
    )
    failing_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Its first failed attempt: tried again until EVENTS_RETRY_FOR_HOURS later.",
    )
    last_error = models.TextField(blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    status_changed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["event", "subscription"], name="delivery_once"),
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="delivery_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status=DeliveryStatus.DELIVERING) | Q(claimed_until__isnull=False),
                name="delivery_claim_expires",
            ),
        ]
        indexes = [
            # What is due (events.delivery.due): pending and its time come, or claimed by a
            # worker that died.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="delivery_pending",
            ),
            models.Index(
                fields=["claimed_until"],
                condition=Q(status="delivering"),
                name="delivery_claimed",
            ),
            models.Index(fields=["subscription", "status"], name="delivery_subscription"),
        ]

    def __str__(self) -> str:
        return f"{self.event.type} #{self.event_id} to {self.subscription.name} ({self.status})"


class DeliveryAttempt(models.Model):
    """One POST of a delivery and what came back: the admin lists them under the delivery."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    attempted_at = models.DateTimeField(default=timezone.now)
    succeeded = models.BooleanField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField()
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True, help_text="No answer: why (refused, timed out...).")

    class Meta:
        ordering = ["-attempted_at", "-id"]

    def __str__(self) -> str:
        outcome = self.status_code or self.error or "no answer"
        return f"Attempt at {self.attempted_at:%Y-%m-%d %H:%M:%S}: {outcome}"
