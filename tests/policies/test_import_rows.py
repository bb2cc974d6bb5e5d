"""`import_rows`, the importer's entry for the integration API: the CSV importer's checks and
words, answered row by row. And the importer's own shortcut for email addresses, which must
give Django's verdict on every address."""

import pytest
from django.core.exceptions import ValidationError
from django.core.validators import validate_email

from policies.importers import RowOutcome, _is_email, import_rows
from policies.models import Customer, Policy, ProductLine
from tests.policies.test_importer import row, snapshot

pytestmark = pytest.mark.django_db


def import_numbered(rows: list[dict], **options):
    """import_rows on rows numbered by their place, as the API numbers a request's rows."""
    return import_rows(list(enumerate(rows)), **options)


def test_each_row_is_answered_by_its_index(agent):
    import_numbered([row("P-1"), row("P-2", customer_email="lee@mail.example")])

    summary = import_numbered(
        [
            row("P-1"),
            row("P-2", customer_email="lee@mail.example", expiry_date="2027-06-01"),
            row("P-3", customer_email="sam@mail.example"),
            row("P-4", status="void"),
        ]
    )

    assert summary.row_outcomes == {
        0: RowOutcome.UNCHANGED,
        1: RowOutcome.UPDATED,
        2: RowOutcome.CREATED,
    }
    assert [(bad.line, bad.policy_number) for bad in summary.rejected] == [(3, "P-4")]
    assert summary.rejected[0].reason.startswith("invalid status 'void'")
    assert (summary.created, summary.updated, summary.unchanged) == (1, 1, 1)


def test_a_repeated_policy_number_names_the_row_of_the_request(agent):
    summary = import_numbered([row("P-1"), row("P-2"), row("P-1", expiry_date="2028-01-01")])

    assert [(bad.line, bad.reason) for bad in summary.rejected] == [
        (2, "policy_number 'P-1' repeats row 0 of this request")
    ]


def test_a_row_with_cells_beyond_the_columns_is_rejected(agent):
    summary = import_numbered([row("P-1"), {**row("P-2"), None: ["surplus"]}])

    assert [(bad.line, bad.reason) for bad in summary.rejected] == [
        (1, "has more cells than the header has columns")
    ]
    assert list(Policy.objects.values_list("policy_number", flat=True)) == ["P-1"]


def test_the_same_rows_again_change_nothing(agent):
    rows = [row(f"P-{n}", customer_email=f"c{n % 3}@mail.example") for n in range(9)]
    import_numbered(rows)
    before = snapshot()

    summary = import_numbered(rows)

    assert set(summary.row_outcomes.values()) == {RowOutcome.UNCHANGED}
    assert snapshot() == before


def test_a_customer_on_several_rows_gets_the_last_rows_details(agent):
    summary = import_numbered(
        [
            row("P-1", customer_name="First", customer_language="en"),
            row("P-2", customer_name="Last", customer_timezone="America/New_York"),
        ]
    )

    assert summary.created == 2
    customer = Customer.objects.get()
    assert (customer.name, str(customer.timezone), customer.language) == (
        "Last",
        "America/New_York",
        "es",
    )


def test_any_text_is_stored_as_given_and_found_unchanged_again(agent):
    # Quotes, a backslash, percent signs and characters beyond the BMP: the PostgreSQL store
    # sends rows as JSON.
    name = 'Zoë "Z" O\'Brien \\ %s %(x)s 😀 ∑'
    import_numbered([row("P-1", customer_name=name)])

    again = import_numbered([row("P-1", customer_name=name)])

    assert Customer.objects.get().name == name
    assert again.unchanged == 1


ADDRESSES = [
    "pat@mail.example",
    "pat.doe+renewals@mail.example",
    "o'brien@mail.example",
    "x@sub.domain.example",
    "pat@xn--bcher-kva.example",
    "pat@münchen.example",
    "pat@localhost",
    "pat@[192.168.0.1]",
    "pat@[::1]",
    "pat@[999.1.1.1]",
    '"pat doe"@mail.example',
    '"pat@doe"@mail.example',
    "pat@@mail.example",
    "pat@mail",
    "pat@mail.",
    "pat@.mail.example",
    "pat@mail..example",
    "pat@-mail.example",
    "pat@mail-.example",
    "pat@mail.example-",
    "pat@mail.e",
    "pat@mail.123",
    ".pat@mail.example",
    "pat.@mail.example",
    "pa..t@mail.example",
    "pat doe@mail.example",
    "pat@mail example",
    "pat@" + "a" * 63 + ".example",
    "pat@" + "a" * 64 + ".example",
    "pat@mail." + "a" * 63,
    "pat@mail." + "a" * 64,
    "a" * 310 + "@mail.example",
    "pat@mail.example\n",
    "pat\n@mail.example",
    "pät@mail.example",
    "@mail.example",
    "pat@",
    "",
]


def django_accepts(address: str) -> bool:
    try:
        validate_email(address)
    except ValidationError:
        return False
    return True


@pytest.mark.parametrize("address", ADDRESSES)
def test_the_email_shortcut_gives_djangos_verdict(address):
    assert _is_email(address) == django_accepts(address)


def test_each_new_product_line_code_gets_its_line_once(agent):
    import_numbered([row("P-1"), row("P-2", product_line="Boat")])
    ProductLine.objects.filter(code="boat").update(renew_url="https://boats.example/")

    import_numbered([row("P-1"), row("P-2", product_line="boat"), row("P-3", product_line="jet")])

    lines = dict(ProductLine.objects.values_list("code", "renew_url"))
    assert lines == {"auto": "", "boat": "https://boats.example/", "jet": ""}


def test_a_rejected_row_adds_no_product_line(agent):
    summary = import_numbered([row("P-1", product_line="yacht", start_date="nope")])

    assert summary.rejected
    assert not ProductLine.objects.exists()
