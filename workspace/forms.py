"""The workspace's forms: they only parse and validate what the agent typed."""

from django import forms

from notifications.models import Channel, Notification
from workspace.selectors import PENDING, RETENTION_PERIODS, NoticeFilters

STATUS_LABELS = dict(Notification.Status.choices)


class NoticeFilterForm(forms.Form):
    """The pending notices' filters, read from the query string (GET)."""

    q = forms.CharField(
        label="Policy number or customer", required=False, max_length=100, strip=True
    )
    due_from = forms.DateField(
        label="Due from", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    due_to = forms.DateField(
        label="Due to", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    channel = forms.ChoiceField(label="Channel", required=False)
    status = forms.ChoiceField(label="Status", required=False)
    product_line = forms.ChoiceField(label="Product line", required=False)

    def __init__(self, data, *, product_lines: list[str]):
        super().__init__(data)
        self.fields["channel"].choices = [("", "Any channel"), *Channel.choices]
        self.fields["status"].choices = [("", "Any pending status")] + [
            (status, STATUS_LABELS[status]) for status in PENDING
        ]
        self.fields["product_line"].choices = [("", "Any product line")] + [
            (line, line.title()) for line in product_lines
        ]

    def filters(self) -> NoticeFilters:
        """The filters to apply; a field that did not validate is left out of cleaned_data,
        so a bad date narrows nothing instead of failing the page."""
        self.is_valid()
        data = self.cleaned_data
        return NoticeFilters(
            due_from=data.get("due_from"),
            due_to=data.get("due_to"),
            channel=data.get("channel", ""),
            status=data.get("status", ""),
            product_line=data.get("product_line", ""),
            search=data.get("q", ""),
        )


class ExpiryFilterForm(forms.Form):
    q = forms.CharField(
        label="Policy number or customer", required=False, max_length=100, strip=True
    )
    product_line = forms.ChoiceField(label="Product line", required=False)

    def __init__(self, data, *, product_lines: list[str]):
        super().__init__(data)
        self.fields["product_line"].choices = [("", "Any product line")] + [
            (line, line.title()) for line in product_lines
        ]


class RenewForm(forms.Form):
    new_expiry_date = forms.DateField(
        label="New expiry date", widget=forms.DateInput(attrs={"type": "date"})
    )


class RetentionPeriodForm(forms.Form):
    """Which days of expiries the retention figures cover, from the query string."""

    period = forms.TypedChoiceField(
        label="Expired in the last",
        coerce=int,
        required=False,
        choices=[(days, f"{days} days") for days in RETENTION_PERIODS],
    )

    def days(self) -> int:
        """The chosen period; the default when none or an unknown one was asked for (the page
        says so through the form's error)."""
        if self.is_valid() and self.cleaned_data["period"]:
            return self.cleaned_data["period"]
        return RETENTION_PERIODS[1]
