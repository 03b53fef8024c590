"""Ingest through the real broker: acked records are readable from records.raw with their keys,
bad lines are reported by number, and `run_ingest` exits 0 / 1 / 2 as documented."""

from __future__ import annotations

import io
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from lorafeed.ingest import RecordProducer, ingest_path
from lorafeed.ingest_cli import EXIT_FATAL, EXIT_OK, EXIT_REJECTED, run_ingest
from lorafeed.ingest_errors import BrokerError, RejectReason
from lorafeed.kafka_clients import make_consumer
from lorafeed.procs import free_port
from schemas import RecordIngested, Topic, decode, topic_name
from tests.support.stack import RunningStack

pytestmark = pytest.mark.integration


def raw(record_id: str, **changes: Any) -> dict[str, Any]:
    record = {"schema_version": 1, "record_id": record_id, "op": "upsert", "source": "it",
              "content_type": "text/plain", "content": f"body of {record_id}",
              "metadata": {}, "occurred_at": "2024-01-31T12:00:00Z"}
    record.update(changes)
    return record


def jsonl(path: Path, ids: list[str], bad_at: dict[int, bytes]) -> Path:
    """A JSONL file holding `ids` in order, with `bad_at[line_no]` inserted at those lines."""
    lines, good = [], iter(ids)
    for line_no in range(1, len(ids) + len(bad_at) + 1):
        lines.append(bad_at.get(line_no) or json.dumps(raw(next(good))).encode())
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def read_raw(stack: RunningStack, wanted: set[str], timeout_s: float = 20) -> dict[str, Any]:
    """record_id -> (key, decoded record) for every wanted id found on records.raw."""
    consumer = make_consumer(stack.bootstrap, f"ingest-it-{uuid.uuid4().hex[:8]}")
    consumer.subscribe([topic_name(Topic.RECORDS_RAW, stack.prefix)])
    found: dict[str, tuple[str, RecordIngested]] = {}
    deadline = time.monotonic() + timeout_s
    try:
        while set(found) != wanted and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            record = decode(Topic.RECORDS_RAW, msg.value())
            if record.record_id in wanted:
                found[record.record_id] = (msg.key().decode(), record)
    finally:
        consumer.close()
    return found


def test_jsonl_good_lines_are_acked_and_readable_bad_lines_reported(
    stack: RunningStack, tmp_path: Path
) -> None:
    run = uuid.uuid4().hex[:8]
    ids = [f"it-{run}-{n:02d}" for n in range(50)]
    bad_at = {7: b'{"schema_version": 1, "record_id": ', 23: json.dumps(raw("v9", schema_version=9)
              ).encode(), 53: b'{"record_id": "\xff"}'}  # fmt: skip
    path = jsonl(tmp_path / "records.jsonl", ids, bad_at)
    with RecordProducer(stack.bootstrap, stack.prefix) as producer:
        producer.check_broker()
        summary = ingest_path(path, producer)
    assert summary.accepted == 50
    assert summary.failed_delivery == []
    assert [(bad.line_no, bad.reason) for bad in summary.rejected] == [
        (7, RejectReason.NOT_JSON), (23, RejectReason.SCHEMA_VERSION), (53, RejectReason.NOT_UTF8)
    ]
    found = read_raw(stack, set(ids))
    assert set(found) == set(ids)
    assert all(key == record_id for record_id, (key, _) in found.items())
    assert found[ids[0]][1].content == f"body of {ids[0]}"


def test_check_broker_refuses_a_prefix_whose_topic_does_not_exist(stack: RunningStack) -> None:
    producer = RecordProducer(stack.bootstrap, "nosuchprefix.")
    with pytest.raises(BrokerError, match=r"topic nosuchprefix\.records\.raw does not exist"):
        producer.check_broker()
    assert producer.close().acked == 0


def test_cli_exit_codes(stack: RunningStack, tmp_path: Path) -> None:
    run = uuid.uuid4().hex[:8]
    good = jsonl(tmp_path / "good.jsonl", [f"cli-{run}-{n}" for n in range(5)], {})
    # Broker and prefix come from the stack's state file.
    code, out = _run(good, None, None, stack.settings.state_dir)
    assert code == EXIT_OK, out
    assert "accepted" in out and " 5 " in out

    bad_lines = {2: b"[1]"} | {n: b"not json" for n in range(4, 28)}
    mixed = jsonl(tmp_path / "mixed.jsonl", [f"cli-{run}-m{n}" for n in range(3)], bad_lines)
    code, out = _run(mixed, stack.bootstrap, stack.prefix, tmp_path / "no-state")
    assert code == EXIT_REJECTED, out
    assert "not_an_object" in out and "not_json" in out
    assert "... and 5 more rejected lines" in out  # 25 rejected, 20 listed
    assert read_raw(stack, {f"cli-{run}-m{n}" for n in range(3)}).keys() == {
        f"cli-{run}-m{n}" for n in range(3)
    }

    code, out = _run(good, None, None, tmp_path / "no-state")
    assert code == EXIT_FATAL
    assert "no broker: start one with 'lorafeed stack up'" in out

    code, out = _run(tmp_path / "missing.jsonl", stack.bootstrap, stack.prefix, tmp_path)
    assert code == EXIT_FATAL and "missing.jsonl" in out

    (tmp_path / "table.xlsx").write_bytes(b"PK")
    code, out = _run(tmp_path / "table.xlsx", stack.bootstrap, stack.prefix, tmp_path)
    assert code == EXIT_FATAL and ".xlsx" in out

    code, out = _run(good, f"127.0.0.1:{free_port()}", "", tmp_path)
    assert code == EXIT_FATAL and "did not answer" in out


def test_cli_ingests_a_directory_and_lists_rejected_files(
    stack: RunningStack, tmp_path: Path
) -> None:
    docs = tmp_path / f"docs-{uuid.uuid4().hex[:8]}"
    (docs / "faq").mkdir(parents=True)
    (docs / "faq" / "refund.md").write_text("# 退款\n收到商品后 30 天内可申请退款。")
    (docs / "index.html").write_text("<h1>Help</h1><p>Welcome</p>")
    (docs / "junk.txt").write_bytes(b"\xff\xfe\x00junk")
    code, out = _run(docs, stack.bootstrap, stack.prefix, tmp_path)
    assert code == EXIT_REJECTED, out
    assert "junk.txt" in out and "not_utf8" in out
    found = read_raw(stack, {"faq/refund.md", "index.html"})
    assert {r.source for _, r in found.values()} == {docs.name}
    assert found["faq/refund.md"][1].content_type == "text/markdown"


def _run(path: Path, bootstrap: str | None, prefix: str | None, state_dir: Path) -> tuple[int, str]:
    buffer = io.StringIO()
    code = run_ingest(path, bootstrap, prefix, state_dir, Console(file=buffer, width=200))
    return code, buffer.getvalue()
