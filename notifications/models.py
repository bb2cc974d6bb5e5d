from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Length
from django.db.models.lookups import Exact
from django.utils import timezone

from notifications.templating import AVAILABLE
from notifications.templating import validate as valid_template
from policies import languages
from policies.models import Customer, Policy


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    SMS = "sms", "SMS"
    # Opt-in only: nothing goes by WhatsApp without the customer's recorded consent.
    WHATSAPP = "whatsapp", "WhatsApp"


TEMPLATE_HELP = (
    "Django template syntax with {% if %}, {% firstof %} and the formatting filters, e.g. "
    '{{ expiry_date|date:"j F Y" }}. Available: '
    + AVAILABLE
    + ". expiry_date is a date; expiry_date_text is it written out, and days_left_text is "
    '"today", "tomorrow" or "in 3 days", both in the language of the words they go into; '
    "policy.product_name is the product line's name in it (its code when it has none)."
)


class MessageTemplate(models.Model):
    """The words of a reminder on one channel; rules point at a template. Its own text is in
    the default language (LANGUAGE_CODE); translations add the others. A digest template
    writes one message for several reminders of a customer due together (one per channel)."""

    class Kind(models.TextChoices):
        REMINDER = "reminder", "Reminder (one policy)"
        DIGEST = "digest", "Digest (several policies due together)"

    name = models.CharField(max_length=100, unique=True)
    channel = models.CharField(max_length=8, choices=Channel.choices)
    kind = models.CharField(
        max_length=8,
        choices=Kind.choices,
        default=Kind.REMINDER,
        db_default=Kind.REMINDER,
        help_text="A digest lists its policies with {% for policy in policies %}; rules use "
        "reminder templates, and a channel has at most one digest template.",
    )
    subject = models.CharField(
        max_length=200,
        blank=True,
        validators=[valid_template],
        help_text="Email only. The same syntax as the body.",
    )
    body = models.TextField(
        validators=[valid_template],
        help_text=f"The plain-text body (the whole SMS; for WhatsApp, the approved content's "
        f"words, for previews: what is sent is its Content SID and variables). {TEMPLATE_HELP}",
    )
    html_body = models.TextField(
        blank=True,
        validators=[valid_template],
        help_text="Email only, optional: the HTML body. Values are HTML-escaped for you.",
    )

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values), name="template_channel_valid"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["reminder", "digest"]), name="template_kind_valid"
            ),
            # Sending picks the channel's digest template with no choice to make.
            models.UniqueConstraint(
                fields=["channel"],
                condition=Q(kind="digest"),
                name="template_one_digest_per_channel",
            ),
        ]

    def __str__(self) -> str:
        digest = ", digest" if self.kind == self.Kind.DIGEST else ""
        return f"{self.name} ({self.get_channel_display()}{digest})"

    def clean(self):
        if self.channel != Channel.EMAIL and (self.subject or self.html_body):
            raise ValidationError(
                f"{self.get_channel_display()} has no subject and no HTML body; leave them empty."
            )
        if self.channel == Channel.EMAIL and not self.subject:
            raise ValidationError({"subject": "An email needs a subject."})
        if self.kind == self.Kind.DIGEST and self.channel == Channel.WHATSAPP:
            raise ValidationError(
                {"kind": "WhatsApp sends one policy's approved content: it has no digest."}
            )

    def in_language(self, language: str) -> "Words":
        """The words for a customer who reads `language`, and why those: its translation in
        that language, else in the broadest language it belongs to (pt-BR: pt), else the
        template's own, in the site's default language (policies.languages.fallbacks)."""
        translations = languages.by_language(self.translations.all())
        default = languages.canonical(settings.LANGUAGE_CODE)
        # The template's own words are the default language's, unless a translation says
        # otherwise.
        chosen = languages.closest(language, [default, *translations])
        return Words(translations.get(chosen, self), chosen, _why(language, chosen))


@dataclass(frozen=True)
class Words:
    """A template's words chosen for one customer: the text, its language, and the reason."""

    text: "TemplateText"
    language: str
    why: str


def _why(wanted: str, chosen: str) -> str:
    try:
        asked = languages.canonical(wanted)
    except languages.UnknownLanguage:
        return f"{wanted!r} is not a language tag: the default language, {chosen}"
    if asked == chosen:
        return f"the customer's language, {chosen}"
    if chosen in languages.broader(asked):
        return f"no translation in {asked}: {chosen}, the language it belongs to"
    return f"no translation in {asked} or a language it belongs to: the default language, {chosen}"


class TemplateTranslation(models.Model):
    """A template's words in another language than the default."""

    template = models.ForeignKey(
        MessageTemplate, on_delete=models.CASCADE, related_name="translations"
    )
    language = languages.CanonicalLanguageField(
        help_text="Any language tag, e.g. de, fr, pt-BR (pt-BR customers get a pt translation "
        "when there is no pt-BR one).",
    )
    subject = models.CharField(max_length=200, blank=True, validators=[valid_template])
    body = models.TextField(validators=[valid_template], help_text=TEMPLATE_HELP)
    html_body = models.TextField(blank=True, validators=[valid_template])

    class Meta:
        ordering = ["language"]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "language"], name="template_translation_unique_language"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.template.name} [{self.language}]"


# What rendering reads from a template or a translation.
TemplateText = MessageTemplate | TemplateTranslation

# Twilio's Content SIDs: "HX" and 32 hex digits (Twilio error 21655 otherwise).
content_sid_valid = RegexValidator(
    r"^HX[0-9a-fA-F]{32}$", "A Content SID is HX followed by 32 hex digits, as Twilio shows it."
)


class WhatsAppContent(models.Model):
    """A WhatsApp template's approved content in one language. WhatsApp takes business-initiated
    messages only as content Meta approved beforehand: Renewly sends its Content SID and fills
    its numbered variables ({{1}}, {{2}}...) with the reminder's values, never free text."""

    template = models.ForeignKey(
        MessageTemplate, on_delete=models.CASCADE, related_name="whatsapp_contents"
    )
    language = languages.CanonicalLanguageField(
        help_text="Any language tag the content is approved in, e.g. es, pt-BR.",
    )
    content_sid = models.CharField(
        "Content SID",
        max_length=34,
        validators=[content_sid_valid],
        help_text="The approved content's SID in Twilio's Content Template Builder (HX...).",
    )
    variables = models.TextField(
        blank=True,
        help_text="One line per variable of the content, in order: line 1 fills {{1}}, line 2 "
        "{{2}}... Each is written like the template, e.g. {{ customer.name }} or {{ expiry_date|"
        'date:"d/m/Y" }}. ' + "Available: " + AVAILABLE + ".",
    )

    class Meta:
        verbose_name = "WhatsApp content"
        ordering = ["language"]
        constraints = [
            models.UniqueConstraint(
                fields=["template", "language"], name="whatsapp_content_unique_language"
            ),
            models.CheckConstraint(
                condition=Q(content_sid__startswith="HX") & Exact(Length("content_sid"), 34),
                name="whatsapp_content_sid_shape",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.template.name} [{self.language}]: {self.content_sid}"

    def clean(self):
        if self.template_id and self.template.channel != Channel.WHATSAPP:
            raise ValidationError({"template": "Only a WhatsApp template has approved content."})
        for number, line in enumerate(self.variable_lines(), start=1):
            try:
                valid_template(line)
            except ValidationError as error:
                raise ValidationError(
                    {"variables": f"Variable {{{{{number}}}}}: {' '.join(error.messages)}"}
                ) from None
        # Recovery tells a message Twilio accepted by its variables: two reminders of one
        # customer due the same day differ only by their policy's number.
        if not any("policy.policy_number" in line for line in self.variable_lines()):
            raise ValidationError(
                {
                    "variables": "One variable must be {{ policy.policy_number }}: the message "
                    "names its policy, and a lost worker's send is found by it."
                }
            )

    def variable_lines(self) -> list[str]:
        """Each variable's template, in order; blank lines are not variables."""
        return [line.strip() for line in self.variables.splitlines() if line.strip()]


# The channels a rule of each channel may fall back to, when its reminder fails for good.
FALLBACK_CHANNELS = {
    Channel.SMS: (Channel.EMAIL,),
    Channel.WHATSAPP: (Channel.SMS, Channel.EMAIL),
}


class ReminderRule(models.Model):
    """Send a reminder on `channel` `lead_days` before a policy expires. Admins edit these; the
    next daily scan uses whatever is here, with no restart."""

    lead_days = models.PositiveSmallIntegerField(
        help_text="Days before the expiry date the reminder is due."
    )
    channel = models.CharField(max_length=8, choices=Channel.choices)
    product_line = models.CharField(
        max_length=64, blank=True, help_text="Only policies of this product line; empty: all."
    )
    template = models.ForeignKey(MessageTemplate, on_delete=models.PROTECT, related_name="rules")
    fallback_template = models.ForeignKey(
        MessageTemplate,
        on_delete=models.PROTECT,
        related_name="fallback_rules",
        null=True,
        blank=True,
        help_text="When the reminder fails for good, send this template instead: an SMS rule falls "
        "back to email, a WhatsApp rule to SMS or email. A WhatsApp rule's fallback also goes in "
        "its place to a customer WhatsApp cannot reach (no opt-in, no number).",
    )
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-lead_days", "channel", "product_line"]
        constraints = [
            models.UniqueConstraint(
                fields=["lead_days", "channel", "product_line"], name="rule_unique_lead_channel"
            ),
            models.CheckConstraint(
                condition=Q(lead_days__gte=1, lead_days__lte=365), name="rule_lead_days_range"
            ),
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values), name="rule_channel_valid"
            ),
            models.CheckConstraint(
                condition=Q(product_line=models.functions.Lower("product_line")),
                name="rule_product_line_lowercase",
            ),
        ]

    def __str__(self) -> str:
        scope = self.product_line or "all products"
        return f"{self.lead_days} days before expiry by {self.get_channel_display()} ({scope})"

    def clean(self):
        errors = {}
        if self.template_id and self.template.channel != self.channel:
            errors["template"] = f"Choose an {self.get_channel_display()} template."
        elif self.template_id and self.template.kind != MessageTemplate.Kind.REMINDER:
            errors["template"] = "Choose a reminder template: digests are sent on their own."
        if self.fallback_template_id:
            allowed = FALLBACK_CHANNELS.get(self.channel, ())
            if not allowed:
                errors["fallback_template"] = "An email rule has no fallback."
            elif self.fallback_template.channel not in allowed:
                errors["fallback_template"] = (
                    "Choose an email template to fall back to."
                    if allowed == (Channel.EMAIL,)
                    else "Choose an SMS or email template to fall back to."
                )
            elif self.fallback_template.kind != MessageTemplate.Kind.REMINDER:
                errors["fallback_template"] = "Choose a reminder template to fall back to."
        # Its running experiment's variants are words for its channel: planning sends them.
        if (
            self.pk
            and TemplateVariant.objects.filter(
                experiment__rule_id=self.pk, experiment__ended_at__isnull=True
            )
            .exclude(template__channel=self.channel)
            .exists()
        ):
            errors["channel"] = (
                "This rule runs an experiment whose variants are words for another channel: "
                "end it before changing the channel."
            )
        if errors:
            raise ValidationError(errors)

    def template_for(self, channel: str) -> MessageTemplate:
        """The rule's own template, or its fallback's for a reminder that fell back."""
        return self.template if channel == self.channel else self.fallback_template

    @property
    def fallback_channel(self) -> str | None:
        return self.fallback_template.channel if self.fallback_template_id else None

    @property
    def stands_in_when_unreachable(self) -> bool:
        """Whether the fallback also goes, in the rule's place, to a customer its channel cannot
        reach at all. Only for WhatsApp: it is opt-in, so most customers have not opted in, and
        the rule is the insurer's reminder at that lead time for them too. A customer who
        refused SMS refused texts; an SMS rule's email fallback stays for failures."""
        return self.channel == Channel.WHATSAPP and self.fallback_template_id is not None


ONE_RUNNING_EXPERIMENT = "This rule runs an experiment already: end it first."


class TemplateExperiment(models.Model):
    """A trial of two or more wordings of one rule's reminder: each policy gets one variant,
    chosen by its id and the weights (notifications.experiments.variant_for), and keeps it
    across scans. Ending it stops new reminders getting a variant; what was sent keeps its
    variant, and the results stay readable."""

    rule = models.ForeignKey(ReminderRule, on_delete=models.PROTECT, related_name="experiments")
    name = models.CharField(max_length=100)
    started_at = models.DateTimeField(default=timezone.now)
    ended_at = models.DateTimeField(null=True, blank=True)
    counted_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When its results were last counted (the daily scan); empty: not yet.",
    )

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            # Planning asks one question of a rule: which experiment is running on it.
            models.UniqueConstraint(
                fields=["rule"],
                condition=Q(ended_at__isnull=True),
                name="experiment_one_running_per_rule",
                violation_error_message=ONE_RUNNING_EXPERIMENT,
            ),
            models.CheckConstraint(
                condition=Q(ended_at__isnull=True) | Q(ended_at__gt=F("started_at")),
                name="experiment_ends_after_start",
                violation_error_message="An experiment ends after it started.",
            ),
        ]

    def __str__(self) -> str:
        state = "running" if self.ended_at is None else "ended"
        return f"{self.name} ({state})"

    @property
    def is_running(self) -> bool:
        return self.ended_at is None


class TemplateVariant(models.Model):
    """One wording in an experiment: its template, sent to a share of the policies in
    proportion to its weight."""

    experiment = models.ForeignKey(
        TemplateExperiment, on_delete=models.CASCADE, related_name="variants"
    )
    label = models.CharField(max_length=20, help_text='A short name for results, e.g. "A".')
    template = models.ForeignKey(MessageTemplate, on_delete=models.PROTECT, related_name="variants")
    weight = models.PositiveIntegerField(
        default=1, help_text="Its share of the policies: weights 1 and 1 split them evenly."
    )

    class Meta:
        ordering = ["experiment_id", "label"]
        constraints = [
            models.UniqueConstraint(
                fields=["experiment", "label"],
                name="variant_unique_label",
                violation_error_message="Each variant of an experiment needs its own label.",
            ),
            models.CheckConstraint(
                condition=Q(weight__gt=0),
                name="variant_weight_positive",
                violation_error_message="A weight is a whole number of at least 1.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.label}: {self.template.name}"


class ExperimentTally(models.Model):
    """A variant's figures in one agent's book, counted by the daily scan
    (notifications.experiments.tally): the results page adds up these few rows instead of
    reading an experiment's reminders and outcomes, which a long one on a large book has by
    the million."""

    variant = models.ForeignKey(TemplateVariant, on_delete=models.CASCADE, related_name="tallies")
    agent = models.ForeignKey("policies.Agent", on_delete=models.CASCADE, related_name="+")
    delivered = models.PositiveIntegerField(help_text="Its reminders delivered.")
    decided = models.PositiveIntegerField(
        help_text="Of the terms they reached: renewed or lapsed by then."
    )
    renewed = models.PositiveIntegerField(help_text="Of those: renewed on or before the expiry.")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["variant", "agent"], name="experiment_tally_once"),
            models.CheckConstraint(
                condition=Q(renewed__lte=F("decided"), decided__lte=F("delivered")),
                name="experiment_tally_counts_nest",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.variant} in {self.agent}'s book: {self.renewed}/{self.decided}"


class NotificationStatus(models.TextChoices):
    PLANNED = "planned", "Planned"
    QUEUED = "queued", "Queued"
    SENDING = "sending", "Sending"
    DEFERRED = "deferred", "Deferred"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    BOUNCED = "bounced", "Bounced"
    CANCELLED = "cancelled", "Cancelled"
    SKIPPED = "skipped", "Skipped"


# What an agent still has to watch: not sent yet, or failed and worth a retry. The workspace
# lists these, through the partial index below that holds exactly them.
PENDING_FOR_AGENTS = (
    NotificationStatus.PLANNED,
    NotificationStatus.QUEUED,
    NotificationStatus.SENDING,
    NotificationStatus.DEFERRED,
    NotificationStatus.FAILED,
)


class WorkerLease(models.Model):
    """A process that sends, alive for as long as it renews this lease (every few seconds, in
    the database's own time). A notification it claimed holds the lease while it is sending; a
    sending notification whose lease lapsed lost its worker, and is reconciled with the
    provider before anything else happens to it (notifications.recovery)."""

    name = models.CharField(max_length=200, help_text="host and process id")
    started_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        return f"{self.name} (until {self.expires_at:%H:%M:%S})"


class Digest(models.Model):
    """One message that carried several reminders of one customer on one channel, due together.
    Written before the message goes, with what it says to whom: recovery asks the provider about
    this message once, for all its reminders (a worker may die mid-send), never sending it
    twice. Each reminder points at the one message it went in (Notification.digest)."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="digests")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    to = models.CharField(max_length=254)
    subject = models.CharField(max_length=255, blank=True)
    body = models.TextField(help_text="As sent: what Twilio's copy is matched by in recovery.")
    provider_message_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values), name="digest_channel_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} digest {self.pk} to {self.to}"


class Notification(models.Model):
    """One reminder for one policy's expiry on one channel at one lead time. Its natural key is
    unique in the database, so no scan, however repeated or concurrent, plans it twice."""

    Status = NotificationStatus

    # Every index costs each planned row its insert (planning writes millions on a first scan):
    # policy and run have none of their own, the natural key and notification_run lead with them.
    policy = models.ForeignKey(
        Policy, on_delete=models.CASCADE, related_name="notifications", db_index=False
    )
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="notifications")
    rule = models.ForeignKey(ReminderRule, on_delete=models.PROTECT, related_name="notifications")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    expiry_date = models.DateField(help_text="The policy's expiry date this reminder is about.")
    lead_days = models.PositiveSmallIntegerField()
    due_on = models.DateField(help_text="Expiry date minus lead days.")
    run = models.ForeignKey(
        "ReminderRun",
        on_delete=models.PROTECT,
        related_name="notifications",
        help_text="The daily scan that planned it.",
        db_index=False,
    )
    status = models.CharField(
        max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PLANNED
    )
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.TextField(blank=True)
    provider_message_id = models.CharField(max_length=255, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    status_changed_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    fallback_for = models.OneToOneField(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="fallback",
        help_text="The failed reminder (SMS, WhatsApp) this one was sent in place of.",
    )
    send_after = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Deferred (quiet hours, or backing off after a provider error): not sent "
        "before this time.",
    )
    lease = models.ForeignKey(
        WorkerLease,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_index=False,  # only sending notifications hold one: see the partial index below
        related_name="held_notifications",
        help_text="Sending: the worker that claimed it. Cleared when it leaves sending.",
    )
    no_answer = models.BooleanField(
        default=False,
        db_default=False,  # planning inserts its rows in bulk, past the ORM
        help_text="Sending: its send got no answer (a timeout, a reset). Recovery asks the "
        "provider; a send again counts against the retry budget, unlike one after a worker died.",
    )
    recover_after = models.DateTimeField(
        null=True,
        blank=True,
        help_text="Sending, its worker gone: not reconciled with the provider before this time "
        "(the provider could not answer, or has no lookup and callbacks may still come).",
    )
    failing_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When the first transient provider error of its current retry budget came: "
        "it is retried until the channel's budget has passed since (notifications.retries).",
    )
    digest = models.ForeignKey(
        Digest,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        db_index=False,  # most reminders go alone: see the partial index below
        related_name="notifications",
        help_text="The one message it went in with other reminders due together; empty when "
        "it went (or goes) on its own.",
    )
    variant = models.ForeignKey(
        TemplateVariant,
        # Ending an experiment keeps its history: a variant that was sent cannot be deleted.
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        db_index=False,  # few reminders are in an experiment: see the partial index below
        related_name="notifications",
        help_text="The experiment's wording it was sent in, which replaces the rule's template; "
        "empty when its rule ran no experiment.",
    )
    failed_transiently = models.BooleanField(
        default=False,
        db_default=False,  # planning inserts its rows in bulk, past the ORM
        help_text="Failed because transient provider errors outlasted its retry budget: worth "
        "sending again once the provider is back (the admin's outage retry).",
    )

    class Meta:
        ordering = ["-due_on", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "expiry_date", "channel", "lead_days"],
                name="notification_natural_key",
            ),
            models.CheckConstraint(
                condition=Q(status__in=NotificationStatus.values), name="notification_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(channel__in=Channel.values), name="notification_channel_valid"
            ),
        ]
        indexes = [
            # The scan's re-enqueue of stalled work, and the fan-out of what was planned.
            models.Index(
                fields=["status", "status_changed_at"],
                condition=Q(status__in=["planned", "queued", "sending", "deferred"]),
                name="notification_in_flight",
            ),
            models.Index(fields=["run", "channel", "status"], name="notification_run"),
            models.Index(
                fields=["lease"], condition=Q(lease__isnull=False), name="notification_lease"
            ),
            # A digest's reminders: tracking and recovery apply one message's news to all.
            models.Index(
                fields=["digest"], condition=Q(digest__isnull=False), name="notification_digest"
            ),
            models.Index(
                fields=["provider_message_id"],
                condition=~Q(provider_message_id=""),
                name="notification_provider_id",
            ),
            # The agents' pending notices, soonest due first, a page at a time: walked in order
            # and stopped after a page (first page of a 100,000-notice book: 169 ms -> 4 ms).
            models.Index(
                fields=["due_on", "id"],
                condition=Q(status__in=PENDING_FOR_AGENTS),
                name="notification_pending_due",
            ),
            # A term's last reminder delivered or failed for good: the agents' call list
            # (notifications.calls.needs_a_call), read from the index alone for each policy.
            models.Index(
                fields=["policy", "expiry_date", "-status_changed_at", "status"],
                condition=Q(status__in=["delivered", "failed", "bounced"]),
                name="notification_settled_by_term",
            ),
            # The dashboard's counts by due week and status (workspace.selectors.dashboard),
            # read from the index alone; an agent's through policy_id (a 250,000-notification
            # book: 106-134 ms -> 32 ms; see make bench-reports).
            models.Index(fields=["due_on", "status", "policy"], name="notification_due_status"),
            # An experiment's results: its variants' delivered reminders and the terms they
            # went about, read from the index alone (notifications.experiments.results).
            models.Index(
                fields=["variant", "policy", "expiry_date", "delivered_at"],
                condition=Q(variant__isnull=False),
                name="notification_variant",
            ),
            # The admin's outage retry: the few that gave up on provider errors, by when.
            models.Index(
                fields=["status_changed_at"],
                condition=Q(failed_transiently=True),
                name="notification_gave_up",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.get_channel_display()} reminder for {self.policy.policy_number}, "
            f"{self.lead_days} days before {self.expiry_date} ({self.get_status_display()})"
        )

    @property
    def template(self) -> MessageTemplate:
        """The template its words come from: its experiment variant's when it has one (only a
        reminder on its rule's own channel does), else its rule's, or the rule's fallback for a
        reminder sent in place of another."""
        if self.variant_id is not None:
            return self.variant.template
        return self.rule.template_for(self.channel)


class DeliveryEvent(models.Model):
    """One thing a provider told us about a message, in one normalized shape whatever the
    provider: Twilio's status callbacks and anymail's tracking events both land here."""

    class Type(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        DELIVERED = "delivered", "Delivered"
        DEFERRED = "deferred", "Deferred"
        BOUNCED = "bounced", "Bounced"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"
        UNDELIVERED = "undelivered", "Undelivered"
        COMPLAINED = "complained", "Complained"
        UNSUBSCRIBED = "unsubscribed", "Unsubscribed"
        OPENED = "opened", "Opened"
        READ = "read", "Read"  # WhatsApp's read receipt: delivered, and opened
        CLICKED = "clicked", "Clicked"
        UNKNOWN = "unknown", "Unknown"
        # Not a provider's callback: Renewly asked the provider about a send whose worker died.
        RECONCILED = "reconciled", "Reconciled with the provider"

    notification = models.ForeignKey(
        Notification, on_delete=models.CASCADE, related_name="events", null=True, blank=True
    )
    provider = models.CharField(max_length=32)
    event_type = models.CharField(max_length=16, choices=Type.choices)
    provider_event_id = models.CharField(
        max_length=255, help_text="The provider's id of this event: a replay has the same."
    )
    provider_message_id = models.CharField(max_length=255, blank=True)
    occurred_at = models.DateTimeField()
    received_at = models.DateTimeField(auto_now_add=True)
    error_code = models.CharField(max_length=32, blank=True)
    reason = models.TextField(blank=True)
    raw_payload = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["occurred_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["provider", "provider_event_id"], name="delivery_event_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.provider} {self.event_type} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"


class ReminderRun(models.Model):
    """One daily scan: what it planned, and when it finished. The next scan plans what fell due
    since the last finished one, so a scan that died is made up for by the next."""

    run_date = models.DateField()
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    planned = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    enqueued = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["finished_at", "run_date"], name="reminder_run_finished")]

    def __str__(self) -> str:
        state = "finished" if self.finished_at else "running"
        return f"Scan for {self.run_date} ({state}: {self.planned} planned)"


class ClaimedEmail(models.Model):
    """An email sent once, whatever the runs (notifications.claimed_emails): the weekly
    report's, an agent's morning call list. Set by the run that claims the sending, before it
    sends: a second run sends nothing. A claim never confirmed by emailed_at (its worker died,
    its send got no answer) is reconciled with the email provider by the next run before
    anything is sent again."""

    email_claimed_at = models.DateTimeField(null=True, blank=True)
    email_lease = models.ForeignKey(
        WorkerLease,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The worker sending it; a claim whose lease lapsed is reconciled first.",
    )
    emailed_at = models.DateTimeField(null=True, blank=True)
    emailed_to = models.TextField(blank=True)
    email_error = models.TextField(blank=True)

    class Meta:
        abstract = True


class WeeklyReport(ClaimedEmail):
    """One agent's week (Monday to Sunday in TIME_ZONE), or every agent's for admins (no
    agent): what their reminders did, and which policies expire soon with no delivered reminder.
    Stored once per agent and week, as figures here and a CSV and an SVG chart under
    REPORTS_DIR; emailed once."""

    agent = models.ForeignKey(
        "policies.Agent",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="weekly_reports",
        help_text="Empty: the report on all agents, for admins.",
    )
    week_start = models.DateField(help_text="The Monday the week begins.")
    planned = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    delivered = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    opted_out = models.PositiveIntegerField(
        default=0, help_text="Customers of the book who refused a channel in the week."
    )
    expiring_undelivered = models.PositiveIntegerField(
        default=0, help_text="Policies expiring in the 30 days after the week, none delivered."
    )
    retention_terms = models.PositiveIntegerField(
        default=0, help_text="Terms decided that expired in the 13 weeks to the week's end."
    )
    retention_renewed = models.PositiveIntegerField(
        default=0, help_text="Of them, renewed on or before their expiry."
    )
    csv_name = models.CharField(max_length=255, help_text="The CSV's path under REPORTS_DIR.")
    chart_name = models.CharField(max_length=255, help_text="The SVG's path under REPORTS_DIR.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-week_start", "agent_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["agent", "week_start"],
                condition=Q(agent__isnull=False),
                name="weekly_report_once_per_agent",
            ),
            # NULLs are distinct in a unique index: the all-agents report needs its own.
            models.UniqueConstraint(
                fields=["week_start"],
                condition=Q(agent__isnull=True),
                name="weekly_report_once_for_all_agents",
            ),
        ]

    def __str__(self) -> str:
        return f"Week of {self.week_start}: {self.agent or 'all agents'}"


class HousekeepingRun(models.Model):
    """One run of the daily clean-up, and what it removed. Notifications and their delivery
    timeline are never removed; old events only lose their raw provider payload."""

    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    task_results_deleted = models.PositiveIntegerField(default=0)
    uploads_purged = models.PositiveIntegerField(default=0)
    payloads_cleared = models.PositiveIntegerField(default=0)
    idempotency_keys_deleted = models.PositiveIntegerField(default=0)
    events_deleted = models.PositiveIntegerField(
        default=0, help_text="Events to other systems that every subscriber received."
    )
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self) -> str:
        state = "finished" if self.finished_at else "running"
        return f"Housekeeping {self.started_at:%Y-%m-%d %H:%M} ({state})"


class ConsentChange(models.Model):
    """When and how a customer's consent to a channel changed: what a customer or a regulator
    may ask to see. preferences.change_consent writes one for each change, whatever its source."""

    class Source(models.TextChoices):
        PREFERENCES_PAGE = "preferences_page", "Preferences page"
        ONE_CLICK = "one_click", "One-click unsubscribe (email client)"
        SMS_REPLY = "sms_reply", "Replied STOP or START by SMS"
        WHATSAPP_REPLY = "whatsapp_reply", "Replied STOP or START on WhatsApp"
        CARRIER = "carrier", "The carrier reported an opt-out (Twilio 21610)"
        COMPLAINT = "complaint", "Marked a reminder as spam"
        EMAIL_PROVIDER = "email_provider", "Unsubscribed through the email provider"
        ADMIN = "admin", "Changed by staff in the admin (at the customer's request)"
        API = "api", "Changed by another system through the integration API"

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="consent_changes")
    channel = models.CharField(max_length=8, choices=Channel.choices)
    accepted = models.BooleanField(help_text="Whether the customer accepts the channel from now.")
    source = models.CharField(max_length=32, choices=Source.choices)
    changed_by = models.CharField(
        max_length=200, blank=True, help_text="Who, where the source says: the API key's name."
    )
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        indexes = [models.Index(fields=["customer", "-changed_at"], name="consent_change_customer")]

    def __str__(self) -> str:
        verb = "accepted" if self.accepted else "refused"
        return f"{self.customer} {verb} {self.get_channel_display()} ({self.get_source_display()})"


class InboundMessage(models.Model):
    """An SMS a customer sent us, recorded once by Twilio's MessageSid. Twilio signs no
    timestamp, so a captured signed request stays valid forever: the unique SID is what makes
    a replayed START (or STOP) do nothing. Kept for good; deleting one would let its replay in."""

    message_sid = models.CharField(max_length=64, unique=True)
    sender = models.CharField(max_length=32, help_text="The customer's number, as Twilio sent it.")
    keyword = models.CharField(
        max_length=16, blank=True, help_text="The opt-out or opt-in word it was, if any."
    )
    received_at = models.DateTimeField(
        help_text="When Renewly received it: a consent change recorded later wins over it."
    )
    customers_changed = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-received_at", "-id"]

    def __str__(self) -> str:
        return f"{self.keyword or 'SMS'} from {self.sender} ({self.message_sid})"


class CircuitBreaker(models.Model):
    """A channel's provider as the senders see it: closed (sending), open (paused after a run
    of transient errors: its reminders wait in the database) or probing (one send is finding
    out whether it answers again). One row per channel and provider, changed only by
    conditional UPDATEs (notifications.circuit), so that concurrent workers agree on it."""

    class State(models.TextChoices):
        CLOSED = "closed", "Closed: sending"
        OPEN = "open", "Open: paused, waiting to probe"
        PROBING = "probing", "Probing: one send is trying"

    channel = models.CharField(max_length=8, choices=Channel.choices)
    provider = models.CharField(max_length=32, help_text='"postmark", "smtp", "twilio"...')
    state = models.CharField(max_length=8, choices=State.choices, default=State.CLOSED)
    consecutive_failures = models.PositiveIntegerField(
        default=0, help_text="Transient errors since the provider last answered."
    )
    last_error = models.TextField(blank=True)
    opened_at = models.DateTimeField(null=True, blank=True, help_text="When it was paused.")
    probe_interval_seconds = models.PositiveIntegerField(
        default=0, help_text="How long it waits before the next probe; doubles at each failure."
    )
    next_probe_at = models.DateTimeField(null=True, blank=True)
    probe_notification = models.ForeignKey(
        Notification,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="Probing: the one notification whose send is the probe.",
    )
    probe_started_at = models.DateTimeField(null=True, blank=True)
    changed_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["channel", "provider"]
        constraints = [
            models.UniqueConstraint(fields=["channel", "provider"], name="circuit_breaker_once"),
            models.CheckConstraint(
                condition=Q(state__in=["closed", "open", "probing"]),
                name="circuit_breaker_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_channel_display()} through {self.provider}: {self.state}"


class Reach(models.TextChoices):
    """Which channels reached a customer about one expiry (a delivered reminder). WhatsApp goes
    to the same phone as SMS: both count as the phone."""

    NONE = "none", "None delivered"
    EMAIL = "email", "Email only"
    PHONE = "phone", "SMS or WhatsApp only"
    BOTH = "both", "Email and phone"


class PolicyOutcome(models.Model):
    """How one term of a policy ended: renewed (by whom, how long before its expiry) or lapsed,
    with the reminders about that expiry that went out before it, and the last one delivered
    (the touch the renewal may owe to). The policy's timeline shows it among its reminders.
    One per policy, term and kind: recording it again changes nothing. A lapsed policy renewed
    late has both."""

    class Kind(models.TextChoices):
        RENEWED = "renewed", "Renewed"
        LAPSED = "lapsed", "Lapsed"

    class Source(models.TextChoices):
        AGENT = "agent", "An agent, in the workspace"
        API = "api", "The integration API"
        IMPORT = "import", "A policy import"
        SCAN = "scan", "The daily scan"

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="outcomes")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    source = models.CharField(max_length=8, choices=Source.choices)
    expiry_date = models.DateField(help_text="The expiry the term ran to.")
    new_expiry_date = models.DateField(null=True, blank=True, help_text="Renewed: the new one.")
    occurred_at = models.DateTimeField()
    days_before_expiry = models.IntegerField(
        help_text="From the day it happened to the expiry; negative: after the expiry."
    )
    reminders_sent = models.PositiveIntegerField(default=0)
    reminders_delivered = models.PositiveIntegerField(default=0)
    last_touch = models.ForeignKey(
        Notification,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The last reminder delivered before it; none when none was.",
    )
    # Copied from the last touch: what a report reads stays when reminders are purged.
    last_touch_channel = models.CharField(max_length=8, choices=Channel.choices, blank=True)
    last_touch_lead_days = models.PositiveSmallIntegerField(null=True, blank=True)
    last_touch_template = models.ForeignKey(
        MessageTemplate, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    channels_reached = models.CharField(
        max_length=5,
        choices=Reach.choices,
        default=Reach.NONE,
        help_text="The channels with a reminder about this expiry delivered before it.",
    )
    # Copied from the policy when it happened, for the retention figures: the book and product
    # line the term belonged to then, read with no join.
    agent = models.ForeignKey(
        "policies.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    product_line = models.CharField(max_length=64, blank=True)
    # When the row was written (occurred_at may be earlier): what retention.refresh recounts.
    recorded_at = models.DateTimeField(auto_now_add=True)
    last_touch_variant = models.ForeignKey(
        TemplateVariant,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The experiment's variant the last touch was sent in, if any.",
    )
    last_call = models.ForeignKey(
        "CallOutcome",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The agent's last call about the term before it ended; none when none was.",
    )

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            # retention.refresh: the expiry days to count again, and each day's outcomes.
            models.Index(fields=["recorded_at"], name="policy_outcome_recorded"),
            models.Index(fields=["expiry_date"], name="policy_outcome_expiry"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "expiry_date", "kind"], name="policy_outcome_once"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=["renewed", "lapsed"]), name="policy_outcome_kind_valid"
            ),
            models.CheckConstraint(
                condition=Q(kind="renewed", new_expiry_date__gt=F("expiry_date"))
                | Q(kind="lapsed", new_expiry_date__isnull=True),
                name="policy_outcome_renewed_to_later",
            ),
            models.CheckConstraint(
                condition=Q(reminders_delivered__lte=F("reminders_sent")),
                name="policy_outcome_delivered_were_sent",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.policy.policy_number} {self.get_kind_display().lower()} ({self.expiry_date})"


class CallListRule(models.Model):
    """Which policies an agent should call: those expiring within `days_before_expiry` days
    that no reminder reached (notifications.calls). One row, seeded by a migration and edited
    in the admin; the call list and the morning email read it each time."""

    days_before_expiry = models.PositiveSmallIntegerField(
        default=7,
        help_text="Policies expiring within this many days (today included) are on the call "
        "list when no reminder reached their customer.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "call list rule"
        constraints = [
            models.CheckConstraint(
                condition=Q(days_before_expiry__gte=0, days_before_expiry__lte=90),
                name="call_list_rule_days_range",
            ),
            # One rule: the lone row has the primary key 1.
            models.CheckConstraint(condition=Q(id=1), name="call_list_rule_single"),
        ]

    def __str__(self) -> str:
        return f"Call policies expiring within {self.days_before_expiry} days, none delivered"

    @classmethod
    def current(cls) -> "CallListRule":
        """The rule; its default when an admin has not got it (the migration seeds it)."""
        return cls.objects.filter(pk=1).first() or cls(pk=1)


class CallOutcome(models.Model):
    """What came of an agent's call to a policy's customer about one term (its expiry). It
    shows in the policy's timeline; "wrong number" and "declined" change what reminders do
    (notifications.calls)."""

    class Outcome(models.TextChoices):
        REACHED = "reached", "Reached"
        VOICEMAIL = "voicemail", "Left a voicemail"
        NO_ANSWER = "no_answer", "No answer"
        WILL_RENEW = "will_renew", "Will renew"
        DECLINED = "declined", "Declined to renew"
        WRONG_NUMBER = "wrong_number", "Wrong number"

    policy = models.ForeignKey(Policy, on_delete=models.CASCADE, related_name="calls")
    expiry_date = models.DateField(help_text="The expiry of the term the call was about.")
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    phone = models.CharField(max_length=32, blank=True, help_text="The number called.")
    called_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    called_at = models.DateTimeField()
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-called_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    outcome__in=[
                        "reached",
                        "voicemail",
                        "no_answer",
                        "will_renew",
                        "declined",
                        "wrong_number",
                    ]
                ),
                name="call_outcome_valid",
            ),
        ]
        indexes = [
            # The policy's timeline, newest call first.
            models.Index(fields=["policy", "-called_at"], name="call_outcome_policy"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.policy.policy_number}: {self.get_outcome_display()} ({self.called_at:%Y-%m-%d})"
        )


class CallListEmail(ClaimedEmail):
    """An agent's call list, emailed in the morning: at most once per agent and day, and not at
    all on a day the list is empty."""

    agent = models.ForeignKey(
        "policies.Agent", on_delete=models.CASCADE, related_name="call_list_emails"
    )
    day = models.DateField()
    policies = models.PositiveIntegerField(default=0, help_text="How many it listed.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-day", "agent_id"]
        constraints = [
            models.UniqueConstraint(fields=["agent", "day"], name="call_list_email_once_a_day"),
        ]

    def __str__(self) -> str:
        return f"Call list of {self.agent} for {self.day}"


class RetentionDay(models.Model):
    """Counts of the terms that expired on one day, for one agent, by one dimension's value:
    the retention figures' daily aggregate (notifications.retention), so that a year of a large
    book sums a few hundred rows a day instead of reading every outcome. Recounted from the
    outcomes by retention.refresh (the daily scan); never edited by hand."""

    class Dimension(models.TextChoices):
        PRODUCT_LINE = "product_line", "Product line"
        CHANNELS = "channels", "Channels reached"
        LEAD_DAYS = "lead_days", "Lead time of the last delivered reminder"
        TEMPLATE = "template", "Template of the last delivered reminder"

    expiry_date = models.DateField()
    agent = models.ForeignKey(
        "policies.Agent", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    dimension = models.CharField(max_length=16, choices=Dimension.choices)
    value = models.CharField(max_length=64, blank=True, help_text="Empty: none (no touch).")
    terms = models.PositiveIntegerField(default=0)
    renewed_before = models.PositiveIntegerField(default=0, help_text="On or before the expiry.")
    renewed_after = models.PositiveIntegerField(default=0, help_text="After it, lapsed or not.")
    lapsed = models.PositiveIntegerField(default=0, help_text="Lapsed, not renewed since.")
    computed_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["expiry_date", "agent", "dimension", "value"],
                condition=Q(agent__isnull=False),
                name="retention_day_once",
            ),
            models.UniqueConstraint(
                fields=["expiry_date", "dimension", "value"],
                condition=Q(agent__isnull=True),
                name="retention_day_once_no_agent",
            ),
            models.CheckConstraint(
                condition=Q(terms=F("renewed_before") + F("renewed_after") + F("lapsed")),
                name="retention_day_terms_add_up",
            ),
        ]
        indexes = [
            # retention.figures: a period of expiries, for one agent or all of them.
            models.Index(fields=["agent", "expiry_date"], name="retention_day_agent"),
            models.Index(fields=["expiry_date"], name="retention_day_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.expiry_date} {self.dimension}={self.value or '-'}: {self.terms} terms"
