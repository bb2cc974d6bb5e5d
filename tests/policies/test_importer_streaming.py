"""The importer streams its file: a large upload costs a worker a few chunks of memory, not the
file's size several times over, and still keeps every rule the row-by-row tests assert."""

import gc
import io
import threading
import tracemalloc

import pytest

from policies.importers import ImportFileError, import_policies
from policies.models import Customer, Policy
from tests.policies.test_importer import csv_text, row, snapshot

pytestmark = pytest.mark.django_db


class RecordingFile(io.BytesIO):
    """A binary file that remembers how much each read asked for."""

    def __init__(self, content: bytes):
        super().__init__(content)
        self.reads: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        self.reads.append(-1 if size is None else size)
        return super().read(size)

    def readinto(self, buffer) -> int:
        self.reads.append(len(buffer))
        return super().readinto(buffer)


def many_customers(count: int) -> list[dict]:
    return [
        row(
            f"P-{n:06d}",
            customer_email=f"customer{n}@mail.example",
            customer_name=f"Customer {n}",
            # Few numbers: normalise_phone's cache (bounded) stays out of the measure.
            customer_phone=f"+1415555{n % 50:04d}",
        )
        for n in range(count)
    ]


def test_the_file_is_read_in_pieces_never_whole(agent):
    content = csv_text(many_customers(3000)).encode()  # ~400 KB
    source = RecordingFile(content)

    summary = import_policies(source, chunk_size=1000)

    assert summary.created == 3000
    assert source.reads
    assert all(0 < size <= 256 * 1024 for size in source.reads), source.reads


def test_importing_a_file_holds_a_few_chunks_of_memory_not_the_whole_file(agent, tmp_path):
    path = tmp_path / "big.csv"
    path.write_bytes(csv_text(many_customers(12_000)).encode())  # ~1.6 MB, 24 chunks of 500
    size = path.stat().st_size

    tracemalloc.start()
    try:
        summary = import_policies(path, chunk_size=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert (summary.created, summary.rejected) == (12_000, [])
    # Reading it whole, decoded, and keeping every parsed row took 12 times its size; now a
    # chunk, and a few bytes a row for the repeats, stay under the file's own size.
    assert peak < size, f"peak {peak / 1e6:.1f} MB for a {size / 1e6:.1f} MB file"


def test_a_customer_whose_rows_are_far_apart_gets_their_last_good_rows_details(agent, tmp_path):
    rows = many_customers(9)
    rows[1].update(customer_email="pat@mail.example", customer_name="Pat First")
    rows[4].update(customer_email="pat@mail.example", customer_name="Pat Last")
    # Pat's last row is rejected: its details are not applied, the last good row's are.
    rows[8].update(customer_email="pat@mail.example", customer_name="Pat Bad", status="void")
    path = tmp_path / "spread.csv"
    path.write_bytes(csv_text(rows).encode())

    summary = import_policies(path, chunk_size=2)

    assert [rejected.line for rejected in summary.rejected] == [10]
    assert Customer.objects.get(email="pat@mail.example").name == "Pat Last"
    assert Policy.objects.filter(customer__email="pat@mail.example").count() == 2
    before = snapshot()
    again = import_policies(path, chunk_size=3)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 8)
    assert snapshot() == before  # no customer rewritten back and forth across the chunks


def test_a_policy_number_repeated_far_down_the_file_names_its_first_good_line(agent, tmp_path):
    rows = many_customers(7)
    rows[0]["status"] = "void"  # line 2: rejected, so line 4 is the first good P-000002
    rows[0]["policy_number"] = "P-000002"
    rows[6]["policy_number"] = "P-000002"
    path = tmp_path / "repeats.csv"
    path.write_bytes(csv_text(rows).encode())

    summary = import_policies(path, chunk_size=2)

    assert [(rejected.line, rejected.reason) for rejected in summary.rejected][1:] == [
        (8, "policy_number 'P-000002' repeats line 4 of this file")
    ]
    assert summary.created == 5


def test_a_chunk_size_below_one_is_refused_before_anything_is_read(agent, tmp_path):
    path = tmp_path / "one.csv"
    path.write_bytes(csv_text([row("P-1")]).encode())

    for size in (0, -5):
        with pytest.raises(ValueError, match="chunk_size must be at least 1"):
            import_policies(path, chunk_size=size)
    assert Policy.objects.count() == 0


def test_an_import_leaves_the_cycle_collector_as_it_was_even_when_the_file_is_refused(
    agent, tmp_path
):
    good, refused = tmp_path / "good.csv", tmp_path / "refused.csv"
    good.write_bytes(csv_text(many_customers(3)).encode())
    refused.write_bytes(b"not,a,policy,file\n")
    frozen = gc.get_freeze_count()

    import_policies(good)
    assert (gc.isenabled(), gc.get_freeze_count()) == (True, frozen)
    with pytest.raises(ImportFileError):
        import_policies(refused)
    assert (gc.isenabled(), gc.get_freeze_count()) == (True, frozen)


def test_an_import_that_stops_on_an_error_leaves_no_reading_thread_behind(agent, tmp_path):
    path = tmp_path / "file.csv"
    path.write_bytes(csv_text(many_customers(3000)).encode())

    def stop(done: int, total: int) -> None:
        raise RuntimeError("stopped by its caller")

    with pytest.raises(RuntimeError, match="stopped by its caller"):
        import_policies(path, chunk_size=100, progress=stop)

    assert [thread.name for thread in threading.enumerate() if thread.name == "import-reader"] == []
