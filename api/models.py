from django.db import models
from django.db.models import Q
from rest_framework_api_key.models import AbstractAPIKey, BaseAPIKeyManager

from policies.models import Agent


class ApiKey(AbstractAPIKey):
    """An integration's key: hashed at rest (only its prefix is kept readable), shown once when
    made, revocable. It reaches every agent's book, or one agent's; it may write, or only
    read."""

    objects = BaseAPIKeyManager()

    agent = models.ForeignKey(
        Agent,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="api_keys",
        help_text="Only this agent's book; empty: every agent's.",
    )
    read_only = models.BooleanField(default=False, help_text="GET only.")

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"

    def __str__(self) -> str:
        scope = f"{self.agent.email}'s book" if self.agent_id else "all books"
        access = "read-only" if self.read_only else "read-write"
        revoked = ", revoked" if self.revoked else ""
        return f"{self.name} ({self.prefix}…, {scope}, {access}{revoked})"


class IdempotencyKeyState(models.TextChoices):
    IN_FLIGHT = "in_flight", "In flight"
    COMPLETED = "completed", "Completed"


class IdempotencyKey(models.Model):
    """A POST's Idempotency-Key (the IETF httpapi-idempotency-key draft, as Stripe implements
    it): the first request with it runs and its answer is stored; the same key again answers
    that, once it is complete. Kept IDEMPOTENCY_KEY_HOURS, then purged by housekeeping."""

    State = IdempotencyKeyState

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(
        max_length=64, help_text="SHA-256 of the method, path and body the key was first used on."
    )
    state = models.CharField(
        max_length=16, choices=IdempotencyKeyState.choices, default=IdempotencyKeyState.IN_FLIGHT
    )
    # An in-flight key whose request died with its process is taken over after this.
    locked_until = models.DateTimeField()
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["api_key", "key"], name="idempotency_key_once"),
            models.CheckConstraint(
                condition=Q(state__in=IdempotencyKeyState.values), name="idempotency_state_valid"
            ),
        ]
        indexes = [models.Index(fields=["created_at"], name="idempotency_key_created")]

    def __str__(self) -> str:
        return f"{self.key} ({self.get_state_display()})"
