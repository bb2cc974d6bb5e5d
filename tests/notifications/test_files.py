"""The one helper that writes files for others to read."""

import pytest

from notifications.files import write_atomically


def test_a_file_is_replaced_whole_and_no_temporary_file_is_left(tmp_path):
    path = tmp_path / "deep" / "report.csv"
    write_atomically(path, b"first")
    write_atomically(path, b"second")

    assert path.read_bytes() == b"second"
    assert [entry.name for entry in path.parent.iterdir()] == ["report.csv"]


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary_one(tmp_path, monkeypatch):
    path = tmp_path / "report.csv"
    write_atomically(path, b"old")

    def refuse(source, target):
        raise OSError("disk full")

    monkeypatch.setattr("notifications.files.os.replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, b"new")

    assert path.read_bytes() == b"old"
    assert [entry.name for entry in tmp_path.iterdir()] == ["report.csv"]
