"""Fuzzing the ingest readers: whatever bytes a JSONL or CSV file or a directory holds, every
line comes back as `Ok` (a record the worker decodes) or `Bad` (a reason and a detail), in
order; only a missing header or an unreadable path stops a file, with an IngestError naming it.
Directories with hostile names, traversal symlinks and loops are read without leaving the root."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lorafeed.ingest_errors import IngestError, RejectReason
from lorafeed.record_readers import Bad, Ok, read_csv, read_directory, read_jsonl, read_path
from schemas import Topic, decode, encode
from tests.security.hostile import INVALID_UTF8, STRINGS, deep_json, record

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
GOOD = json.dumps(record("r-1", "Refunds take five business days.")).encode()

_PIECES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([GOOD, b"\n", b"\r\n", b"\xef\xbb\xbf", b",", b'"', b'""', b"{", b"}", b"\x00",
                     b"record_id,content", deep_json(3000).encode(), *INVALID_UTF8.values()]),
    st.sampled_from(sorted(STRINGS.values())).map(lambda s: s[:500].encode("utf-8")),
)


def _check_lines(items: list[Ok | Bad]) -> None:
    numbers = [item.line_no for item in items]
    assert numbers == sorted(numbers) and len(set(numbers)) == len(numbers)
    for item in items:
        if isinstance(item, Ok):
            assert decode(Topic.RECORDS_RAW, encode(item.record)) == item.record
        else:
            assert isinstance(item.reason, RejectReason) and item.detail
            assert len(item.detail) <= 300


@FUZZ
@given(pieces=st.lists(_PIECES, max_size=30))
def test_jsonl_of_any_bytes_gives_ok_or_bad_per_line(tmp_path_factory: pytest.TempPathFactory,
                                                      pieces: list[bytes]) -> None:
    path = tmp_path_factory.mktemp("jsonl") / "in.jsonl"
    path.write_bytes(b"".join(pieces))
    items = list(read_jsonl(path))
    _check_lines(items)
    lines = b"".join(pieces).split(b"\n")
    assert sum(isinstance(i, Ok) for i in items) <= len(lines)


@FUZZ
@given(pieces=st.lists(_PIECES, max_size=30))
def test_csv_of_any_bytes_gives_ok_or_bad_per_row(tmp_path_factory: pytest.TempPathFactory,
                                                  pieces: list[bytes]) -> None:
    path = tmp_path_factory.mktemp("csv") / "in.csv"
    path.write_bytes(b"record_id,content,metadata,extra\n" + b"".join(pieces))
    _check_lines(list(read_csv(path)))


@FUZZ
@given(body=st.binary(max_size=200))
def test_csv_without_a_good_header_is_refused_by_name(tmp_path_factory: pytest.TempPathFactory,
                                                      body: bytes) -> None:
    path = tmp_path_factory.mktemp("csvh") / "in.csv"
    path.write_bytes(body)
    try:
        _check_lines(list(read_csv(path)))
    except IngestError as exc:
        assert str(path) in str(exc)


def test_hostile_cells_are_rows_not_crashes(tmp_path: Path) -> None:
    path = tmp_path / "hostile.csv"
    rows = ["record_id,content,metadata"]
    for name, text in STRINGS.items():
        cell = '"' + text[:2000].replace('"', '""') + '"'
        rows.append(f"{name},{cell},\"{{\"\"k\"\": \"\"{name}\"\"}}\"")
    rows.append('deep,"x",' + '"' + deep_json(20_000).replace('"', '""') + '"')
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    items = list(read_csv(path))
    _check_lines(items)
    assert len(items) == len(STRINGS) + 1
    assert isinstance(items[-1], Bad) and items[-1].reason is RejectReason.TOO_LARGE


def test_directory_with_hostile_names_and_links_stays_inside(tmp_path: Path) -> None:
    root, outside = tmp_path / "kb", tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    (outside / "passwd.txt").write_text("root:x:0:0:secret outside the tree")
    names = ["a b.txt", "ü-nicode.md", "semi;colon.txt", "$(touch x).txt", "quote'\".html",
             "tab\tname.txt", "new\nline.txt", "..dotdot.txt"]
    for name in names:
        (root / name).write_text(f"Refunds take five business days. {name}")
    (root / "bad.txt").write_bytes(INVALID_UTF8["ff_fe"] + b" refunds")
    (root / "escape.txt").symlink_to(outside / "passwd.txt")
    (root / "escape-dir").symlink_to(outside)
    (root / "relative.txt").symlink_to(Path("..") / "secret" / "passwd.txt")
    (root / "loop").symlink_to(root)
    (root / "dangling.txt").symlink_to(root / "missing.txt")
    os.mkfifo(root / "fifo.txt")
    items = list(read_directory(root))
    _check_lines(items)
    read = {i.record.record_id: i.record.content for i in items if isinstance(i, Ok)}
    assert all("secret outside" not in content for content in read.values())
    refused = {i.detail.split(":")[0]: i.reason for i in items if isinstance(i, Bad)}
    for link in ("escape.txt", "escape-dir", "relative.txt"):
        assert refused.get(link) is RejectReason.SYMLINK_OUTSIDE, refused
    assert refused.get("bad.txt") is RejectReason.NOT_UTF8
    assert refused.get("fifo.txt") is RejectReason.UNREADABLE  # and reading did not hang
    assert refused.get("dangling.txt") is RejectReason.UNREADABLE
    controls = {"tab\tname.txt", "new\nline.txt"}  # a record id holds no control character
    assert {i.reason for i in items if isinstance(i, Bad) and any(
        c.split("\t")[0] in i.detail for c in controls)} == {RejectReason.INVALID_FIELD}
    assert {n for n in names if not n.startswith(".")} - controls <= set(read)  # hidden: skipped


def test_paths_that_are_not_records_are_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "x.exe").write_bytes(b"MZ")
    for path in (tmp_path / "missing.jsonl", tmp_path / "x.exe", Path("/etc/passwd"),
                 tmp_path / ".." / ".." / "nope.csv"):
        with pytest.raises(IngestError) as refused:
            list(read_path(path))
        assert str(path) in str(refused.value)
        assert "no such file" in str(refused.value) or "unsupported kind" in str(refused.value)
