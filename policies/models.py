from django.conf import settings
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from timezone_field import TimeZoneField

from policies.phones import PhoneField


class Agent(models.Model):
    """An insurance agent: a Django login plus the book of business (policies) they look after."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="agent"
    )
    # The address imports name the agent by; Django's own User.email is not unique.
    email = models.EmailField(unique=True)
    phone = PhoneField(blank=True, help_text="E.164, e.g. +14155550100.")

    class Meta:
        ordering = ["email"]
        constraints = [
            models.CheckConstraint(condition=Q(email=Lower("email")), name="agent_email_lowercase"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def name(self) -> str:
        return self.user.get_full_name() or self.user.get_username()


class Customer(models.Model):
    """A policyholder: who gets the reminders, where, in which language and local time."""

    name = models.CharField(max_length=200)
    email = models.EmailField(blank=True)
    phone = PhoneField(blank=True, help_text="E.164, e.g. +14155550100; empty when unknown.")
    language = models.CharField(
        max_length=8, choices=settings.LANGUAGES, default=settings.LANGUAGE_CODE
    )
    timezone = TimeZoneField(default=settings.TIME_ZONE, use_pytz=False)
    email_consent = models.BooleanField(
        default=True, help_text="The customer accepts reminders by email."
    )
    sms_consent = models.BooleanField(
        default=True, help_text="The customer accepts reminders by SMS."
    )
    email_undeliverable = models.BooleanField(
        default=False, help_text="Mail to this address bounced: no more reminders by email."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            # Imports find a customer by email, so one address is one customer.
            models.UniqueConstraint(
                fields=["email"], condition=~Q(email=""), name="customer_unique_email"
            ),
            models.CheckConstraint(
                condition=Q(email=Lower("email")), name="customer_email_lowercase"
            ),
            models.CheckConstraint(
                condition=Q(phone="") | Q(phone__startswith="+"), name="customer_phone_e164"
            ),
            models.CheckConstraint(
                condition=Q(language__in=[code for code, _ in settings.LANGUAGES]),
                name="customer_language_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name


class PolicyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    RENEWED = "renewed", "Renewed"
    CANCELLED = "cancelled", "Cancelled"
    LAPSED = "lapsed", "Lapsed"


class Policy(models.Model):
    Status = PolicyStatus

    policy_number = models.CharField(max_length=64, unique=True)
    product_line = models.CharField(
        max_length=64,
        help_text="Lower case, e.g. auto, home, life; reminder rules may scope to it.",
    )
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="policies")
    agent = models.ForeignKey(Agent, on_delete=models.PROTECT, related_name="policies")
    start_date = models.DateField()
    expiry_date = models.DateField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "policies"
        ordering = ["expiry_date", "policy_number"]
        permissions = [
            ("view_all_books", "Can see every agent's book in the workspace"),
            ("import_all_books", "Can upload policy files for every agent's book"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(expiry_date__gt=models.F("start_date")),
                name="policy_expiry_after_start",
            ),
            models.CheckConstraint(
                condition=Q(status__in=PolicyStatus.values),
                name="policy_status_valid",
            ),
        ]
        indexes = [
            # The daily scan: active policies whose expiry falls inside the reminder window.
            models.Index(
                fields=["expiry_date"],
                condition=Q(status=PolicyStatus.ACTIVE),
                name="policy_active_expiry",
            ),
            # ... and the policies changed since the last scan, whose reminders it re-examines.
            models.Index(fields=["updated_at"], name="policy_updated_at"),
        ]

    def __str__(self) -> str:
        return f"{self.policy_number} ({self.product_line}, expires {self.expiry_date})"


class ImportJobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class ImportJob(models.Model):
    """One policy CSV uploaded in the browser and imported by a worker. The database is where
    the upload page reads its progress and outcome; the file stays under UPLOADS_DIR until
    housekeeping purges it."""

    Status = ImportJobStatus

    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        related_name="import_jobs",
    )
    agent = models.ForeignKey(
        Agent,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="import_jobs",
        help_text="The agent whose book the file may change; empty: an admin's, all agents.",
    )
    original_name = models.CharField(max_length=255)
    stored_name = models.CharField(max_length=255, help_text="The file's path under UPLOADS_DIR.")
    size_bytes = models.PositiveBigIntegerField(default=0)
    file_purged_at = models.DateTimeField(null=True, blank=True)
    status = models.CharField(
        max_length=16, choices=ImportJobStatus.choices, default=ImportJobStatus.QUEUED
    )
    # Each run (the first and every re-run) has its number: a stale task of an earlier run
    # can neither claim the job nor write over the progress of the current one.
    attempt = models.PositiveSmallIntegerField(default=1)
    celery_task_id = models.CharField(max_length=64, blank=True)
    rows_total = models.PositiveIntegerField(null=True, blank=True)
    rows_done = models.PositiveIntegerField(default=0)
    created = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    unchanged = models.PositiveIntegerField(default=0)
    rejected = models.PositiveIntegerField(default=0)
    rejected_rows = models.JSONField(
        default=list, blank=True, help_text="[{line, policy_number, reason}, ...]"
    )
    error = models.TextField(blank=True, help_text="Why the job failed, for the uploader.")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="The running job's last sign of life."
    )
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ImportJobStatus.values), name="import_job_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(rows_total__isnull=True) | Q(rows_done__lte=models.F("rows_total")),
                name="import_job_done_within_total",
            ),
        ]
        indexes = [
            # An agent's own uploads page; housekeeping's finished jobs with a file to purge.
            models.Index(fields=["agent", "-created_at"], name="import_job_agent_recent"),
            models.Index(
                fields=["finished_at"],
                condition=Q(file_purged_at__isnull=True),
                name="import_job_file_kept",
            ),
        ]

    def __str__(self) -> str:
        return f"Import of {self.original_name} ({self.get_status_display()})"

    @property
    def finished(self) -> bool:
        return self.status in (ImportJobStatus.SUCCEEDED, ImportJobStatus.FAILED)
