"""Ingest readers, record checks and ingest_path on temporary files, with an in-memory sink."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lorafeed.ingest import DeliveryReport, RecordProducer, check_record, ingest_path
from lorafeed.ingest_errors import (
    BadCsvHeader,
    IngestError,
    InvalidRecord,
    ProducerClosed,
    RejectReason,
    UnreadablePath,
    UnsupportedPath,
)
from lorafeed.record_readers import (
    RAW_CAP,
    Bad,
    Ok,
    ParsedLine,
    expected_items,
    read_csv,
    read_directory,
    read_jsonl,
    read_path,
)
from schemas import RecordIngested, Topic, decode

MTIME = datetime(2024, 3, 1, 8, 30, tzinfo=UTC)


def raw(record_id: str, **changes: Any) -> dict[str, Any]:
    record = {"schema_version": 1, "record_id": record_id, "op": "upsert", "source": "kb",
              "content_type": "text/plain", "content": f"text of {record_id}",
              "metadata": {"lang": "en"}, "occurred_at": "2024-01-31T12:00:00Z"}
    record.update(changes)
    return record


def line(record: dict[str, Any]) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


def oks(items: list[ParsedLine]) -> list[Ok]:
    return [item for item in items if isinstance(item, Ok)]


def placed(items: list[ParsedLine]) -> list[tuple[str, int]]:
    return [(ok.record.record_id, ok.line_no) for ok in oks(items)]


def bads(items: list[ParsedLine]) -> dict[int, Bad]:
    return {item.line_no: item for item in items if isinstance(item, Bad)}


def touch(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.utime(path, (MTIME.timestamp(), MTIME.timestamp()))
    return path


# --- JSONL ------------------------------------------------------------------------------------


def test_jsonl_good_lines_keep_their_line_numbers_and_skip_blanks(tmp_path: Path) -> None:
    path = touch(tmp_path / "in.jsonl", b"\xef\xbb\xbf" + line(raw("a")) + b"\n  \r\n"
                 + line(raw("b", content="退款政策")) + line(raw("c"))[:-1])
    items = list(read_jsonl(path))
    assert placed(items) == [("a", 1), ("b", 4), ("c", 5)]
    assert oks(items)[1].record.content == "退款政策"
    assert bads(items) == {}


def test_jsonl_bad_lines_are_reported_with_reasons_and_do_not_stop_the_file(
    tmp_path: Path,
) -> None:
    missing = raw("m")
    del missing["content_type"], missing["source"]
    path = touch(tmp_path / "in.jsonl", b"".join([
        line(raw("a")),
        b'{"schema_version": 1, "record_id": "x",\n',
        line(raw("v2", schema_version=2)),
        line(missing),
        b'{"schema_version": 1, "record_id": "\xff\xfe"}\n',
        b"[1, 2]\n",
        line(raw("z")),
    ]))  # fmt: skip
    items = list(read_jsonl(path))
    assert placed(items) == [("a", 1), ("z", 7)]
    found = bads(items)
    assert {n: bad.reason for n, bad in found.items()} == {
        2: RejectReason.NOT_JSON,
        3: RejectReason.SCHEMA_VERSION,
        4: RejectReason.INVALID_FIELD,
        5: RejectReason.NOT_UTF8,
        6: RejectReason.NOT_AN_OBJECT,
    }
    assert "schema_version 2" in found[3].detail
    assert "content_type" in found[4].detail and "source" in found[4].detail
    assert "\\xff" in found[5].detail


def test_jsonl_line_over_the_cap_is_rejected_and_the_next_line_still_read(tmp_path: Path) -> None:
    huge = line(raw("huge", content="x" * (5 * 1024 * 1024)))
    path = touch(tmp_path / "in.jsonl", line(raw("a")) + huge + line(raw("b")))
    items = list(read_jsonl(path))
    assert placed(items) == [("a", 1), ("b", 3)]
    bad = bads(items)[2]
    assert bad.reason is RejectReason.TOO_LARGE
    assert f"{len(huge) - 1} bytes" in bad.detail and str(RAW_CAP) in bad.detail


def test_jsonl_line_at_exactly_the_cap_is_read(tmp_path: Path) -> None:
    empty = line(raw("edge", content=""))[:-1]
    padding = RAW_CAP - len(empty)
    exact = line(raw("edge", content="y" * padding))
    assert len(exact) == RAW_CAP + 1
    items = list(read_jsonl(touch(tmp_path / "in.jsonl", exact)))
    assert [ok.record.record_id for ok in oks(items)] == ["edge"]


# --- CSV --------------------------------------------------------------------------------------


def test_csv_defaults_optional_columns_and_extras_into_metadata(tmp_path: Path) -> None:
    path = touch(tmp_path / "faq.csv", (
        "\ufeffrecord_id,content,lang,op,content_type,metadata,occurred_at\n"
        'q1,"How do I ask for a refund?",en,,,"{""team"": ""support""}",\n'
        'q2,"<p>退款</p>",zh,upsert,text/html,,2024-02-02T10:00:00+08:00\n'
        "q3,,,delete,,,\n"
    ))  # fmt: skip
    items = list(read_csv(path))
    assert bads(items) == {}
    q1, q2, q3 = (ok.record for ok in oks(items))
    assert (q1.source, q1.content_type, q1.op, q1.occurred_at) == (
        "faq", "text/plain", "upsert", MTIME
    )
    assert q1.metadata == {"lang": "en", "team": "support"}
    assert (q2.content_type, q2.metadata) == ("text/html", {"lang": "zh"})
    assert q2.occurred_at == datetime(2024, 2, 2, 2, 0, tzinfo=UTC)
    assert (q3.op, q3.content) == ("delete", "")


def test_csv_bad_rows_have_the_line_number_of_their_first_line(tmp_path: Path) -> None:
    path = touch(tmp_path / "rows.csv", b"".join([
        b"record_id,content,metadata\n",
        b'r1,"a quoted\nmulti-line cell",\n',
        b"r2,fine,{not json\n",
        b"r3,fine,[1]\n",
        b"r4,caf\xe9,\n",
        b"r5,too,many,fields\n",
        b"\n",
        b"r6,upsert needs content...,\n",
        b",no id,\n",
        b"r7,last,\n",
    ]))  # fmt: skip
    items = list(read_csv(path))
    assert placed(items) == [
        ("r1", 2), ("r6", 9), ("r7", 11)
    ]
    found = bads(items)
    assert sorted(found) == [4, 5, 6, 7, 10]
    assert found[4].reason is RejectReason.INVALID_FIELD and "'metadata'" in found[4].detail
    assert "{not json" in found[4].detail
    assert "JSON object" in found[5].detail
    assert found[6].reason is RejectReason.NOT_UTF8 and "0xe9" in found[6].detail
    assert "4 fields" in found[7].detail
    assert found[10].reason is RejectReason.INVALID_FIELD and "record_id" in found[10].detail


def test_csv_missing_required_column_names_it(tmp_path: Path) -> None:
    path = touch(tmp_path / "x.csv", "record_id,text\nr1,hello\n")
    with pytest.raises(BadCsvHeader, match="'content'") as caught:
        read_csv(path)
    assert isinstance(caught.value, IngestError)
    with pytest.raises(BadCsvHeader, match="no header"):
        read_csv(touch(tmp_path / "empty.csv", ""))
    with pytest.raises(BadCsvHeader, match="repeats column.*'content'"):
        read_csv(touch(tmp_path / "dup.csv", "record_id,content,content\n"))


def test_csv_field_over_the_cap_is_rejected(tmp_path: Path) -> None:
    path = touch(tmp_path / "big.csv", "record_id,content\nbig," + "x" * (RAW_CAP + 10)
                 + "\nsmall,ok\n")
    items = list(read_csv(path))
    assert placed(items) == [("small", 3)]
    assert bads(items)[2].reason is RejectReason.TOO_LARGE


# --- directories ------------------------------------------------------------------------------


def test_directory_reads_nested_files_and_skips_hidden_and_other_kinds(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    touch(docs / "index.html", "<h1>Refunds</h1>")
    touch(docs / "guides" / "setup.MD", "# Setup")
    touch(docs / "guides" / "deep" / "note.txt", "plain note")
    touch(docs / "old.htm", "<p>old</p>")
    touch(docs / "image.png", b"\x89PNG")
    touch(docs / ".secret.txt", "hidden")
    touch(docs / ".git" / "HEAD.txt", "hidden dir")
    items = list(read_directory(docs))
    assert bads(items) == {}
    got = {ok.record.record_id: ok.record for ok in oks(items)}
    assert list(got) == ["guides/deep/note.txt", "guides/setup.MD", "index.html", "old.htm"]
    assert [ok.line_no for ok in oks(items)] == [1, 2, 3, 4]
    assert got["index.html"].content_type == "text/html"
    assert got["old.htm"].content_type == "text/html"
    assert got["guides/setup.MD"].content_type == "text/markdown"
    assert got["guides/deep/note.txt"].content == "plain note"
    assert {r.source for r in got.values()} == {"docs"}
    assert got["index.html"].occurred_at == MTIME
    assert expected_items(docs) == 4


def test_directory_refuses_symlinks_leaving_it_and_reports_bad_files(tmp_path: Path) -> None:
    outside = touch(tmp_path / "private" / "passwords.txt", "hunter2")
    docs = tmp_path / "docs"
    touch(docs / "a.txt", "kept")
    touch(docs / "binary.txt", b"\x00\xff\xfe junk")
    touch(docs / "empty.md", "")
    (docs / "escape.txt").symlink_to(outside)
    (docs / "escape_dir").symlink_to(outside.parent, target_is_directory=True)
    (docs / "alias.txt").symlink_to(docs / "a.txt")
    (docs / "loop_dir").symlink_to(docs, target_is_directory=True)
    with open(docs / "huge.txt", "wb") as handle:
        handle.truncate(RAW_CAP + 1)  # sparse: cheap to create
    items = list(read_directory(docs))
    assert [ok.record.record_id for ok in oks(items)] == ["a.txt", "alias.txt"]
    found = {bad.detail.split(":")[0]: bad for bad in bads(items).values()}
    assert {name: bad.reason for name, bad in found.items()} == {
        "binary.txt": RejectReason.NOT_UTF8,
        "empty.md": RejectReason.INVALID_FIELD,
        "escape.txt": RejectReason.SYMLINK_OUTSIDE,
        "escape_dir": RejectReason.SYMLINK_OUTSIDE,
        "huge.txt": RejectReason.TOO_LARGE,
    }
    assert "outside" in found["escape.txt"].detail
    assert "hunter2" not in repr(items)


# --- dispatch ---------------------------------------------------------------------------------


def test_read_path_dispatches_and_names_unknown_suffixes(tmp_path: Path) -> None:
    assert oks(list(read_path(touch(tmp_path / "a.ndjson", line(raw("n"))))))
    assert oks(list(read_path(touch(tmp_path / "b.csv", "record_id,content\nc,x\n"))))
    assert list(read_path(tmp_path)) == []  # .csv and .ndjson are no directory kinds
    touch(tmp_path / "t.txt", "text")
    assert [ok.record.record_id for ok in oks(list(read_path(tmp_path)))] == ["t.txt"]
    with pytest.raises(UnsupportedPath, match=r"'\.xlsx'.*\.jsonl.*\.csv.*directory"):
        read_path(touch(tmp_path / "sheet.xlsx", b"PK"))
    with pytest.raises(UnreadablePath, match="nope.jsonl"):
        read_path(tmp_path / "nope.jsonl")


def test_expected_items_counts_lines(tmp_path: Path) -> None:
    assert expected_items(touch(tmp_path / "a.jsonl", b"1\n2\n3")) == 3
    assert expected_items(touch(tmp_path / "b.jsonl", b"1\n2\n")) == 2
    assert expected_items(touch(tmp_path / "c.jsonl", b"")) == 0


# --- record checks and ingest_path --------------------------------------------------------------


def test_check_record_accepts_what_the_worker_decodes() -> None:
    model, value = check_record(raw("m1", occurred_at=MTIME))
    assert decode(Topic.RECORDS_RAW, value) == model
    assert check_record(model) == (model, value)


@pytest.mark.parametrize(
    ("change", "reason", "mentions"),
    [
        ({"op": "merge"}, RejectReason.INVALID_FIELD, "merge"),
        ({"colour": "red"}, RejectReason.UNKNOWN_FIELD, "colour"),
        ({"content": "x" * (RAW_CAP + 1)}, RejectReason.TOO_LARGE, str(RAW_CAP)),
        ({"content": "lone \ud800"}, RejectReason.NOT_UTF8, "ud800"),
        ({"metadata": {"a": json.loads("[" * 70 + "]" * 70)}}, RejectReason.TOO_LARGE, "deeper"),
        ({"occurred_at": "2024-01-31T12:00:00"}, RejectReason.INVALID_FIELD, "timezone"),
    ],
)
def test_check_record_refuses_what_the_worker_would_dead_letter(
    change: dict[str, Any], reason: RejectReason, mentions: str
) -> None:
    with pytest.raises(InvalidRecord, match=mentions) as caught:
        check_record(raw("bad-1", **change))
    assert caught.value.reason is reason
    assert "bad-1" in str(caught.value)


class MemorySink:
    """Accepts every record but those whose id starts with "nack"."""

    def __init__(self) -> None:
        self.sent: list[RecordIngested] = []

    def send(self, record: RecordIngested) -> None:
        check_record(record)
        self.sent.append(record)

    def flush(self) -> DeliveryReport:
        failed = [(r.record_id, "refused") for r in self.sent if r.record_id.startswith("nack")]
        return DeliveryReport(len(self.sent) - len(failed), failed)


def test_ingest_path_sends_good_lines_and_collects_bad_ones(tmp_path: Path) -> None:
    path = touch(tmp_path / "in.jsonl", line(raw("a")) + b"oops\n" + line(raw("nack-1"))
                 + line(raw("b", schema_version=3)))
    seen: list[int] = []
    summary = ingest_path(path, MemorySink(), seen.append)
    assert summary.accepted == 1
    assert [(bad.line_no, bad.reason) for bad in summary.rejected] == [
        (2, RejectReason.NOT_JSON), (4, RejectReason.SCHEMA_VERSION)
    ]
    assert summary.failed_delivery == [("nack-1", "refused")]
    assert seen == [1, 2, 3, 4]


def test_producer_refuses_bad_records_and_sends_after_close(tmp_path: Path) -> None:
    producer = RecordProducer("127.0.0.1:1", "unit.", flush_timeout_s=1)
    assert producer.topic == "unit.records.raw"
    with pytest.raises(InvalidRecord, match="merge"):
        producer.send(raw("r", op="merge"))
    producer.send(raw("never-acked"))  # nothing listens there: the ack never comes
    report = producer.close()
    assert report.acked == 0
    assert [record_id for record_id, _ in report.failed] == ["never-acked"]
    with pytest.raises(ProducerClosed):
        producer.send(raw("late"))
