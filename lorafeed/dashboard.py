"""``lorafeed dashboard``: a live page over the whole loop, aggregated from the broker (topic
ends, consumer-group lag, model events, dead letters), the adapter store (versions, gate
verdicts, champions), serving nodes (/healthz, /metrics), streams workers and learners
(/metrics). A background thread refreshes a snapshot every ``refresh_s``; ``/`` renders it and
``/state.json`` serves it to the page's poll. Read-only: it commits nothing, writes nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, JSONResponse

from lorafeed.adapter_store import AdapterStore
from lorafeed.dashboard_access import AccessKeyMiddleware
from lorafeed.dashboard_broker import BrokerReader, BrokerUnavailable
from lorafeed.dashboard_html import render_sections
from lorafeed.dashboard_model import History, Snapshot
from lorafeed.dashboard_page import render_page
from lorafeed.dashboard_scrape import StoreReader, scrape_all
from lorafeed.dashboard_settings import DashboardSettings
from lorafeed.dashboard_view import build_view, scrape_errors
from lorafeed.settings import PlatformSettings
from schemas import Topic, topic_name

log = logging.getLogger(__name__)
_NO_CACHE = {"Cache-Control": "no-store"}


class Collector:
    """Builds one `Snapshot` from every source; a failing source becomes an error entry."""

    def __init__(self, settings: DashboardSettings, broker: BrokerReader | None,
                 store: StoreReader, *, clock: Callable[[], float] = time.time) -> None:
        self.settings, self.broker, self.store, self.clock = settings, broker, store, clock

    def snapshot(self) -> Snapshot:
        errors: dict[str, str] = {}
        ends: dict[str, int] = {}
        lags: tuple[Any, ...] = ()
        if self.broker is None:
            errors["broker"] = "no broker configured (LORAFEED_BOOTSTRAP_SERVERS or a stack)"
        else:
            try:
                by_partition = self.broker.end_offsets()
                names = {topic_name(t, self.broker.prefix): t.value for t in Topic}
                for (name, _partition), end in by_partition.items():
                    ends[names[name]] = ends.get(names[name], 0) + end
                errors |= {f"topic {t}": why for t, why in self.broker.unreadable.items()}
                lags = tuple(self.broker.group_lags(by_partition))
                self.broker.follow()
            except BrokerUnavailable as exc:
                errors["broker"] = str(exc)
        s = self.settings
        key = s.admin_key.get_secret_value() if s.admin_key else None
        nodes, streams, learners = scrape_all(
            s.nodes, s.streams_metrics, s.learner_metrics, timeout_s=s.http_timeout_s,
            admin_key=key)
        for kind, scrapes in (("node", nodes), ("streams", streams), ("learner", learners)):
            errors |= scrape_errors(scrapes, kind)
        tasks = self.store.tasks()
        errors |= {f"adapter store {t.task}": t.error for t in tasks if t.error}
        return Snapshot(
            taken_at=self.clock(), ends=ends, lags=lags,
            rejected={} if self.broker is None else
            {t: dict(c) for t, c in self.broker.rejected.items()},
            nodes=nodes, streams=streams, learners=learners, tasks=tasks,
            events=() if self.broker is None else tuple(self.broker.events), errors=errors,
        )


class Dashboard:
    """The latest rendered state, refreshed by `update` (one thread) and read by the web app."""

    def __init__(self, collect: Callable[[], Snapshot], settings: DashboardSettings) -> None:
        self._collect, self.settings = collect, settings
        self._history = History(size=settings.history)
        self._lock = threading.Lock()
        self._state: dict[str, Any] = {"generated_at": "never", "data": {}, "html": {}}

    def update(self) -> None:
        snapshot = self._collect()
        self._history = self._history.push(snapshot)
        view = build_view(snapshot, self._history)
        state = {"generated_at": view["generated_at"], "data": view,
                 "html": render_sections(view)}
        with self._lock:
            self._state = state

    def state(self) -> dict[str, Any]:
        with self._lock:
            return self._state

    def page(self) -> str:
        state = self.state()
        return render_page(state["html"], state["generated_at"], self.settings.refresh_s)

    def run(self, stop: threading.Event) -> None:
        """Refresh every ``refresh_s`` until ``stop``; a failed refresh keeps the last state."""
        while not stop.wait(self.settings.refresh_s):
            try:
                self.update()
            except Exception:  # keep serving the last good state; the next refresh may work
                log.exception("dashboard: refresh failed")
                with self._lock:
                    self._state = {**self._state,
                                   "generated_at": f"{self._state['generated_at']} (stale)"}


def create_app(dashboard: Dashboard) -> FastAPI:
    app = FastAPI(title="lorafeed dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    key = dashboard.settings.access_key
    if key is not None:
        app.add_middleware(AccessKeyMiddleware, key=key.get_secret_value())

    @app.get("/", response_class=HTMLResponse)
    def page() -> HTMLResponse:
        return HTMLResponse(dashboard.page(), headers=_NO_CACHE)

    @app.get("/state.json")
    def state() -> JSONResponse:
        return JSONResponse(dashboard.state(), headers=_NO_CACHE)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "generated_at": str(dashboard.state()["generated_at"])}

    return app


def _broker(platform: PlatformSettings) -> BrokerReader | None:
    from lorafeed.stack import load_state

    stack = load_state(platform.state_dir)
    bootstrap = platform.bootstrap_servers or (stack.bootstrap_servers if stack else None)
    prefix = platform.topic_prefix or (stack.topic_prefix if stack else "")
    return BrokerReader(bootstrap, prefix) if bootstrap else None


def main(settings: DashboardSettings, platform: PlatformSettings,
         announce: Callable[[str], None] = print) -> None:
    """Serve the dashboard until SIGINT / SIGTERM."""
    import uvicorn

    broker = _broker(platform)
    store = StoreReader(AdapterStore(platform.adapter_store_root()))
    dashboard = Dashboard(Collector(settings, broker, store).snapshot, settings)
    dashboard.update()  # the first page already has content
    stop = threading.Event()
    refresher = threading.Thread(target=dashboard.run, args=(stop,), name="dashboard-refresh",
                                 daemon=True)
    refresher.start()
    announce(f"dashboard on http://{settings.host}:{settings.port}/ (refresh {settings.refresh_s}"
             f" s; {len(settings.nodes)} nodes; adapter store {store.store.root})")
    try:
        uvicorn.run(create_app(dashboard), host=settings.host, port=settings.port,
                    log_level="warning")
    finally:
        stop.set()
        refresher.join(timeout=settings.refresh_s + 15)
        if broker is not None:
            broker.close()
