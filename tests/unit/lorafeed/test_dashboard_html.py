"""Rendering the dashboard: sections from a view, escaping, inline SVG charts, a page that needs
no network, the settings, and the web app (pages served from an in-memory collector)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from lorafeed.dashboard import Dashboard, create_app
from lorafeed.dashboard_html import SECTIONS, render_sections
from lorafeed.dashboard_metrics import parse_samples
from lorafeed.dashboard_model import History, Scrape, Snapshot, TaskVersions, VersionRow
from lorafeed.dashboard_page import render_page
from lorafeed.dashboard_settings import DashboardSettings
from lorafeed.dashboard_svg import sparkline, timeline
from lorafeed.dashboard_view import build_view

T0 = 1_780_000_000.0
EVIL = '<script>alert("x")</script>'
NODE = """\
# TYPE lorafeed_serving_active_adapter gauge
lorafeed_serving_active_adapter{task="chat",version="1.1.0"} 1.0
"""


def make_snapshot(at: float = T0, champion: str = "1.1.0") -> Snapshot:
    chat = TaskVersions("chat", (
        VersionRow("1.0.0", None, T0 - 60, True, "first"),
        VersionRow("1.1.0", "1.0.0", T0 - 30, True, EVIL, gate_numbers={"gain": 0.25}),
    ), champion=champion)
    return Snapshot(taken_at=at, ends={"records.raw": 3}, tasks=(chat,), nodes=(
        Scrape("http://a", tuple(parse_samples(NODE)), node_id="node-a"),))


def view_of(snap: Snapshot) -> dict[str, object]:
    return build_view(snap, History().push(snap))


def test_sections_show_versions_nodes_and_escape_everything() -> None:
    html = render_sections(view_of(make_snapshot()))
    assert set(html) == set(SECTIONS)
    assert EVIL not in "".join(html.values()) and "&lt;script&gt;" in html["versions"]
    assert '<b class="current" data-task="chat">1.1.0</b>' in html["versions"]
    assert re.search(r'class="serving sync" data-node="node-a" data-task="chat"[^>]*>1\.1\.0<',
                     html["nodes"])
    assert 'data-version="1.1.0" data-promoted="true" data-champion="true"' in html["versions"]
    assert "gain=0.25" in html["versions"]


def test_a_node_behind_the_champion_is_marked() -> None:
    html = render_sections(view_of(make_snapshot(champion="1.0.0")))
    assert 'class="serving behind" data-node="node-a" data-task="chat"' in html["nodes"]


def test_the_page_is_self_contained_and_polls_state_json() -> None:
    page = render_page(render_sections(view_of(make_snapshot())), "2026-01-01T00:00:00Z", 1.5)
    for name in SECTIONS:
        assert f'<div id="{name}">' in page
    assert "fetch('state.json'" in page and "1500" in page
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page), "no external resources"
    assert "<script src" not in page and "<link" not in page


def test_sparkline_breaks_at_gaps_and_draws_an_empty_frame() -> None:
    svg = sparkline([1.0, 2.0, None, 3.0, 4.0], width=50, height=20, label="a<b")
    assert svg.count("<polyline") == 2 and "<title>a&lt;b</title>" in svg
    assert "<polyline" not in sparkline([]) and "<polyline" not in sparkline([None, None])
    assert "<circle" in sparkline([None, 5.0, None])  # a lone point stays visible
    with pytest.raises(ValueError, match="4x20"):
        sparkline([1.0], width=4, height=20)


def test_timeline_places_versions_by_time_and_rings_the_champion() -> None:
    rows = [{"version": "1.0.0", "created_epoch": 0.0, "promoted": True, "champion": False,
             "reason": "r", "created_at": "t", "gate": {}},
            {"version": "1.1.0", "created_epoch": 100.0, "promoted": False, "champion": True,
             "reason": "r", "created_at": "t", "gate": {"gain": -0.5}}]
    svg = timeline("chat", rows, width=200)
    xs = [float(x) for x in re.findall(r'<circle cx="([\d.]+)" cy="39" r="6"', svg)]
    assert xs == [36.0, 164.0]  # the padded ends of the axis
    assert svg.count('r="10"') == 1 and "gain=-0.5" in svg
    assert "no versions yet" in timeline("chat", [])


def test_settings_parse_comma_separated_urls_and_name_a_bad_one() -> None:
    settings = DashboardSettings(nodes="http://a:1/, http://b:2", learner_metrics="http://l:9")
    assert settings.nodes == ["http://a:1", "http://b:2"]
    assert settings.learner_metrics == ["http://l:9/metrics"]
    with pytest.raises(ValidationError, match="ftp://x"):
        DashboardSettings(nodes="ftp://x")
    with pytest.raises(ValidationError):
        DashboardSettings(refresh_s=0)


def test_the_app_serves_the_page_and_the_polled_state() -> None:
    clock = iter([T0, T0 + 1])
    current = {"champion": "1.0.0"}

    def collect() -> Snapshot:
        return make_snapshot(next(clock), champion=current["champion"])

    dashboard = Dashboard(collect, DashboardSettings(refresh_s=1))
    dashboard.update()
    client = TestClient(create_app(dashboard))
    page = client.get("/")
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert '<b class="current" data-task="chat">1.0.0</b>' in page.text
    current["champion"] = "1.1.0"
    dashboard.update()
    state = client.get("/state.json").json()
    assert state["data"]["summary"]["champions"] == {"chat": "1.1.0"}
    assert '<b class="current" data-task="chat">1.1.0</b>' in state["html"]["versions"]
    assert state["data"]["topics"][0]["rates"] == [0.0]  # two refreshes, one rate
    assert client.get("/healthz").json()["status"] == "ok"


def test_collector_without_a_broker_says_so_and_still_reads_the_store(tmp_path: Path) -> None:
    from lorafeed.adapter_store import AdapterStore
    from lorafeed.dashboard import Collector
    from lorafeed.dashboard_scrape import StoreReader

    (tmp_path / "chat").mkdir()
    (tmp_path / "chat" / "champion.json").write_text("{broken")
    collector = Collector(DashboardSettings(), None, StoreReader(AdapterStore(tmp_path)),
                          clock=lambda: T0)
    snap = collector.snapshot()
    assert snap.taken_at == T0 and snap.ends == {} and snap.nodes == ()
    assert "no broker configured" in snap.errors["broker"]
    assert "champion.json" in snap.errors["adapter store chat"]  # the bad pointer, named
