"""What the dashboard reads over HTTP and from the adapter store: serving nodes' ``/healthz`` and
``/metrics``, the streams workers' and learners' ``/metrics``, and every task's versions,
champion and pin. Failures come back as values (a `Scrape` with an error, a `TaskVersions`
with an error): one unreachable service never blanks the page."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from lorafeed.adapter_store import AdapterStore, AdapterStoreError
from lorafeed.dashboard_metrics import MetricsParseError, parse_samples
from lorafeed.dashboard_model import Scrape, TaskVersions, VersionRow
from schemas.manifest import AdapterManifest

_MAX_BODY = 8 * 1024 * 1024


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """urllib repeats every header on a redirect, to any host: the admin key would follow a
    node's redirect elsewhere. A redirect is reported as the node's answer instead."""

    def redirect_request(self, *_args: object, **_kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


def _get(url: str, timeout_s: float, headers: dict[str, str] | None = None) -> bytes:
    request = urllib.request.Request(url, headers=headers or {})
    with _OPENER.open(request, timeout=timeout_s) as response:
        return bytes(response.read(_MAX_BODY))


def _problem(url: str, exc: Exception) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        hint = " (the dashboard needs an admin key: LORAFEED_DASHBOARD_ADMIN_KEY)" \
            if exc.code in (401, 403) else ""
        return f"{url} answered HTTP {exc.code}{hint}"
    if isinstance(exc, urllib.error.URLError):
        return f"{url} unreachable: {exc.reason}"
    return f"{url}: {exc}"


def scrape_metrics(url: str, timeout_s: float, headers: dict[str, str] | None = None) -> Scrape:
    """Samples of ``url`` (a full /metrics URL), or the reason there are none."""
    try:
        body = _get(url, timeout_s, headers)
        return Scrape(url, tuple(parse_samples(body.decode("utf-8", "replace"))))
    except (OSError, MetricsParseError, ValueError) as exc:
        return Scrape(url, error=_problem(url, exc))


def scrape_node(base_url: str, timeout_s: float, admin_key: str | None) -> Scrape:
    """A serving node: its id from ``/healthz``, its samples from ``/metrics``."""
    try:
        health = json.loads(_get(f"{base_url}/healthz", timeout_s))
        node_id = str(health.get("node_id")) if isinstance(health, dict) else None
    except (OSError, ValueError) as exc:
        return Scrape(base_url, error=_problem(f"{base_url}/healthz", exc))
    headers = {"Authorization": f"Bearer {admin_key}"} if admin_key else None
    scrape = scrape_metrics(f"{base_url}/metrics", timeout_s, headers)
    return Scrape(base_url, scrape.samples, scrape.error, node_id)


def scrape_all(
    nodes: Sequence[str],
    streams: Sequence[str],
    learners: Sequence[str],
    *,
    timeout_s: float,
    admin_key: str | None,
) -> tuple[tuple[Scrape, ...], tuple[Scrape, ...], tuple[Scrape, ...]]:
    """Every configured endpoint, concurrently: (nodes, streams workers, learners)."""
    urls = [*nodes, *streams, *learners]
    if not urls:
        return (), (), ()
    with ThreadPoolExecutor(max_workers=min(8, len(urls))) as pool:
        node_jobs = [pool.submit(scrape_node, url, timeout_s, admin_key) for url in nodes]
        other = [pool.submit(scrape_metrics, url, timeout_s) for url in (*streams, *learners)]
        done = [job.result() for job in other]
        return (
            tuple(job.result() for job in node_jobs),
            tuple(done[: len(streams)]),
            tuple(done[len(streams) :]),
        )


def version_row(manifest: AdapterManifest) -> VersionRow:
    lineage = manifest.lineage
    return VersionRow(
        version=manifest.version,
        parent=manifest.parent_version,
        created_at=manifest.created_at.timestamp(),
        promoted=manifest.gate.promoted,
        reason=manifest.gate.reason,
        metrics=dict(manifest.metrics),
        gate_numbers=dict(manifest.gate.numbers),
        lineage_ids=len(lineage.request_ids) + len(lineage.record_ids),
    )


class StoreReader:
    """Reads the adapter store; manifests are cached (versions are immutable)."""

    def __init__(self, store: AdapterStore) -> None:
        self.store = store
        self._rows: dict[tuple[str, str], VersionRow] = {}

    def tasks(self) -> tuple[TaskVersions, ...]:
        return tuple(self.task(name) for name in self.store.tasks())

    def task(self, name: str) -> TaskVersions:
        try:
            rows = []
            for version in self.store.versions(name):
                key = (name, version)
                if key not in self._rows:
                    self._rows[key] = version_row(self.store.read_manifest(name, version))
                rows.append(self._rows[key])
            champion = self.store.champion(name)
            pin = self.store.pinned(name)
        except AdapterStoreError as exc:
            return TaskVersions(name, (), None, error=str(exc))
        return TaskVersions(
            name,
            tuple(rows),
            None if champion is None else champion.version,
            pinned=pin is not None,
            pin_version=None if pin is None else pin.version,
        )
