"""Phone numbers: one rule wherever a number comes in (an import, the admin's forms, a test
send) and where it is stored. A number is written with + and its country code, must be a valid
number (phonenumbers, Google's libphonenumber) and is kept in E.164: +14155550100."""

import phonenumbers
from django import forms
from django.core.exceptions import ValidationError
from django.db import models

EXAMPLE = "+14155550100"


class InvalidPhoneNumber(ValueError):
    """Not a number Renewly can send to; the text says why, for a person."""


def to_e164(raw: str) -> str:
    """The number in E.164 ('+1 (415) 555-0100' -> '+14155550100'), or InvalidPhoneNumber."""
    if not raw.startswith("+"):
        # Without a country code a number is ambiguous: customers live in many countries.
        raise InvalidPhoneNumber("start it with + and the country code")
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException as error:
        raise InvalidPhoneNumber(error._msg) from None
    if not phonenumbers.is_valid_number(number):
        raise InvalidPhoneNumber("not a valid number")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _invalid(raw: str, error: InvalidPhoneNumber) -> ValidationError:
    return ValidationError(
        "%(raw)s is not a phone number Renewly can send to: %(reason)s (write it as %(example)s).",
        code="invalid_phone",
        params={"raw": repr(raw), "reason": str(error).rstrip("."), "example": EXAMPLE},
    )


def validate_phone(value: str) -> None:
    """The model fields' validator: a valid number, stored in E.164."""
    try:
        e164 = to_e164(value)
    except InvalidPhoneNumber as error:
        raise _invalid(value, error) from None
    if e164 != value:
        raise ValidationError(
            "Store the number in E.164: %(e164)s.", code="not_e164", params={"e164": e164}
        )


class PhoneFormField(forms.CharField):
    """A number as people type it ('+34 612 34 56 78'), cleaned to E.164 ('+34612345678')."""

    def to_python(self, value):
        value = super().to_python(value)  # stripped; "" when empty
        if value in self.empty_values:
            return value
        try:
            return to_e164(value)
        except InvalidPhoneNumber as error:
            raise _invalid(value, error) from None


class PhoneField(models.CharField):
    """A phone number column: a CharField of E.164 text, checked by validate_phone and entered
    through PhoneFormField in every model form (the admin's included)."""

    default_validators = [validate_phone]

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("max_length", 16)  # E.164: + and at most 15 digits
        super().__init__(*args, **kwargs)

    def formfield(self, **kwargs):
        # No maxlength in the form: people type spaces and dashes, and E.164 fits the column.
        return super().formfield(**{"form_class": PhoneFormField, "max_length": None, **kwargs})
