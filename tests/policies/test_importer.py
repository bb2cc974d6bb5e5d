"""The CSV importer, through the real `import_policies` management command and through
`policies.importers.import_policies` directly, against the real database."""

import csv
import io
from datetime import date
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from policies import import_store
from policies.importers import ImportFileError, import_policies
from policies.models import Customer, Policy
from tests.factories import make_agent, make_customer, make_policy

pytestmark = pytest.mark.django_db

HEADER = [
    "policy_number",
    "product_line",
    "customer_name",
    "customer_email",
    "customer_phone",
    "customer_timezone",
    "customer_language",
    "agent_email",
    "start_date",
    "expiry_date",
    "status",
]


def row(policy_number: str = "P-1", **overrides) -> dict:
    """One good CSV row; keyword arguments replace its cells."""
    return {
        "policy_number": policy_number,
        "product_line": "auto",
        "customer_name": "Pat Doe",
        "customer_email": "pat@mail.example",
        "customer_phone": "+1 (415) 555-2671",
        "customer_timezone": "Europe/Madrid",
        "customer_language": "es",
        "agent_email": "agent@agency.example",
        "start_date": "2026-01-01",
        "expiry_date": "2027-01-01",
        "status": "active",
        **overrides,
    }


def csv_text(rows: list[dict], header: list[str] = HEADER) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


@pytest.fixture
def write_csv(tmp_path):
    """Write a CSV (rows, raw text or raw bytes) under tmp_path and return its path as str."""
    count = 0

    def write(content, *, header: list[str] = HEADER) -> str:
        nonlocal count
        count += 1
        path = tmp_path / f"policies-{count}.csv"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_bytes(content.encode())
        else:
            path.write_bytes(csv_text(content, header).encode())
        return str(path)

    return write


def run_import(path: str, *args: str) -> tuple[str, str]:
    """Run the management command; return its (stdout, stderr)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    call_command("import_policies", path, *args, stdout=stdout, stderr=stderr)
    return stdout.getvalue(), stderr.getvalue()


def summary_line(total, created=0, updated=0, unchanged=0, rejected=0) -> str:
    return (
        f"Imported {total} rows: {created} created, {updated} updated, "
        f"{unchanged} unchanged, {rejected} rejected"
    )


def snapshot() -> dict:
    """Every policy and customer row as the database holds it, updated_at included."""
    return {
        "policies": list(Policy.objects.order_by("pk").values()),
        "customers": list(Customer.objects.order_by("pk").values()),
    }


# --- Good rows -------------------------------------------------------------------------------


def test_command_creates_policies_and_customers_from_good_rows(agent, write_csv):
    path = write_csv(
        [
            row("P-1", customer_email="Pat@Mail.Example", product_line="Auto"),
            row(
                "P-2",
                customer_name="Lee Park",
                customer_email="LEE@mail.example",
                customer_phone="+44 20 7946 0958",
                customer_timezone="Europe/London",
                customer_language="en",
                status="Renewed",
            ),
        ]
    )

    out, err = run_import(path)

    assert out.strip() == summary_line(2, created=2)
    assert err == ""
    pat = Customer.objects.get(email="pat@mail.example")
    assert pat.name == "Pat Doe"
    assert pat.phone == "+14155552671"
    assert pat.timezone == ZoneInfo("Europe/Madrid")
    assert pat.language == "es"
    lee = Customer.objects.get(email="lee@mail.example")
    assert lee.phone == "+442079460958"
    first = Policy.objects.get(policy_number="P-1")
    assert first.customer == pat
    assert first.agent == agent
    assert first.product_line == "auto"
    assert first.start_date == date(2026, 1, 1)
    assert first.expiry_date == date(2027, 1, 1)
    assert first.status == Policy.Status.ACTIVE
    assert Policy.objects.get(policy_number="P-2").status == Policy.Status.RENEWED


def test_status_defaults_to_active_when_its_cell_is_empty(agent, write_csv):
    run_import(write_csv([row(status="")]))
    assert Policy.objects.get().status == Policy.Status.ACTIVE


def test_empty_optional_cells_take_the_defaults(agent, write_csv):
    run_import(
        write_csv([row(customer_phone="", customer_timezone="", customer_language="", status="")])
    )
    customer = Customer.objects.get()
    assert customer.phone == ""
    assert customer.timezone == ZoneInfo(settings.TIME_ZONE)
    assert customer.language == settings.LANGUAGE_CODE


@pytest.mark.parametrize("language", ["es-MX", "de", "fr", "pt-BR", "zh-Hans", "pt_br"])
def test_any_language_tag_is_stored_as_given(agent, write_csv, language):
    out, _ = run_import(write_csv([row(customer_language=language)]))

    assert out.strip() == summary_line(1, created=1)
    assert Customer.objects.get().language == language


def test_agent_email_is_matched_whatever_its_case(agent, write_csv):
    out, _ = run_import(write_csv([row(agent_email="Agent@AGENCY.example")]))
    assert out.strip() == summary_line(1, created=1)
    assert Policy.objects.get().agent == agent


def test_rows_of_one_customer_share_one_customer_found_by_email(agent, write_csv):
    run_import(
        write_csv(
            [
                row("P-1", customer_email="pat@mail.example"),
                row("P-2", customer_email="PAT@mail.example", product_line="home"),
            ]
        )
    )
    customer = Customer.objects.get()
    assert customer.email == "pat@mail.example"
    assert set(customer.policies.values_list("policy_number", flat=True)) == {"P-1", "P-2"}


def test_an_existing_customer_is_reused_and_brought_up_to_date(agent, write_csv):
    existing = make_customer(
        "pat@mail.example", name="Pat Old", phone="+14155550123", email_consent=False
    )

    run_import(write_csv([row(customer_email="Pat@mail.example", customer_name="Pat Doe")]))

    customer = Customer.objects.get()
    assert customer.pk == existing.pk
    assert customer.name == "Pat Doe"
    assert customer.phone == "+14155552671"
    assert customer.email_consent is False  # not a column of the file: left alone
    assert Policy.objects.get().customer == customer


def test_import_accepts_an_open_binary_file(agent):
    summary = import_policies(io.BytesIO(csv_text([row("P-1"), row("P-2")]).encode()))
    assert summary.as_dict() == {
        "total": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "rejected": 0,
    }
    assert Policy.objects.count() == 2


def test_a_file_without_the_status_column_imports_active_policies(agent, write_csv):
    header = [name for name in HEADER if name != "status"]
    out, err = run_import(write_csv([row("P-1"), row("P-2")], header=header))
    assert out.strip() == summary_line(2, created=2)
    assert err == ""
    assert set(Policy.objects.values_list("status", flat=True)) == {Policy.Status.ACTIVE}


def test_a_spreadsheet_byte_order_mark_and_windows_line_endings_are_accepted(agent, write_csv):
    text = csv_text([row("P-1"), row("P-2", customer_email="bad")]).replace("\n", "\r\n")
    out, err = run_import(write_csv(b"\xef\xbb\xbf" + text.encode()))
    assert out.strip() == summary_line(2, created=1, rejected=1)
    assert err.startswith("line 3: invalid customer_email")
    assert Policy.objects.get().policy_number == "P-1"


def test_a_header_only_file_imports_nothing(agent, write_csv):
    out, _ = run_import(write_csv([]))
    assert out.strip() == summary_line(0)
    assert not Policy.objects.exists()


# --- Re-importing ----------------------------------------------------------------------------


def test_reimporting_the_same_file_changes_nothing(agent, write_csv):
    path = write_csv(
        [
            row("P-1"),
            row("P-2", product_line="home"),
            row(
                "P-3",
                customer_name="Lee Park",
                customer_email="lee@mail.example",
                customer_phone="",
                customer_timezone="",
                customer_language="",
                status="",
            ),
            row("P-4", customer_email="sam@mail.example", customer_timezone="America/New_York"),
        ]
    )
    out, _ = run_import(path)
    assert out.strip() == summary_line(4, created=4)
    before = snapshot()

    out, err = run_import(path)

    assert out.strip() == summary_line(4, unchanged=4)
    assert err == ""
    assert snapshot() == before


def test_reimporting_in_smaller_chunks_still_changes_nothing(agent, write_csv):
    rows = [row(f"P-{n}", customer_email=f"c{n % 3}@mail.example") for n in range(1, 8)]
    path = write_csv(rows)
    import_policies(path)
    before = snapshot()

    summary = import_policies(path, chunk_size=2)

    assert (summary.created, summary.updated, summary.unchanged) == (0, 0, 7)
    assert snapshot() == before


def test_a_changed_expiry_date_updates_the_policy(agent, write_csv):
    run_import(write_csv([row("P-1"), row("P-2")]))
    policy = Policy.objects.get(policy_number="P-1")
    untouched = Policy.objects.get(policy_number="P-2")

    out, _ = run_import(write_csv([row("P-1", expiry_date="2027-03-01"), row("P-2")]))

    assert out.strip() == summary_line(2, updated=1, unchanged=1)
    changed = Policy.objects.get(policy_number="P-1")
    assert changed.pk == policy.pk
    assert changed.expiry_date == date(2027, 3, 1)
    assert changed.created_at == policy.created_at
    assert changed.updated_at > policy.updated_at
    assert Policy.objects.get(policy_number="P-2").updated_at == untouched.updated_at


def test_a_changed_status_or_agent_updates_the_policy(agent, write_csv):
    other = make_agent("robin", "robin@agency.example")
    run_import(write_csv([row("P-1"), row("P-2")]))

    summary = import_policies(
        write_csv([row("P-1", status="cancelled"), row("P-2", agent_email=other.email)])
    )

    assert (summary.created, summary.updated, summary.unchanged) == (0, 2, 0)
    assert Policy.objects.get(policy_number="P-1").status == Policy.Status.CANCELLED
    assert Policy.objects.get(policy_number="P-2").agent == other


def test_a_policy_created_outside_the_importer_is_updated_not_duplicated(agent, write_csv):
    existing = make_policy(
        "P-1", customer=make_customer(), agent=agent, expiry_date=date(2026, 6, 1)
    )
    summary = import_policies(write_csv([row("P-1")]))
    assert (summary.created, summary.updated) == (0, 1)
    policy = Policy.objects.get()
    assert policy.pk == existing.pk
    assert policy.expiry_date == date(2027, 1, 1)


# --- Bad rows --------------------------------------------------------------------------------

BAD_ROWS = {
    "bad_start_date": ({"start_date": "2026-13-01"}, "invalid start_date '2026-13-01'"),
    "bad_expiry_date": ({"expiry_date": "31/12/2027"}, "invalid expiry_date '31/12/2027'"),
    "compact_date": ({"expiry_date": "20271231"}, "invalid expiry_date '20271231'"),
    "expiry_before_start": (
        {"start_date": "2026-06-01", "expiry_date": "2026-05-31"},
        "expiry_date 2026-05-31 is not after start_date 2026-06-01",
    ),
    "expiry_on_start": (
        {"start_date": "2026-06-01", "expiry_date": "2026-06-01"},
        "expiry_date 2026-06-01 is not after start_date 2026-06-01",
    ),
    "invalid_email": ({"customer_email": "pat.mail.example"}, "invalid customer_email"),
    "invalid_phone": ({"customer_phone": "+1 555"}, "invalid customer_phone '+1 555'"),
    "unparsable_phone": ({"customer_phone": "+99 123"}, "invalid customer_phone '+99 123'"),
    "phone_without_plus": (
        {"customer_phone": "(415) 555-2671"},
        "invalid customer_phone '(415) 555-2671': start it with +",
    ),
    "unknown_timezone": (
        {"customer_timezone": "Mars/Olympus_Mons"},
        "unknown customer_timezone 'Mars/Olympus_Mons'",
    ),
    "unknown_language": (
        {"customer_language": "klingon"},
        "invalid customer_language 'klingon': unknown language 'klingon'",
    ),
    "not_a_language_tag": (
        {"customer_language": "en--US"},
        "invalid customer_language 'en--US': 'en--US' is not a language tag",
    ),
    "unknown_agent": (
        {"agent_email": "nobody@agency.example"},
        "unknown agent_email 'nobody@agency.example'",
    ),
    "missing_customer_name": ({"customer_name": "  "}, "missing customer_name"),
    "missing_policy_number": ({"policy_number": ""}, "missing policy_number"),
    "missing_dates": ({"start_date": "", "expiry_date": ""}, "missing start_date, expiry_date"),
    "invalid_status": ({"status": "expired"}, "invalid status 'expired'"),
    "overlong_policy_number": ({"policy_number": "P" * 65}, "policy_number is longer than 64"),
    "overlong_customer_name": ({"customer_name": "N" * 201}, "customer_name is longer than 200"),
}


@pytest.mark.parametrize(("cells", "reason"), BAD_ROWS.values(), ids=BAD_ROWS.keys())
def test_a_bad_row_is_rejected_with_its_line_and_reason(agent, write_csv, cells, reason):
    path = write_csv(
        [
            row("P-1"),
            {**row("P-2", customer_email="lee@mail.example"), **cells},
            row("P-3", customer_email="sam@mail.example"),
        ]
    )

    out, err = run_import(path)

    assert out.strip() == summary_line(3, created=2, rejected=1)
    assert len(err.splitlines()) == 1
    assert err.startswith(f"line 3: {reason}")
    assert set(Policy.objects.values_list("policy_number", flat=True)) == {"P-1", "P-3"}
    assert not Customer.objects.filter(email="lee@mail.example").exists()


def test_the_summary_lists_each_rejected_row_with_its_line(agent, write_csv):
    summary = import_policies(
        write_csv(
            [
                row("P-1", status="expired"),
                row("P-2"),
                row("P-3", customer_phone="4155552671"),
            ]
        )
    )
    assert summary.created == 1
    assert [(bad.line, bad.policy_number) for bad in summary.rejected] == [
        (2, "P-1"),
        (4, "P-3"),
    ]
    assert "status" in summary.rejected[0].reason
    assert "customer_phone" in summary.rejected[1].reason


def test_a_policy_number_repeated_in_the_file_is_rejected_naming_its_first_line(agent, write_csv):
    path = write_csv(
        [
            row("P-1"),
            row("P-2"),
            row("P-1", expiry_date="2028-01-01"),
        ]
    )

    out, err = run_import(path)

    assert out.strip() == summary_line(3, created=2, rejected=1)
    assert err.strip() == "line 4: policy_number 'P-1' repeats line 2 of this file"
    assert Policy.objects.get(policy_number="P-1").expiry_date == date(2027, 1, 1)


def test_a_policy_number_repeated_across_chunks_is_still_rejected(agent, write_csv):
    path = write_csv([row("P-1"), row("P-2"), row("P-3"), row("P-1")])
    summary = import_policies(path, chunk_size=1)
    assert summary.created == 3
    assert [(bad.line, bad.policy_number) for bad in summary.rejected] == [(5, "P-1")]


def test_a_row_with_too_many_cells_is_rejected(agent, write_csv):
    text = csv_text([row("P-1"), row("P-2"), row("P-3")])
    lines = text.splitlines()
    lines[2] += ",surplus"
    out, err = run_import(write_csv("\n".join(lines) + "\n"))

    assert out.strip() == summary_line(3, created=2, rejected=1)
    assert err.strip() == "line 3: has more cells than the header has columns"
    assert set(Policy.objects.values_list("policy_number", flat=True)) == {"P-1", "P-3"}


def test_a_row_with_too_few_cells_is_rejected_as_missing_fields(agent, write_csv):
    text = csv_text([row("P-1")]) + "P-2,auto,Lee Park\n"
    out, err = run_import(write_csv(text))
    assert out.strip() == summary_line(2, created=1, rejected=1)
    assert err.startswith("line 3: missing customer_email, agent_email, start_date, expiry_date")


def test_a_multi_line_quoted_cell_keeps_later_line_numbers_right(agent, write_csv):
    path = write_csv(
        [
            row("P-1", customer_name="Pat Doe\nc/o Lee Park\nApt 4"),  # lines 2-4
            row("P-2", customer_email="lee@mail.example", start_date="2026-02-30"),  # line 5
            row("P-3", customer_email="sam@mail.example", customer_name="Sam\nRoe"),  # 6-7
            row("P-4", customer_email="kim@mail.example", status="void"),  # line 8
        ]
    )

    out, err = run_import(path)

    assert out.strip() == summary_line(4, created=2, rejected=2)
    assert [line.split(":")[0] for line in err.splitlines()] == ["line 5", "line 8"]
    assert Customer.objects.get(email="pat@mail.example").name == "Pat Doe\nc/o Lee Park\nApt 4"


def test_a_bad_row_with_a_multi_line_cell_is_reported_at_its_first_line(agent, write_csv):
    path = write_csv(
        [
            row("P-1"),
            row("P-2", customer_name="Lee\nPark", customer_email="lee"),  # lines 3-4
            row("P-3", customer_email="sam@mail.example", status="void"),  # line 5
        ]
    )
    summary = import_policies(path)
    assert [bad.line for bad in summary.rejected] == [3, 5]


def test_blank_lines_are_skipped_but_still_counted_in_line_numbers(agent, write_csv):
    header, first = csv_text([row("P-1")]).splitlines()
    _, second = csv_text([row("P-2", status="void")]).splitlines()
    lines = [header, first, "", " ,  ,", second, ""]  # the bad row is on line 5

    out, err = run_import(write_csv("\n".join(lines)))

    assert out.strip() == summary_line(2, created=1, rejected=1)
    assert err.startswith("line 5: invalid status")


def test_an_overlong_customer_email_is_rejected_as_a_row(agent, write_csv):
    long_email = "a" * 64 + "@" + ("b" * 63 + ".") * 3 + "com"  # 260 characters
    path = write_csv(
        [
            row("P-1"),
            row("P-2", customer_email=long_email),
            row("P-3", customer_email="sam@mail.example"),
        ]
    )

    summary = import_policies(path)

    assert summary.created == 2
    assert [bad.line for bad in summary.rejected] == [3]
    assert "customer_email" in summary.rejected[0].reason
    assert set(Policy.objects.values_list("policy_number", flat=True)) == {"P-1", "P-3"}


def test_reimporting_changes_no_customer_even_when_its_rows_disagree_across_chunks(
    agent, write_csv
):
    path = write_csv([row("P-1", customer_name="Pat Doe"), row("P-2", customer_name="Patricia")])
    import_policies(path, chunk_size=1)
    before = snapshot()

    summary = import_policies(path, chunk_size=1)

    assert (summary.created, summary.updated, summary.unchanged) == (0, 0, 2)
    assert snapshot() == before


# --- An agent's own book ----------------------------------------------------------------------


@pytest.fixture
def brunos_customer(db):
    """Agent "bruno" and his customer b1@mail.example, on his policy B-1."""
    bruno = make_agent("bruno", "bruno@agency.example")
    customer = make_customer("b1@mail.example", name="Bo Brown", phone="+14155550123")
    make_policy("B-1", customer=customer, agent=bruno, expiry_date=date(2027, 1, 1))
    return customer


def test_an_agents_file_cannot_rewrite_another_agents_customer(agent, write_csv, brunos_customer):
    path = write_csv(
        [
            row("A-1", customer_email="ann@mail.example"),
            row(
                "A-9",
                customer_email="B1@mail.example",
                customer_name="Hijacked",
                customer_phone="+14155559999",
            ),
        ]
    )
    before = Customer.objects.filter(pk=brunos_customer.pk).values().get()

    summary = import_policies(path, only_agent_id=agent.pk)

    assert (summary.created, len(summary.rejected)) == (1, 1)
    assert summary.rejected[0].line == 3
    assert summary.rejected[0].policy_number == "A-9"
    assert summary.rejected[0].reason == (
        "customer_email 'b1@mail.example' is a customer of another agent: "
        "only an admin's import may change their details or add a policy for them"
    )
    assert Customer.objects.filter(pk=brunos_customer.pk).values().get() == before
    assert not Policy.objects.filter(policy_number="A-9").exists()


def test_a_refused_row_lends_its_customer_details_to_no_other_row(
    agent, write_csv, brunos_customer
):
    make_customer("ann@mail.example", name="Ann Alder")
    summary = import_policies(
        write_csv(
            [
                row("A-1", customer_email="ann@mail.example", customer_name="Ann Alder"),
                # Refused (another agent's policy), so its details for Ann are not applied.
                row("B-1", customer_email="ann@mail.example", customer_name="Not Ann"),
            ]
        ),
        only_agent_id=agent.pk,
    )

    assert [rejected.reason for rejected in summary.rejected] == [
        "policy_number belongs to another agent"
    ]
    assert Customer.objects.get(email="ann@mail.example").name == "Ann Alder"


def test_an_admins_import_still_updates_any_customer_last_row_wins(
    agent, write_csv, brunos_customer
):
    summary = import_policies(
        write_csv(
            [
                row("A-9", customer_email="b1@mail.example", customer_name="First"),
                row("A-10", customer_email="b1@mail.example", customer_name="Bo Renamed"),
            ]
        )
    )

    assert (summary.created, summary.rejected) == (2, [])
    brunos_customer.refresh_from_db()
    assert (brunos_customer.name, brunos_customer.phone) == ("Bo Renamed", "+14155552671")


# --- Files that are not a policy CSV ---------------------------------------------------------

GOOD_BODY = csv_text([row("P-1"), row("P-2")]).split("\n", 1)[1]
BAD_FILES = {
    "binary_data": (bytes(range(256)) * 4, "not a CSV text file (it contains binary data)"),
    "zip_archive": (
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00" + b"\x00" * 64,
        "not a CSV text file",
    ),
    "wrong_header": (
        b"name,email,phone\nPat Doe,pat@mail.example,+14155552671\n",
        "the header does not match the policy CSV format (missing columns: policy_number",
    ),
    "missing_columns": (
        csv_text(
            [row("P-1"), row("P-2")],
            header=[name for name in HEADER if name not in {"agent_email", "expiry_date"}],
        ).encode(),
        "missing columns: agent_email, expiry_date",
    ),
    "repeated_column": (
        (",".join([*HEADER, "status"]) + "\n").encode() + GOOD_BODY.encode(),
        "repeated columns: status",
    ),
    "empty_file": (b"", "the file is empty"),
    "non_utf8": (
        csv_text([row("P-1", customer_name="José Muñoz")]).encode("latin-1"),
        "the file is not UTF-8 text",
    ),
}


@pytest.mark.parametrize(("content", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_a_file_that_is_not_a_policy_csv_is_refused_whole(agent, write_csv, content, message):
    path = write_csv(content)

    with pytest.raises(CommandError) as refused:
        run_import(path)

    text = str(refused.value)
    assert text.startswith(f"{path}: ")
    assert message in text
    assert text.endswith("; nothing was imported")
    assert "\n" not in text
    assert Policy.objects.count() == 0
    assert Customer.objects.count() == 0


@pytest.mark.parametrize(("content", "message"), BAD_FILES.values(), ids=BAD_FILES.keys())
def test_import_policies_raises_import_file_error_for_an_unusable_file(
    agent, write_csv, content, message
):
    with pytest.raises(ImportFileError) as refused:
        import_policies(write_csv(content))
    assert message in str(refused.value)
    assert Policy.objects.count() == 0
    assert Customer.objects.count() == 0


def test_a_file_with_binary_data_after_its_first_8_kb_is_refused_whole(agent, write_csv):
    rows = [row(f"P-{n:03d}") for n in range(1, 101)]  # well over 8 KB of good rows
    rows.append(row("P-BIN", customer_email="lee@mail.example", customer_name="Lee\x00\x00Park"))
    path = write_csv(rows)

    with pytest.raises(CommandError, match="binary data"):
        run_import(path)

    assert Policy.objects.count() == 0
    assert Customer.objects.count() == 0


def test_a_missing_file_is_reported_by_the_command(db, tmp_path):
    path = str(tmp_path / "nowhere.csv")
    with pytest.raises(CommandError, match="no such file"):
        run_import(path)


# --- Chunks and progress ---------------------------------------------------------------------


def many_rows(count: int) -> list[dict]:
    return [
        row(f"P-{n:03d}", customer_email=f"customer{n % 4}@mail.example")
        for n in range(1, count + 1)
    ]


def test_a_chunk_size_smaller_than_the_file_gives_the_right_counts(agent, write_csv):
    rows = many_rows(7)
    rows[1]["status"] = "void"  # line 3; its customer has a later good row
    path = write_csv(rows)

    out, err = run_import(path, "--chunk-size", "2")

    assert out.strip() == summary_line(7, created=6, rejected=1)
    assert (
        err.strip()
        == "line 3: invalid status 'void' (expected one of: "
        + ", ".join(Policy.Status.values)
        + ")"
    )
    assert Policy.objects.count() == 6
    assert Customer.objects.count() == 4


def test_a_chunk_size_smaller_than_the_file_counts_updates_and_unchanged_rows(agent, write_csv):
    import_policies(write_csv(many_rows(7)), chunk_size=3)
    rows = many_rows(9)
    rows[0]["expiry_date"] = "2027-02-01"
    rows[4]["product_line"] = "home"

    summary = import_policies(write_csv(rows), chunk_size=2)

    assert summary.as_dict() == {
        "total": 9,
        "created": 2,
        "updated": 2,
        "unchanged": 5,
        "rejected": 0,
    }
    assert Policy.objects.count() == 9


def test_progress_is_reported_per_chunk_and_ends_at_the_total(agent, write_csv):
    rows = many_rows(5)
    rows[1]["customer_email"] = "not-an-email"
    calls = []

    summary = import_policies(
        write_csv(rows), chunk_size=2, progress=lambda done, total: calls.append((done, total))
    )

    assert summary.total == 5
    assert calls[-1] == (5, 5)
    assert {total for _, total in calls} == {5}
    done = [done for done, _ in calls]
    assert done == sorted(done)
    assert len(calls) >= 2  # more than one chunk was written


def test_progress_with_one_chunk_is_reported_once_at_the_total(agent, write_csv):
    calls = []
    import_policies(
        write_csv(many_rows(3)), progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(3, 3)]


# --- Unknown agents --------------------------------------------------------------------------


def test_an_unknown_agent_rejects_the_row_by_default(agent, write_csv):
    path = write_csv([row("P-1"), row("P-2", agent_email="new@agency.example")])

    out, err = run_import(path)

    assert out.strip() == summary_line(2, created=1, rejected=1)
    assert "unknown agent_email 'new@agency.example': create the agent first" in err
    assert not Policy.objects.filter(policy_number="P-2").exists()


def test_unknown_agents_create_makes_an_agent_with_no_usable_password(agent, write_csv):
    path = write_csv(
        [
            row("P-1", agent_email="New@Agency.example"),
            row("P-2", agent_email="new@agency.example", customer_email="lee@mail.example"),
        ]
    )

    out, _ = run_import(path, "--unknown-agents", "create")

    assert "created agent new@agency.example (no usable password until invited)" in out
    assert summary_line(2, created=2) in out
    new = Policy.objects.get(policy_number="P-1").agent
    assert new.email == "new@agency.example"
    assert Policy.objects.get(policy_number="P-2").agent == new
    assert not new.user.has_usable_password()
    assert new.user.is_active


def test_the_setting_decides_for_the_command_without_the_flag(agent, write_csv, settings):
    settings.IMPORT_UNKNOWN_AGENTS = "create"

    summary = import_policies(write_csv([row("P-1", agent_email="new@agency.example")]))

    assert summary.created == 1
    assert summary.agents_created == ["new@agency.example"]


def test_an_agents_own_import_never_creates_another_agent(agent, write_csv):
    path = write_csv([row("P-1", agent_email="new@agency.example")])

    summary = import_policies(path, only_agent_id=agent.pk, unknown_agents="create")

    assert [r.reason for r in summary.rejected] == [
        "unknown agent_email 'new@agency.example': create the agent first"
    ]
    assert summary.agents_created == []


def test_an_invalid_unknown_agent_email_is_rejected_not_created(agent, write_csv):
    summary = import_policies(
        write_csv([row("P-1", agent_email="not-an-address")]), unknown_agents="create"
    )

    assert [r.reason for r in summary.rejected] == ["invalid agent_email 'not-an-address'"]


def test_a_bad_unknown_agents_argument_is_refused_by_the_command(agent, write_csv):
    with pytest.raises(CommandError, match="invalid choice: 'maybe'"):
        run_import(write_csv([row("P-1")]), "--unknown-agents", "maybe")


def test_a_policy_written_meanwhile_by_another_import_is_refused_in_the_databases_words(
    agent, write_csv, monkeypatch
):
    """Another writer creates P-1 after this import looked it up: the chunk's write fails, its
    other rows still land, and P-1's refusal says what the database said, as for an INSERT
    (not COPY's own "CONTEXT: COPY ..., line 1", a line of no file of ours)."""
    path = write_csv([row("P-1"), row("P-2", customer_email="sam@mail.example")])
    store = type(import_store.store())
    looked_up = store.stored

    def missing_p1(self, model, key, keys, fields):
        found = looked_up(self, model, key, keys, fields)
        if model is Policy:
            make_policy(
                "P-1",
                customer=make_customer(email="other@mail.example"),
                agent=agent,
                expiry_date=date(2027, 3, 1),
            )
            found.pop("P-1", None)
        return found

    monkeypatch.setattr(store, "stored", missing_p1)
    summary = import_policies(path)

    assert summary.created == 1
    assert [(line.policy_number, line.reason.splitlines()[0]) for line in summary.rejected] == [
        ("P-1", "refused by the database: UNIQUE constraint failed: policies_policy.policy_number")
        if connection.vendor == "sqlite"
        else (
            "P-1",
            "refused by the database: duplicate key value violates unique constraint "
            '"policies_policy_policy_number_key"',
        )
    ]
    assert "CONTEXT" not in summary.rejected[0].reason
    assert Policy.objects.get(policy_number="P-2").customer.email == "sam@mail.example"
