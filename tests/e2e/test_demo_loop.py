"""`lorafeed demo --quick` end to end, as a newcomer runs it, on the real embedded stack (Tansu,
Redis, Milvus Lite) and real models, in its own state dir and ports: a fraud version learned
from analysts' labels is promoted and goes live on both nodes, the labels' request ids are in
its manifest's lineage, answers cite ingested passages, the report is written, and nothing is
left running. What the demo claims is checked against what the processes left behind (adapter
store, node logs, the corpus) wherever possible."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from lorafeed.adapter_store import AdapterStore
from lorafeed.corpus import generate_corpus
from lorafeed.demo_plan import quick

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    state_dir = tmp_path_factory.mktemp("demo") / "state"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "COLUMNS": "160"}
    result = subprocess.run(
        [sys.executable, "-m", "lorafeed", "demo", "--quick", "--state-dir", str(state_dir),
         "--report", str(state_dir.parent / "report.html")],
        env=env, cwd=ROOT, capture_output=True, text=True, timeout=900,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-4000:]
    return state_dir, result.stdout


def test_a_fraud_version_is_promoted_and_live_on_both_nodes(demo_run: tuple[Path, str]) -> None:
    state_dir, out = demo_run
    store = AdapterStore(state_dir / "adapters")
    champion = store.champion("fraud")
    assert champion is not None, out[-3000:]
    manifest = store.verify("fraud", champion.version)  # every file's sha256 checked
    assert manifest.gate.promoted and manifest.gate.numbers["target.lower_bound"] > 0
    for node in ("node-1", "node-2"):
        log = (state_dir / "logs" / f"{node}.log").read_text(errors="replace")
        assert f"task fraud: now serving {champion.version}" in log, node
    assert re.search(rf"fraud@{re.escape(champion.version)} live on node-1 \(\+[\d.]+ s\), "
                     r"node-2 \(\+[\d.]+ s\)", out)
    results = json.loads((state_dir / "results.json").read_text())
    [matrix] = [m for m in results["matrices"] if m["task"] == "fraud"]
    before, after = matrix["values"][0][0], matrix["values"][-1][0]
    assert after >= before + 0.2, matrix  # the labels taught the fresh head


def test_feedback_request_ids_are_in_the_manifest_lineage(demo_run: tuple[Path, str]) -> None:
    state_dir, _out = demo_run
    store = AdapterStore(state_dir / "adapters")
    champion = store.champion("fraud")
    assert champion is not None
    lineage = set(store.read_manifest("fraud", champion.version).lineage.request_ids)
    sent = set(json.loads((state_dir / "results.json").read_text())["feedback_request_ids"])
    assert len(lineage & sent) >= 20
    assert lineage <= sent  # nothing trained that the apps did not label


def test_answers_cite_ingested_passages(demo_run: tuple[Path, str]) -> None:
    state_dir, out = demo_run
    corpus_ids = {r["record_id"] for r in generate_corpus(quick().records, seed=42).records}
    samples = json.loads((state_dir / "results.json").read_text())["samples"]
    cited = [record for _q, _a, record in samples]
    assert cited and set(cited) <= corpus_ids, cited
    assert re.search(r"(\d+) answers from node-1, node-2; \1 cited a passage of a record that "
                     r"answers the question", out)


def test_the_report_is_written_and_nothing_is_left_running(demo_run: tuple[Path, str]) -> None:
    state_dir, out = demo_run
    report = state_dir.parent / "report.html"
    page = report.read_text(encoding="utf-8")
    assert f"report written to {report}" in " ".join(out.split())
    assert page.count("<svg") >= 3 and "Forgetting matrix" in page and "fraud" in page
    assert "stopped every service and the stack" in out
    assert not (state_dir / "stack.json").exists()
    leftovers = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            mentions = str(state_dir) in " ".join(proc.info["cmdline"] or []) or \
                proc.environ().get("LORAFEED_STATE_DIR") == str(state_dir)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if mentions:
            leftovers.append(proc.info["pid"])
    assert leftovers == []
