"""The live dashboard in a real headless browser (Debian's chromium + chromedriver, driven by
Selenium) over real processes on the test stack: two serving nodes, a learner with its /metrics,
and `lorafeed dashboard`. The page loads with the current versions, then, without a reload,
shows a rollout reaching both nodes, a rejected candidate, pending feedback, a dead-lettered
event with its reason, the learner's consumer-group lag and request latency."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lorafeed import procs
from schemas import Topic
from tests.support.adapters import (
    add_version,
    build_adapter,
    classification_task,
    generation_task,
    tiny_base_dir,
)
from tests.support.serving_proc import Node, ServingWorld, stop_all
from tests.support.stack import RunningStack
from tests.support.workers import ROOT, wait_for

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
TIMEOUT_S = 90
NODES = ("node-a", "node-b")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Headless chromium through chromedriver at fixed paths (selenium-manager never runs)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} missing: `make browser` installs Debian's chromium "
                    "and chromium-driver (needs apt and root)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is a test extra")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    profile = tmp_path_factory.mktemp("chromium-profile")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,2400", f"--user-data-dir={profile}"):
        options.add_argument(arg)
    service = Service(str(CHROMEDRIVER), log_output=str(profile / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        driver.quit()  # chromedriver stops the browser it started, then itself


@pytest.fixture(scope="module")
def world(stack: RunningStack, tmp_path_factory: pytest.TempPathFactory) -> ServingWorld:
    tasks = [generation_task("chat"), classification_task("intent")]
    models_dir = tmp_path_factory.mktemp("models")
    built = ServingWorld.create(stack, tmp_path_factory.mktemp("dashboard"), models_dir, tasks)
    for task in tasks:
        built.add_version(task.name, "1.0.0", seed=1)
    return built


def _wait_http(url: str, popen: Any, log: Path) -> None:
    def up() -> bool:
        if popen.poll() is not None:
            raise AssertionError(f"{url}: process exited {popen.returncode}:\n"
                                 f"{log.read_text(errors='replace')[-3000:]}")
        try:
            return httpx.get(url, timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    wait_for(up, TIMEOUT_S, url, interval=0.3)


@pytest.fixture(scope="module")
def services(world: ServingWorld) -> Iterator[dict[str, Any]]:
    """Two nodes, a learner (metrics on), and the dashboard pointed at all three."""
    handles: list[procs.ProcessHandle] = []
    try:
        nodes = [world.spawn_node(name) for name in NODES]
        handles += [n.handle for n in nodes]
        learner_port, dashboard_port = procs.free_port(), procs.free_port()
        learner_log = world.root / "logs" / "learner.log"
        learner, learner_popen = procs.spawn_child(
            "learner", [sys.executable, "-m", "learner"], learner_log, cwd=ROOT,
            env=world.env(LEARNER_TASKS_FILE=str(world.root / "tasks.toml"),
                          LEARNER_MODELS_DIR=str(world.models_dir),
                          LEARNER_DATA_DIR=str(world.root / "learner"),
                          LEARNER_GROUP_ID=f"learner-{world.tag}",
                          LEARNER_CHECK_INTERVAL_S="1", LEARNER_TORCH_THREADS="1",
                          LEARNER_METRICS_PORT=str(learner_port)))
        handles.append(learner)
        learner_metrics = f"http://127.0.0.1:{learner_port}/metrics"
        argv = [sys.executable, "-m", "lorafeed", "dashboard", "--port", str(dashboard_port),
                "--refresh", "0.5", "--learner-metrics", learner_metrics]
        for node in nodes:
            argv += ["--node", node.url]
        dashboard_log = world.root / "logs" / "dashboard.log"
        dashboard, dashboard_popen = procs.spawn_child(
            "dashboard", argv, dashboard_log, cwd=ROOT,
            env=world.env(LORAFEED_DASHBOARD_ADMIN_KEY=world.keys.admin))
        handles.append(dashboard)
        for node in nodes:
            node.wait_ready()
        _wait_http(learner_metrics, learner_popen, learner_log)
        url = f"http://127.0.0.1:{dashboard_port}/"
        _wait_http(f"{url}healthz", dashboard_popen, dashboard_log)
        yield {"nodes": nodes, "url": url, "learner_metrics": learner_metrics,
               "learner_group": f"learner-{world.tag}"}
    finally:
        stop_all(*handles)


_READ = """
const [css, names] = arguments;
return Array.from(document.querySelectorAll(css), (el) => {
  const row = {text: (el.innerText === undefined ? el.textContent : el.innerText).trim()};
  for (const name of names) row[name] = el.getAttribute(name);
  return row;
});"""


def _read(driver: Any, css: str, *names: str) -> list[dict[str, Any]]:
    """The text and the named attributes of every element matching ``css``, read by one script in
    the page: the dashboard's poll re-renders tables, and an element found in one WebDriver call
    and read in the next can be gone by then (a stale-element error failed a CI run)."""
    return list(driver.execute_script(_READ, css, list(names)))


def _texts(driver: Any, css: str) -> list[str]:
    return [row["text"] for row in _read(driver, css)]


def _text(driver: Any, css: str) -> str:
    texts = _texts(driver, css)
    assert len(texts) == 1, f"{css!r} matched {len(texts)} elements"
    return texts[0]


def _body(driver: Any, name: str) -> str:
    return str(_read(driver, "body", name)[0][name])


def _until(driver: Any, check: Callable[[], Any], what: str) -> Any:
    """Wait (reading the live DOM) until ``check`` is truthy; fail with the page text."""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        if found := check():
            return found
        time.sleep(0.3)
    body = driver.execute_script("return document.body.innerText")
    raise AssertionError(f"the page never showed {what}; it shows:\n{body[:4000]}")


def _serving(driver: Any, task: str) -> dict[str, str]:
    return {row["data-node"]: row["text"]
            for row in _read(driver, f'.serving[data-task="{task}"]', "data-node")}


def _post(node: Node, key: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{node.url}{path}", json=body, timeout=60,
                          headers={"Authorization": f"Bearer {key}"})
    assert response.status_code in (200, 202), response.text
    return dict(response.json())


def test_dashboard_shows_versions_live_through_a_rollout(
    browser: Any, world: ServingWorld, services: dict[str, Any]
) -> None:
    driver, (node_a, node_b) = browser, services["nodes"]
    driver.get(services["url"])
    driver.execute_script("window.__sameDocument = 'yes';")  # gone if the page ever reloads

    # -- the page loads with the current versions on both nodes -----------------------------
    assert _texts(driver, '.current[data-task="chat"]') == ["1.0.0"]
    _until(driver, lambda: _serving(driver, "chat") == {n: "1.0.0" for n in NODES}
           and _serving(driver, "intent") == {n: "1.0.0" for n in NODES},
           "1.0.0 served by both nodes")

    # -- traffic: rated answers (pending feedback), scoring (latency), one malformed event --
    key = world.keys.app
    for n in range(5):
        chat = _post(node_a, key, "/v1/chat/completions", {
            "model": "chat", "max_tokens": 3,
            "messages": [{"role": "user", "content": f"question {n}?"}]})
        _post(node_a, key, "/v1/feedback", {"request_id": chat["lorafeed"]["request_id"],
                                            "kind": "rating", "rating": 1})
    for n in range(6):
        _post(node_b, key, "/v1/score", {"task": "intent", "text": f"where is parcel {n}"})
    world.produce(Topic.FEEDBACK_EVENTS, [("garbage", b"{not json")])

    # -- a rollout: 1.1.0 promoted (store + pointer + event), 1.2.0 written but rejected ------
    polls_before = int(_body(driver, "data-polls"))
    promoted = world.add_version("chat", "1.1.0", seed=2)
    world.promote(promoted)
    rejected_gate = {"promoted": False, "reason": "gain below min_gain", "numbers": {"gain": -0.1}}
    base = tiny_base_dir(world.models_dir)
    files = build_adapter(world.task("chat"), base, world.root / "build" / "rejected", seed=3)
    add_version(world.store, world.task("chat"), "1.2.0", base, files, champion=False,
                manifest_changes={"gate": rejected_gate, "parent_version": "1.1.0"})

    _until(driver, lambda: _serving(driver, "chat") == {n: "1.1.0" for n in NODES},
           "1.1.0 served by both nodes")
    assert _serving(driver, "intent") == {n: "1.0.0" for n in NODES}
    assert _texts(driver, '.current[data-task="chat"]') == ["1.1.0"]
    timeline = 'svg.timeline[data-task="chat"] g.version'
    _until(driver, lambda: len(_texts(driver, timeline)) == 3, "three chat versions")
    marks = {row["data-version"]: (row["data-promoted"], row["data-champion"])
             for row in _read(driver, timeline, "data-version", "data-promoted", "data-champion")}
    assert marks == {"1.0.0": ("true", "false"), "1.1.0": ("true", "true"),
                     "1.2.0": ("false", "false")}
    page = _text(driver, "#versions")
    assert "gain below min_gain" in page and "rejected" in page
    _until(driver, lambda: "activated" in _text(driver, "#events"),
           "the nodes' activation events")

    # -- feedback pending, the dead letter's reason, lag, latency ----------------------------
    def pending() -> int:
        cells = _texts(driver, '.pending[data-task="chat"]')
        return int(cells[0].replace(",", "")) if cells and cells[0].isdigit() else 0

    _until(driver, lambda: pending() >= 1, "pending chat feedback")
    scraped = httpx.get(services["learner_metrics"], timeout=5).text
    assert 'lorafeed_learner_pending_examples{task="chat"}' in scraped
    _until(driver, lambda: "not_json" in _texts(driver, "#records .reason"),
           "the malformed feedback's dead-letter reason")
    lags = _text(driver, "table.lags")
    assert services["learner_group"] in lags and "feedback.events" in lags
    latency = {row.split()[0]: row for row in _texts(driver, "table.latency tbody tr")}
    assert set(latency) == set(NODES), latency
    assert int(latency["node-b"].split()[1]) >= 6, latency

    # -- all of it arrived by polling, in the document first loaded --------------------------
    assert driver.execute_script("return window.__sameDocument") == "yes"
    polls_after = int(_body(driver, "data-polls"))
    assert polls_after > polls_before
    assert _body(driver, "data-stale") == "false"
    assert not _texts(driver, "#errors li"), _texts(driver, "#errors li")

