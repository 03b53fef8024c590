"""The hostile corpus through the HTTP and CLI entry points, against the running world: every
route of the serving app (enumerated from `create_app`, so a new route without hostile cases
fails here) gets each hostile string in each of its fields, plus body bombs; no answer is a 5xx,
every 4xx names its problem, and the node logs no traceback. `lorafeed ingest` refuses hostile
files and paths by name; `lorafeed search`, `adapters` and `review` refuse hostile arguments with
a message and an exit code, and change nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from typer.testing import CliRunner

from lorafeed.cli import app as cli_app
from schemas import Topic
from tests.security.hostile import (
    BAD_TASKS,
    BAD_VERSIONS,
    INVALID_UTF8,
    MB,
    STRINGS,
    TEN_MB,
    big_text,
    deep_html,
    deep_json,
    raw_record_payloads,
    record,
)
from tests.security.routes import endpoints
from tests.security.world import SecureWorld, wait_until
from tests.support.workers import ROOT
from tests.unit.serving.harness import build

pytestmark = pytest.mark.integration

ROUTES = endpoints(build().client.app)
H = dict(sorted(STRINGS.items()))
Body = dict[str, Any]


def _chat(h: str) -> list[Body]:
    return [{"model": "chat", "max_tokens": 1, "messages": [{"role": "user", "content": h}]},
            {"model": "chat", "max_tokens": 1, "stop": [h[:100] or "x"], "user": h[:200],
             "messages": [{"role": "system", "content": h}, {"role": "user", "content": "hi"}]},
            {"model": h[:300] or "x", "messages": [{"role": "user", "content": "hi"}]}]


def _score(h: str) -> list[Body]:
    return [{"task": "intent", "text": h}, {"task": "intent", "fields": {h[:64] or "k": h}},
            {"task": h[:300] or "x", "text": "refund"}]


def _feedback(h: str, served: dict[str, str]) -> list[Body]:
    return [{"request_id": h[:256] or "x", "kind": "rating", "rating": 1},
            {"request_id": served["chat"], "kind": "correction", "correction": h[:30_000] or "x",
             "annotator": h[:256] or None},
            {"request_id": served["intent"], "kind": "label", "label": h[:256] or "x"}]


def _search(h: str) -> list[Body]:
    return [{"query": h[:8000] or "x"}, {"query": "refund", "filter": {"source": h}},
            {"query": "refund", "filter": {"record_id": [h, "x"]}},
            {"query": "refund", "filter": {h[:64] or "k": "x"}}]


def _admin(h: str, action: str) -> list[Body]:
    return {"pin": [{"version": h[:300]}, {"version": "1.0.0", "reason": h[:1000]}],
            "unpin": [{"reason": h[:1000]}], "rollback": [{"to_version": h[:300]}]}[action]


def _cases(method: str, path: str, served: dict[str, str]) -> Callable[[str], list[Body]] | None:
    """Hostile bodies per route: each route of the app needs an entry (None: a GET)."""
    table: dict[tuple[str, str], Callable[[str], list[Body]] | None] = {
        ("POST", "/v1/chat/completions"): _chat,
        ("POST", "/v1/score"): _score,
        ("POST", "/v1/feedback"): lambda h: _feedback(h, served),
        ("POST", "/v1/search"): _search,
        ("POST", "/admin/tasks/{task}/pin"): lambda h: _admin(h, "pin"),
        ("POST", "/admin/tasks/{task}/unpin"): lambda h: _admin(h, "unpin"),
        ("POST", "/admin/tasks/{task}/rollback"): lambda h: _admin(h, "rollback"),
        ("GET", "/healthz"): None, ("GET", "/readyz"): None, ("GET", "/metrics"): None,
        ("GET", "/v1/models"): None,
    }
    assert (method, path) in table, f"{method} {path} has no hostile cases: add them here"
    return table[(method, path)]


def _check(response: httpx.Response, what: str, problems: list[str]) -> None:
    if response.status_code >= 500:
        problems.append(f"{what} -> {response.status_code}: {response.text[:300]}")
    elif response.status_code >= 400:
        error = response.json().get("error", {})
        if not (error.get("code") and error.get("message")):
            problems.append(f"{what} -> {response.status_code} without a named error")


def _served(world: SecureWorld) -> dict[str, str]:
    with world.http() as client:
        chat = client.post("/v1/chat/completions", json={
            "model": "chat", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]})
        score = client.post("/v1/score", json={"task": "intent", "text": "refund please"})
    return {"chat": chat.json()["lorafeed"]["request_id"], "intent": score.json()["request_id"]}


def test_every_route_answers_hostile_input_with_a_named_4xx_or_success(
    world: SecureWorld,
) -> None:
    served, problems = _served(world), []
    with world.http("app") as app, world.http("admin") as admin:
        for route in ROUTES:
            client = admin if route.path.startswith("/admin") or route.path == "/metrics" else app
            cases = _cases(route.method, route.path, served)
            for name, h in H.items():
                path = route.url(task="intent")
                if cases is None:
                    response = client.request(route.method, f"{path}?q={quote(h[:500])}",
                                              headers={"X-Trace": _header(h)})
                    _check(response, f"{route.method} {path} ?{name}", problems)
                    continue
                for index, body in enumerate(cases(h)):
                    response = client.request(route.method, path, json=body)
                    _check(response, f"{route.method} {path} {name}#{index}", problems)
                if "{task}" in route.path:
                    bad = client.post(route.url(task=quote(h[:200], safe="")), json={})
                    _check(bad, f"{route.method} {route.path} task={name}", problems)
        _restore(admin)
    assert problems == [], "\n".join(problems[:20])
    world.assert_alive()


def _header(h: str) -> bytes:
    """`h` as raw UTF-8 header bytes, minus the controls HTTP/1.1 cannot carry at all."""
    kept = bytes(b for b in h[:2000].encode("utf-8") if b >= 0x20 and b != 0x7F or b == 0x09)
    return kept.strip(b" \t") or b"-"


def _restore(admin: httpx.Client) -> None:
    assert admin.post("/admin/tasks/intent/unpin", json={"reason": "hostile test"}).status_code \
        == 200


@pytest.mark.parametrize(("name", "body", "status"), [
    ("ten-mb", json.dumps({"task": "intent", "text": big_text(TEN_MB)}).encode(), 413),
    ("deep-json", b'{"task": "intent", "text": ' + deep_json(400_000).encode() + b"}", 422),
    ("deep-fields", b'{"task": "intent", "fields": {"a": ' + deep_json(2000).encode() + b"}}", 422),
    ("huge-int", b'{"task": "intent", "fields": {"a": ' + b"9" * 5000 + b"}}", 422),
    ("nan", b'{"task": "intent", "fields": {"a": NaN}}', 422),
    ("nul", b"\x00" * 100, 422),
    *[(f"utf8-{n}", b'{"task": "intent", "text": "' + v + b'"}', 422)
      for n, v in INVALID_UTF8.items()],
])
def test_body_bombs_get_a_clear_4xx(world: SecureWorld, name: str, body: bytes,
                                    status: int) -> None:
    with world.http() as client:
        response = client.post("/v1/score", content=body,
                               headers={"Content-Type": "application/json"})
    assert response.status_code == status, response.text[:300]
    assert response.json()["error"]["message"]
    world.assert_alive()


def test_a_filter_cannot_be_injected_into_milvus(world: SecureWorld) -> None:
    records = [record(f"kb-{world.serving.tag}-{n}", f"Refund rule {n}: refunds take {n + 2} "
                      "business days after the parcel reaches our warehouse.", source="kb")
               for n in range(3)]
    world.produce(Topic.RECORDS_RAW, [(r["record_id"], json.dumps(r).encode()) for r in records])
    with world.http() as client:
        def indexed() -> list[Any]:
            hits = client.post("/v1/search", json={"query": "refund", "top_k": 50,
                                                   "filter": {"source": "kb"}}).json()["hits"]
            return hits if len(hits) >= 3 else []

        wait_until(indexed, 180, "the knowledge records searchable", world)
        for h in (STRINGS["milvus_filter"], 'x" || true || "', "x\\\" or 1==1 or \\\"x"):
            found = client.post("/v1/search", json={"query": "refund", "top_k": 50,
                                                    "filter": {"source": h}})
            assert found.status_code == 200 and found.json()["hits"] == [], found.text[:300]


# -- CLI --------------------------------------------------------------------------------------


def _lorafeed(world: SecureWorld, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lorafeed", *args], env=world.env(COLUMNS="200"),
                          cwd=ROOT, capture_output=True, text=True, timeout=180)


def test_ingest_refuses_hostile_files_and_paths_by_name(world: SecureWorld, tmp_path: Path) -> None:
    tree, outside = tmp_path / "kb", tmp_path / "outside"
    tree.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("secret outside the tree " * 10)
    (tree / "good.txt").write_text("Refunds take five business days after the parcel arrives.")
    (tree / "deep.html").write_text(deep_html(50_000))
    (tree / "bad.txt").write_bytes(INVALID_UTF8["ff_fe"] + b"refund")
    (tree / "big.txt").write_text(big_text(5 * MB))
    (tree / "escape.txt").symlink_to(outside / "secret.txt")
    (tree / "up.txt").symlink_to(Path("..") / "outside" / "secret.txt")
    (tree / "outside-dir").symlink_to(outside)
    os.mkfifo(tree / "pipe.txt")
    (tree / "line\nbreak.txt").write_text("Refunds take five business days, with a newline name.")
    jsonl = tmp_path / "hostile.jsonl"
    lines = [p.value for p in raw_record_payloads("cli") if b"\n" not in p.value]
    jsonl.write_bytes(b"\n".join([*lines, b"y" * TEN_MB, deep_json(100_000).encode()]) + b"\n")
    common = ["--bootstrap", world.serving.scenario.stack.bootstrap, "--prefix", world.prefix]

    done = _lorafeed(world, "ingest", str(tree / ".." / "kb"), *common)
    assert done.returncode == 1, done.stdout + done.stderr
    for needle in ("symlink_outside", "escape.txt", "up.txt", "outside-dir", "not_utf8",
                   "too_large", "big.txt", "unreadable", "pipe.txt", "invalid_field"):
        assert needle in done.stdout, (needle, done.stdout)
    assert "secret outside" not in done.stdout and "Traceback" not in done.stderr

    done = _lorafeed(world, "ingest", str(jsonl), *common)
    assert done.returncode == 1, done.stdout + done.stderr
    for needle in ("too_large", "not_utf8", "not_json", "accepted"):
        assert needle in done.stdout, (needle, done.stdout)
    assert "Traceback" not in done.stderr

    runner = CliRunner()
    for path in (tmp_path / "missing.jsonl", Path("/etc/passwd"), tmp_path / "x.exe"):
        result = runner.invoke(cli_app, ["ingest", str(path), *common], env=world.env(
            COLUMNS="300"))
        assert result.exit_code == 2 and str(path) in result.output, result.output
    world.assert_alive()


def test_search_refuses_hostile_arguments_and_survives_hostile_text(world: SecureWorld) -> None:
    names = ("sql_drop", "chat_markers", "milvus_filter", "c0_controls", "format_string", "cjk")
    query = " ".join(STRINGS[n][:200] for n in names)
    runner, env = CliRunner(), world.env(COLUMNS="300")
    done = runner.invoke(cli_app, ["search", query, "--collection", world.collection, "--json"],
                         env=env)
    assert done.exit_code == 0 and done.exception is None, done.output
    assert isinstance(json.loads(done.stdout), list)
    done = runner.invoke(cli_app, ["search", "refund", "--collection",
                                   'x"; drop collection knowledge'], env=env)
    assert done.exit_code == 1 and "collection must match" in done.output, done.output
    done = runner.invoke(cli_app, ["search", "refund", "--top-k", "0"], env=env)
    assert done.exit_code == 2 and "top-k" in done.output.lower(), done.output


def test_adapters_and_review_refuse_hostile_names(world: SecureWorld) -> None:
    runner = CliRunner()
    env = world.env(COLUMNS="200")
    store = world.serving.store
    before = {t: store.champion(t) for t in ("chat", "intent")}
    pins = {t: store.pinned(t) for t in ("chat", "intent")}
    calls: list[list[str]] = []
    for task in BAD_TASKS[:5]:
        calls += [["adapters", "show", task, "1.0.0"], ["adapters", "list", task],
                  ["adapters", "rollback", task, "1.0.0"], ["adapters", "pin", task, "1.0.0"],
                  ["adapters", "unpin", task], ["adapters", "diff", task, "1.0.0", "1.1.0"],
                  ["review", "list", task], ["review", "resolve", task, "item", "billing"]]
    for version in BAD_VERSIONS[:6]:
        calls += [["adapters", "show", "intent", version], ["adapters", "pin", "intent", version],
                  ["adapters", "rollback", "intent", version],
                  ["adapters", "diff", "intent", version, "1.0.0"]]
    calls += [["adapters", "affected", STRINGS["sql_drop"]],
              ["review", "resolve", "intent", STRINGS["sql_drop"], "billing"],
              ["review", "resolve", "intent", "item", STRINGS["sql_drop"]],
              ["adapters", "pin", "intent", "1.0.0", "--actor", "a\x00b"]]
    for args in calls:
        result = runner.invoke(cli_app, args, env=env)
        what = f"lorafeed {' '.join(map(repr, args))}"
        assert result.exception is None or isinstance(result.exception, SystemExit), (
            f"{what} crashed: {result.exception!r}")
        if args[1] not in ("affected", "list") or args[0] == "review":
            assert result.exit_code != 0 or "no disputed labels" in result.output, (
                what, result.output)
        assert result.output.strip(), f"{what}: no message"
    assert {t: store.champion(t) for t in ("chat", "intent")} == before
    assert {t: store.pinned(t) for t in ("chat", "intent")} == pins
    assert sorted(p.name for p in (world.root / "adapters").iterdir()
                  if not p.name.startswith(".")) == ["chat", "intent"]
