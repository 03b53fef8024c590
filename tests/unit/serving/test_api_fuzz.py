"""Fuzzing the serving node's request handling in process (fakes behind the real API): strict
JSON body parsing never raises anything but JSONDecodeError; every route of `create_app`, fed
hostile bodies, headers and paths, answers below 500 with an error that names the problem; the
prompt builder turns hostile conversations into prompts whose special tokens all come from the
template, or refuses them with a PromptError."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.json_body import loads_strict
from serving.prompt import Passage, PromptConfig, PromptError, build_prompt, forbidden_ids
from tests.security.hostile import (
    BAD_TASKS,
    BAD_VERSIONS,
    INVALID_UTF8,
    STRINGS,
    deep_json,
)
from tests.security.routes import Endpoint, endpoints
from tests.unit.serving.fakes import tokenizer
from tests.unit.serving.harness import ADMIN, APP, Harness, build

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))

_HOSTILE = st.sampled_from(sorted(s[:3000] for s in STRINGS.values()))
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80), st.floats(),
    st.text(max_size=20), _HOSTILE,
    st.sampled_from(["support", "fraud", "support@1.0.0", "fraud@base", "user", "system", "rating",
                     "label", "correction", "1.0.0", "base", "req-0", *BAD_VERSIONS, *BAD_TASKS]),
)
_JSONISH = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.one_of(st.text(max_size=8), st.sampled_from(["role", "content", "source", "record_id"])),
        inner, max_size=4),
    max_leaves=10,
)


@FUZZ
@given(body=st.one_of(
    st.binary(max_size=300),
    _JSONISH.map(lambda v: json.dumps(v).encode("utf-8", "surrogatepass")),
    st.sampled_from([deep_json(50_000).encode(), b'{"a": ' + b"1" * 5000 + b"}", b"NaN",
                     b'{"a": -Infinity}', b"1e999", *INVALID_UTF8.values()]),
))
def test_loads_strict_raises_only_json_decode_errors(body: bytes) -> None:
    try:
        value = loads_strict(body)
    except json.JSONDecodeError as exc:
        assert exc.msg
    else:  # what it accepts is strict JSON that re-encodes as UTF-8
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    yield build(raise_server_exceptions=False)


@st.composite
def _body(draw: st.DrawFn, fields: list[str]) -> dict[str, Any]:
    names = draw(st.lists(st.sampled_from(fields or ["x"]), max_size=len(fields) + 1))
    body = {name: draw(_JSONISH) for name in names}
    if "messages" in body and draw(st.booleans()):
        body["messages"] = [{"role": draw(st.sampled_from(["user", "system", "assistant"])),
                             "content": draw(_HOSTILE)} for _ in range(draw(st.integers(1, 3)))]
    return body


def _assert_named_error(response: Any, what: str) -> None:
    assert response.status_code < 500, f"{what} -> {response.status_code}: {response.text[:500]}"
    if response.status_code >= 400:
        error = response.json()["error"]
        assert error["code"] and error["message"], what


# every route of the real app (with fakes behind it), found when the tests are collected
ROUTES = endpoints(build().client.app)


def test_the_route_list_is_complete() -> None:
    assert len(ROUTES) >= 11, ROUTES


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_route_survives_hostile_bodies(harness: Harness, route: Endpoint,
                                             data: st.DataObject) -> None:
    body = data.draw(_body(list(route.body_fields)))
    raw = json.dumps(body).encode("utf-8", "surrogatepass")
    task = data.draw(st.sampled_from(["support", "fraud", *BAD_TASKS]))
    path = route.url(task=quote(task, safe=""))
    key = ADMIN if path.startswith("/admin") or path == "/metrics" else APP
    response = harness.client.request(route.method, path, content=raw,
                                      headers={**key, "content-type": "application/json"})
    assert response.status_code not in (401, 403), response.text  # the fuzz reached the handler
    _assert_named_error(response, f"{route.method} {path} {raw[:300]!r}")


@pytest.mark.parametrize("name", sorted(STRINGS))
def test_hostile_strings_in_headers_paths_and_queries(harness: Harness, name: str) -> None:
    value = STRINGS[name][:2000]
    # raw UTF-8 bytes; only CR, LF and NUL cannot travel in a header at all
    safe_header = bytes(b for b in value.encode("utf-8") if b not in b"\r\n\x00")
    quoted = quote(value[:200], safe="")  # as a client must send it; the server decodes it
    for path in ("/v1/models", f"/admin/tasks/{quoted}/pin", f"/v1/score?task={quoted}"):
        for headers in ({"X-API-Key": safe_header}, {"Authorization": b"Bearer " + safe_header},
                        {**ADMIN, "X-Request-Id": safe_header}, {**APP, "Cookie": safe_header}):
            response = harness.client.post(path, headers=headers, json={"version": "1.0.0"})
            _assert_named_error(response, f"{path[:80]!r} {list(headers)}")


@pytest.mark.parametrize("task", BAD_TASKS)
def test_traversal_in_task_paths_is_a_4xx(harness: Harness, task: str) -> None:
    for action in ("pin", "unpin", "rollback"):
        response = harness.client.post(f"/admin/tasks/{quote(task, safe='')}/{action}",
                                       headers=ADMIN,
                                       json={"version": "1.0.0"} if action == "pin" else {})
        assert response.status_code in (404, 405, 422), (task, action, response.text)


@pytest.mark.parametrize("version", BAD_VERSIONS)
def test_traversal_in_versions_is_refused_by_name(harness: Harness, version: str) -> None:
    before = list(harness.registry.ops)
    for path, body in (("/admin/tasks/support/pin", {"version": version}),
                       ("/admin/tasks/support/rollback", {"to_version": version})):
        response = harness.client.post(path, headers=ADMIN, json=body)
        assert response.status_code == 422, response.text
        assert "MAJOR.MINOR.PATCH" in response.json()["error"]["message"]
    chat = harness.client.post("/v1/score", headers=APP,
                               json={"task": f"fraud@{version}", "text": "x"})
    assert chat.status_code in (404, 422), chat.text
    assert harness.registry.ops == before, "a refused version reached the registry"
    assert all(leased != version for _task, leased in harness.registry.leased)


_MARKERS = st.sampled_from(["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|pad|>", "<|", "|>",
                            "system", "assistant", "\n"])
_TEXT = st.lists(st.one_of(_MARKERS, _HOSTILE.map(lambda s: s[:200]), st.text(max_size=10)),
                 min_size=1, max_size=6).map("".join)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(messages=st.lists(st.fixed_dictionaries({
    "role": st.sampled_from(["system", "user", "assistant"]), "content": _TEXT}),
    min_size=1, max_size=4), passages=st.lists(st.tuples(_TEXT, _TEXT), max_size=3))
def test_hostile_conversations_never_add_special_tokens(
    messages: list[dict[str, str]], passages: list[tuple[str, str]]
) -> None:
    tok = tokenizer()
    quoted = [Passage(pid[:80], text) for pid, text in passages]
    try:
        built = build_prompt(messages, quoted, tok, PromptConfig(max_prompt_tokens=8192))
    except PromptError as exc:
        assert str(exc)
        return
    # the template alone, with every untrusted string replaced by a harmless word
    plain = [{"role": m["role"], "content": "x"} for m in messages]
    baseline = build_prompt(plain, [Passage("p", "x") for _ in built.cited_ids], tok,
                            PromptConfig(max_prompt_tokens=8192))
    special = forbidden_ids(tok)
    assert sorted(i for i in built.input_ids if i in special) == sorted(
        i for i in baseline.input_ids if i in special)


def test_the_prompt_budget_never_exceeds_the_models_context() -> None:
    from types import SimpleNamespace

    from serving.chat import _prompt_budget

    assert _prompt_budget(768, SimpleNamespace(context_tokens=512), 4) == 508
    assert _prompt_budget(768, SimpleNamespace(context_tokens=512), 10_000) == 256
    assert _prompt_budget(768, SimpleNamespace(context_tokens=8192), 64) == 768
    assert _prompt_budget(768, SimpleNamespace(), 64) == 768  # unknown: the setting
