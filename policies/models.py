import string
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone
from timezone_field import TimeZoneField

from policies import languages
from policies.phones import PhoneField

# What a renew link may name of its policy (notifications.rendering.renew_url fills them in).
RENEW_URL_FIELDS = ("policy_number", "agent_email", "product_line")


def validate_renew_url(template: str) -> None:
    """A link naming only {policy_number}, {agent_email} and {product_line}, as they are (no
    format spec, conversion, attribute or index: `{agent_email:>9999}` would write megabytes)."""
    problem = ValidationError(
        "A renew link may name only {policy_number}, {agent_email} and {product_line}, each as "
        "it is; write a literal brace as {{ or }}.",
        code="invalid_renew_url",
    )
    try:
        fields = [
            (name, spec, conversion)
            for _, name, spec, conversion in string.Formatter().parse(template)
            if name is not None
        ]
    except ValueError:
        raise problem from None
    if any(name not in RENEW_URL_FIELDS or spec or conversion for name, spec, conversion in fields):
        raise problem
    if urlsplit(template.format(**dict.fromkeys(RENEW_URL_FIELDS, "x"))).scheme not in (
        "https",
        "http",
        "mailto",
    ):
        raise ValidationError(
            "A renew link starts with https://, http:// or mailto:.", code="invalid_renew_url"
        )


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
        max_length=languages.MAX_LENGTH,
        default=settings.LANGUAGE_CODE,
        validators=[languages.validate_language],
        help_text="Any language tag, e.g. de, fr, pt-BR, as given. Reminders are written in it "
        "where a template has a translation, else in its base language, else the site's.",
    )
    timezone = TimeZoneField(default=settings.TIME_ZONE, use_pytz=False)
    email_consent = models.BooleanField(
        default=True, help_text="The customer accepts reminders by email."
    )
    sms_consent = models.BooleanField(
        default=True, help_text="The customer accepts reminders by SMS."
    )
    # Unlike email and SMS, WhatsApp needs an explicit opt-in (WhatsApp's business policy): off
    # until the customer asks for it, and each change is kept in the consent history.
    whatsapp_consent = models.BooleanField(
        default=False,
        help_text="The customer opted in to reminders on WhatsApp, at the number above.",
    )
    email_undeliverable = models.BooleanField(
        default=False, help_text="Mail to this address bounced: no more reminders by email."
    )
    # The number itself, not a flag: a new number (an import, the API, the admin) is not the
    # wrong one, so no writer of phones has to remember to clear anything.
    wrong_phone = PhoneField(
        blank=True,
        help_text="A number an agent's call found wrong: no SMS or WhatsApp goes to it while it "
        "is the customer's number.",
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
            # Any tag Babel knows (validated on the way in); never none.
            models.CheckConstraint(condition=~Q(language=""), name="customer_language_given"),
        ]

    def __str__(self) -> str:
        return f"{self.name} <{self.email}>" if self.email else self.name

    @property
    def phone_is_wrong(self) -> bool:
        return bool(self.phone) and self.phone == self.wrong_phone


class ProductLine(models.Model):
    """A kind of policy (auto, home, life ...) as customers read it: its name in their language
    and where to renew it. A policy names its line by code; an import adds the line of each new
    code, and an admin gives it names."""

    code = models.CharField(max_length=64, unique=True, help_text="As policies name it.")
    renew_url = models.CharField(
        max_length=500,
        blank=True,
        validators=[validate_renew_url],
        help_text="This line's renewal page, with {policy_number}, {agent_email} and "
        "{product_line} filled in. Empty: the site's RENEW_URL_TEMPLATE.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]
        constraints = [
            models.CheckConstraint(
                condition=Q(code=Lower("code")) & ~Q(code=""), name="product_line_code_lowercase"
            ),
        ]

    def __str__(self) -> str:
        return self.code

    def name_in(self, language: str) -> str:
        """The line's name for a reader of `language` (the same fallbacks as a template's
        words), or its code when it has none of them."""
        names = languages.by_language(self.names.all())
        chosen = languages.closest(language, names)
        return names[chosen].name if chosen in names else self.code


class ProductLineName(models.Model):
    product_line = models.ForeignKey(ProductLine, on_delete=models.CASCADE, related_name="names")
    language = languages.CanonicalLanguageField(
        help_text="Any language tag, e.g. de, pt-BR.",
    )
    name = models.CharField(
        max_length=100, help_text="As a customer reads it, e.g. car insurance, seguro de auto."
    )

    class Meta:
        ordering = ["language"]
        constraints = [
            models.UniqueConstraint(
                fields=["product_line", "language"], name="product_line_name_unique_language"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} [{self.language}]"


class PolicyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    RENEWED = "renewed", "Renewed"
    CANCELLED = "cancelled", "Cancelled"
    LAPSED = "lapsed", "Lapsed"


# Policies whose customer declined to renew the current term (Policy.renewal_declined_for).
RENEWAL_DECLINED = Q(renewal_declined_for=models.F("expiry_date"))


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
    # A date, not a status: the policy stays active (it still lapses at its expiry, and a
    # renewal still takes), and a new expiry leaves the declined term behind by itself.
    renewal_declined_for = models.DateField(
        null=True,
        blank=True,
        help_text="The customer told an agent they will not renew the term ending on this date: "
        "no more reminders about it.",
    )
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
            # An agent's policies about to expire, soonest first: their call list
            # (notifications.calls.needs_a_call) and upcoming expiries.
            models.Index(
                fields=["agent", "expiry_date"],
                condition=Q(status=PolicyStatus.ACTIVE),
                name="policy_active_agent_expiry",
            ),
            # ... and the policies changed since the last scan, whose reminders it re-examines.
            models.Index(fields=["updated_at"], name="policy_updated_at"),
            # The workspace dashboard's expiries per week, of every status but cancelled, read
            # from the index alone (1,000,000 policies: 90 ms -> 44 ms; make bench-reports).
            models.Index(fields=["expiry_date", "status"], name="policy_expiry_status"),
        ]

    def __str__(self) -> str:
        return f"{self.policy_number} ({self.product_line}, expires {self.expiry_date})"

    @property
    def renewal_declined(self) -> bool:
        """Whether the customer declined to renew the current term."""
        return self.renewal_declined_for == self.expiry_date

    def clean(self):
        # As imports write it: the code names a ProductLine, and rules scope to it.
        self.product_line = self.product_line.strip().lower()


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


class FeedKind(models.TextChoices):
    HTTPS = "https", "HTTPS URL"
    FOLDER = "folder", "Shared folder"


class FeedAuth(models.TextChoices):
    NONE = "none", "None"
    BASIC = "basic", "Basic (username and password)"
    BEARER = "bearer", "Bearer token"
    HEADER = "header", "Custom header"


def validate_feed_url(url: str) -> None:
    """Only HTTPS (plain HTTP where FEEDS_ALLOW_HTTP says so), and no credentials in the URL:
    they belong in the feed's write-only secret, where they stay out of logs and run logs."""
    parts = urlsplit(url)
    allowed = ("https", "http") if settings.FEEDS_ALLOW_HTTP else ("https",)
    if parts.scheme not in allowed:
        raise ValidationError("Only https:// addresses are accepted.")
    if parts.username or parts.password:
        raise ValidationError(
            "Put credentials in the feed's authentication fields, not in the address."
        )


def validate_file_pattern(pattern: str) -> None:
    if "/" in pattern or "\\" in pattern or pattern in {".", ".."}:
        raise ValidationError("A file name pattern, e.g. *.csv, without a folder.")


class Feed(models.Model):
    """A policy extract a policy administration system drops, fetched on its own schedule
    (policies.feeds): an HTTPS URL or a folder the workers share. It is imported through the CSV
    importer only when its content changed; each fetch is a FeedRun."""

    Kind = FeedKind
    Auth = FeedAuth

    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=8, choices=FeedKind.choices, default=FeedKind.HTTPS)
    url = models.URLField(
        max_length=2000,
        blank=True,
        validators=[validate_feed_url],
        help_text="HTTPS feeds: the extract's address, without credentials.",
    )
    path = models.CharField(
        max_length=500,
        blank=True,
        help_text="Folder feeds: a folder inside FEEDS_FOLDER_ROOT (absolute, or relative to it).",
    )
    pattern = models.CharField(
        max_length=100,
        default="*.csv",
        validators=[validate_file_pattern],
        help_text="Folder feeds: the newest complete file matching this is imported.",
    )
    auth = models.CharField(max_length=8, choices=FeedAuth.choices, default=FeedAuth.NONE)
    username = models.CharField(max_length=200, blank=True, help_text="Basic authentication.")
    header_name = models.CharField(
        max_length=100, blank=True, help_text="Custom header authentication, e.g. X-API-Key."
    )
    # The password, token or header value, Fernet-encrypted (policies.feeds); never shown.
    secret_encrypted = models.TextField(blank=True, editable=False)
    active = models.BooleanField(default=True, help_text="Fetched on its schedule.")
    # The schedule is this PeriodicTask's (one truth, editable here or under Periodic tasks).
    periodic_task = models.OneToOneField(
        "django_celery_beat.PeriodicTask",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="feed",
    )
    # What the last successful fetch saw: sent back as If-None-Match / If-Modified-Since, and the
    # hash of the content last imported.
    etag = models.CharField(max_length=500, blank=True, editable=False)
    last_modified = models.CharField(max_length=100, blank=True, editable=False)
    content_sha256 = models.CharField(max_length=64, blank=True, editable=False)
    consecutive_failures = models.PositiveIntegerField(default=0, editable=False)
    last_success_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(kind=FeedKind.HTTPS) & ~Q(url="") & Q(path=""))
                | (Q(kind=FeedKind.FOLDER) & ~Q(path="") & Q(url="") & Q(auth=FeedAuth.NONE)),
                name="feed_kind_has_its_location",
            ),
            models.CheckConstraint(condition=Q(auth__in=FeedAuth.values), name="feed_auth_valid"),
            models.CheckConstraint(
                condition=~Q(auth=FeedAuth.BASIC) | ~Q(username=""),
                name="feed_basic_auth_has_username",
            ),
            models.CheckConstraint(
                condition=~Q(auth=FeedAuth.HEADER) | ~Q(header_name=""),
                name="feed_header_auth_has_header_name",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        if self.kind == FeedKind.HTTPS:
            if not self.url:
                raise ValidationError({"url": "An HTTPS feed needs its address."})
            self.path = ""
        else:
            if not self.path:
                raise ValidationError({"path": "A folder feed needs its folder."})
            self.url, self.auth = "", FeedAuth.NONE
            try:
                feed_folder(self.path)
            except ValueError as error:
                raise ValidationError({"path": str(error)}) from None
        if self.auth == FeedAuth.BASIC and not self.username:
            raise ValidationError({"username": "Basic authentication needs a username."})
        if self.auth == FeedAuth.HEADER and not self.header_name:
            raise ValidationError({"header_name": "Name the header that carries the secret."})

    @property
    def has_secret(self) -> bool:
        return bool(self.secret_encrypted)


def feed_folder(path: str) -> Path:
    """The folder a folder feed names, resolved; refused (ValueError) outside
    FEEDS_FOLDER_ROOT, so that a feed reads only what the workers share for feeds."""
    root = Path(settings.FEEDS_FOLDER_ROOT).resolve()
    folder = (root / path).resolve()
    if not folder.is_relative_to(root):
        raise ValueError(f"The folder must be inside FEEDS_FOLDER_ROOT ({root}).")
    return folder


class FeedRunOutcome(models.TextChoices):
    RUNNING = "running", "Running"
    IMPORTED = "imported", "Imported"
    UNCHANGED = "unchanged", "Unchanged (same content)"
    NOT_MODIFIED = "not_modified", "Not modified (HTTP 304)"
    FAILED = "failed", "Failed"


class FeedRun(models.Model):
    """One fetch of a feed: what came, whether it was imported, and the importer's counts."""

    Outcome = FeedRunOutcome

    feed = models.ForeignKey(Feed, on_delete=models.CASCADE, related_name="runs")
    outcome = models.CharField(
        max_length=16, choices=FeedRunOutcome.choices, default=FeedRunOutcome.RUNNING
    )
    started_at = models.DateTimeField(default=timezone.now)
    heartbeat_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    file_name = models.CharField(
        max_length=255, blank=True, help_text="The file a folder feed picked."
    )
    size_bytes = models.PositiveBigIntegerField(default=0)
    content_sha256 = models.CharField(max_length=64, blank=True)
    rows_total = models.PositiveIntegerField(default=0)
    rows_created = models.PositiveIntegerField(default=0)
    rows_updated = models.PositiveIntegerField(default=0)
    rows_unchanged = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    rejected_rows = models.JSONField(
        default=list, blank=True, help_text="The first rejected: [{line, policy_number, reason}]"
    )
    error = models.TextField(blank=True, help_text="Why the run failed.")

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=FeedRunOutcome.values), name="feed_run_outcome_valid"
            ),
            # Beat's run and an admin's "Fetch now" never import the same feed at once.
            models.UniqueConstraint(
                fields=["feed"],
                condition=Q(outcome=FeedRunOutcome.RUNNING),
                name="feed_run_one_running",
            ),
        ]
        indexes = [
            # A feed's run log, newest first (the admin, the last run's status).
            models.Index(fields=["feed", "-started_at"], name="feed_run_feed_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.feed} at {self.started_at:%Y-%m-%d %H:%M}: {self.get_outcome_display()}"
