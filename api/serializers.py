"""The API's shapes. Input is checked here only for its JSON types and for fields that do not
exist; what a value means (a valid email, date, phone, time zone) is checked by the domain's
one rule for it (policies.importers.parse_row, policies.phones), so the API and the CSV
importer accept and refuse the same values, in the same words."""

from django.core.validators import MaxLengthValidator, ProhibitNullCharactersValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import ProhibitSurrogateCharactersValidator

from notifications.models import Channel, NotificationStatus
from policies.importers import COLUMNS, RowOutcome, UnknownAgents
from policies.models import PolicyStatus


class StrictString(serializers.CharField):
    """A JSON string, never a number or a boolean turned into one."""

    default_error_messages = {"invalid": "Must be a string."}

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBoolean(serializers.BooleanField):
    """true or false, never "yes" or 1."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know: a misspelt field is an error, not silently dropped."""

    def to_internal_value(self, data):
        if not isinstance(data, dict):
            raise serializers.ValidationError(
                {"non_field_errors": ["Must be a JSON object."]}, code="invalid"
            )
        unknown = sorted(set(data) - set(self.fields))
        if unknown:
            raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


def _text(help_text: str, *, required: bool = False, fmt: str = "") -> StrictString:
    """A string field. Its presence is checked here, its value by the domain: an empty or too
    long value is the importer's to refuse, in its words ("missing customer_name")."""
    field = StrictString(required=required, allow_blank=True, help_text=help_text)
    return extend_schema_field({"type": "string", "format": fmt})(field) if fmt else field


class PolicyFields(StrictSerializer):
    """A policy and its customer: the policy CSV's columns, with its checks."""

    product_line = _text("e.g. auto, home, life (stored lower case)", required=True)
    customer_name = _text("", required=True)
    customer_email = _text("Finds the customer: one address, one customer.", required=True)
    customer_phone = _text("Any format phonenumbers reads; stored E.164. Empty: none.")
    customer_timezone = _text("An IANA name, e.g. Europe/Madrid. Empty: the site's.")
    customer_language = _text("Any language tag, e.g. de, fr, pt-BR (as given). Empty: the site's.")
    agent_email = _text(
        "The agent whose book it is. Optional with a key limited to one agent's book."
    )
    start_date = _text("YYYY-MM-DD", required=True)
    expiry_date = _text("YYYY-MM-DD, after start_date", required=True)
    status = _text("active (the default), renewed, cancelled or lapsed")


class PolicyRowIn(PolicyFields):
    policy_number = _text("", required=True)


assert {*PolicyRowIn().fields} == set(COLUMNS), "the API's row is the CSV's row"


class ParsedJSON(serializers.JSONField):
    """Any JSON value, as the request's parser read it: JSONField would write each one back to
    JSON to prove it can, 10 µs a row of a bulk request."""

    def to_internal_value(self, data):
        return data


class BulkIn(StrictSerializer):
    """Policy rows to create or update, each answered on its own."""

    # Any JSON per row: a row of the wrong shape is answered rejected, saying why; the request
    # is not refused for it.
    rows = serializers.ListField(
        child=ParsedJSON(),
        help_text="Policy rows, each an object: the fields of PUT /policies/{number}'s body, "
        "and policy_number.",
    )
    unknown_agents = serializers.ChoiceField(
        choices=UnknownAgents.choices,
        required=False,
        help_text="A row naming an unknown agent: reject it, or create the agent. "
        "Default: the IMPORT_UNKNOWN_AGENTS setting.",
    )


class RowResult(serializers.Serializer):
    index = serializers.IntegerField()
    policy_number = serializers.CharField()
    outcome = serializers.ChoiceField(choices=RowOutcome.choices)
    reason = serializers.CharField(required=False)


class BulkOut(serializers.Serializer):
    created = serializers.IntegerField()
    updated = serializers.IntegerField()
    unchanged = serializers.IntegerField()
    rejected = serializers.IntegerField()
    agents_created = serializers.ListField(child=serializers.EmailField())
    rows = RowResult(many=True)


class ConsentOut(serializers.Serializer):
    email = serializers.BooleanField()
    sms = serializers.BooleanField()
    whatsapp = serializers.BooleanField(
        help_text="Opted in to WhatsApp: off until the customer asks for it."
    )
    email_undeliverable = serializers.BooleanField(
        help_text="Mail to the address bounced: no email reminders whatever the consent."
    )


class ConsentChangeOut(serializers.Serializer):
    channel = serializers.ChoiceField(choices=Channel.choices)
    accepted = serializers.BooleanField()
    source = serializers.CharField()
    changed_by = serializers.CharField()
    changed_at = serializers.DateTimeField()


class CustomerConsentOut(ConsentOut):
    customer_id = serializers.IntegerField()
    history = ConsentChangeOut(many=True, help_text="The latest changes first (up to 50).")


class ConsentIn(StrictSerializer):
    email = StrictBoolean(required=False)
    sms = StrictBoolean(required=False)
    whatsapp = StrictBoolean(
        required=False,
        help_text="true only when the customer asked for WhatsApp (an opt-in your system "
        "recorded): the consent history keeps it with this key's name.",
    )

    def validate(self, attrs):
        if not attrs:
            raise serializers.ValidationError("Give email, sms, whatsapp or some of them.")
        return attrs


class CustomerOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.CharField()
    phone = serializers.CharField()
    language = serializers.CharField()
    timezone = serializers.CharField()
    consent = ConsentOut()


class DeliveryEventOut(serializers.Serializer):
    type = serializers.CharField()
    provider = serializers.CharField()
    occurred_at = serializers.DateTimeField()
    error_code = serializers.CharField()
    reason = serializers.CharField()


class NotificationOut(serializers.Serializer):
    id = serializers.IntegerField()
    policy_number = serializers.CharField()
    customer_id = serializers.IntegerField()
    channel = serializers.ChoiceField(choices=Channel.choices)
    lead_days = serializers.IntegerField()
    due_on = serializers.DateField()
    expiry_date = serializers.DateField()
    status = serializers.ChoiceField(choices=NotificationStatus.choices)
    status_changed_at = serializers.DateTimeField()
    attempts = serializers.IntegerField()
    sent_at = serializers.DateTimeField(allow_null=True)
    delivered_at = serializers.DateTimeField(allow_null=True)
    provider_message_id = serializers.CharField()
    last_error = serializers.CharField()


class ReminderOut(NotificationOut):
    events = DeliveryEventOut(many=True)


class PolicySummaryOut(serializers.Serializer):
    policy_number = serializers.CharField()
    product_line = serializers.CharField()
    status = serializers.ChoiceField(choices=PolicyStatus.choices)
    start_date = serializers.DateField()
    expiry_date = serializers.DateField()
    agent_email = serializers.EmailField()
    customer_id = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


class PolicyWithCustomerOut(PolicySummaryOut):
    customer = CustomerOut()


class PolicyOut(PolicyWithCustomerOut):
    reminders = ReminderOut(many=True, help_text="Its reminders, soonest due first.")


class UpsertOut(serializers.Serializer):
    outcome = serializers.ChoiceField(choices=RowOutcome.choices)
    agents_created = serializers.ListField(child=serializers.EmailField())
    policy = PolicyWithCustomerOut(
        help_text="The policy as written; its reminders: GET /policies/{policy_number}."
    )


class RenewalIn(StrictSerializer):
    expiry_date = _text("The new expiry date, YYYY-MM-DD.", required=True, fmt="date")


class EmptyIn(StrictSerializer):
    """No field: the path says it all."""


class PolicyChangeOut(serializers.Serializer):
    policy = PolicyOut()
    cancelled_reminders = NotificationOut(
        many=True, help_text="The reminders this change cancelled, in the same transaction."
    )


class AgentIn(StrictSerializer):
    first_name = StrictString(max_length=150, required=False, allow_blank=True)
    last_name = StrictString(max_length=150, required=False, allow_blank=True)
    phone = _text("Any format phonenumbers reads; stored E.164. Empty: none.")
    active = StrictBoolean(
        required=False,
        help_text="false: the agent can no longer log in; their book stays. Default: unchanged "
        "(a new agent is active).",
    )


class AgentOut(serializers.Serializer):
    email = serializers.EmailField()
    first_name = serializers.CharField()
    last_name = serializers.CharField()
    phone = serializers.CharField()
    active = serializers.BooleanField()
    invited = serializers.BooleanField(
        help_text="Whether the agent has a password to log in with (an admin invites them)."
    )


class PageOut(serializers.Serializer):
    next_cursor = serializers.CharField(
        allow_null=True, help_text="Pass as ?cursor= for the next page; null: the last page."
    )


class PolicyPageOut(PageOut):
    results = PolicySummaryOut(many=True)


class NotificationPageOut(PageOut):
    results = NotificationOut(many=True)


class ProblemOut(serializers.Serializer):
    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    instance = serializers.CharField(allow_null=True, required=False)
    errors = serializers.ListField(
        child=serializers.DictField(child=serializers.CharField()),
        required=False,
        help_text='[{"pointer": "/expiry_date", "detail": "..."}]',
    )


class PlainStrings:
    """A quick check for a shape of StrictStrings only (a CSV row), for the rows a bulk request
    sends by the thousand: DRF's field machinery costs about 100 µs a row, more than the upsert
    of an unchanged row. It answers what the shape's run_validation answers for the usual valid
    row, and None for any other: the shape itself then says what is wrong, in its words."""

    # What a StrictString checks besides its type (CharField adds these validators).
    KNOWN_VALIDATORS = {
        MaxLengthValidator,
        ProhibitNullCharactersValidator,
        ProhibitSurrogateCharactersValidator,
    }

    def __init__(self, shape: StrictSerializer):
        self.rules: dict[str, tuple[bool, bool, int | None]] = {}
        for name, field in shape.fields.items():
            # A rule this check does not know would be skipped by it: refuse, at import.
            plain = (
                type(field) is StrictString
                and field.trim_whitespace
                and not field.allow_null
                and field.min_length is None
                and field.source == name
                and {type(validator) for validator in field.validators} <= self.KNOWN_VALIDATORS
            )
            if not plain:
                raise TypeError(f"{type(shape).__name__}.{name} is not a plain StrictString")
            self.rules[name] = (field.required, field.allow_blank, field.max_length)
        if type(shape).validate is not serializers.Serializer.validate or shape.validators:
            raise TypeError(f"{type(shape).__name__} validates more than its fields")

    def __call__(self, data) -> dict | None:
        """The validated values of `data`: a JSON object of known fields, each a string within
        its length, with no NUL or surrogate character. None for anything else."""
        if not isinstance(data, dict) or not data.keys() <= self.rules.keys():
            return None
        values = {}
        for name, (required, allow_blank, max_length) in self.rules.items():
            value = data.get(name, serializers.empty)
            if value is serializers.empty:
                if required:
                    return None
                continue
            if not isinstance(value, str):
                return None
            value = value.strip()
            if not value:
                if not allow_blank:
                    return None
            elif (max_length is not None and len(value) > max_length) or "\x00" in value:
                return None
            elif not value.isascii():
                try:
                    value.encode()  # a lone surrogate cannot be encoded
                except UnicodeEncodeError:
                    return None
            values[name] = value
        return values


plain_policy_fields = PlainStrings(PolicyFields())
plain_policy_row = PlainStrings(PolicyRowIn())
