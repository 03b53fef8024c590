"""`scrape_problems`: the Prometheus config mounted by docker-compose.yml must scrape every
lorafeed listener at the port its settings give it (scaled services through DNS discovery, the
serving nodes with an admin key from a mounted secret), and only hosts that exist and expose the
port scraped."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from tests.support.compose_check import (
    ROLES,
    SCALABLE,
    container_ports,
    environment,
    interpolate,
    run_role,
)
from tests.support.compose_rules import is_lorafeed, mounts

CONFIG_PATH = "/etc/prometheus/prometheus.yml"
SECRETS_DIR = PurePosixPath("/run/secrets")


def listeners(
    services: Mapping[str, Any], variables: Mapping[str, str]
) -> dict[str, tuple[str, int]]:
    """Lorafeed service -> (its `lorafeed run` role, the port of its /metrics)."""
    found, ignored = {}, []
    for name, service in services.items():
        if not is_lorafeed(service):
            continue
        role = run_role(service.get("command"), name, ignored)
        port_var = ROLES[role].port_var if role else None
        port = interpolate(environment(service).get(port_var or "", ""), variables, ignored, name)
        if role and port.isdigit():
            found[name] = (role, int(port))
    return found


def targets(job: Mapping[str, Any]) -> list[tuple[str, int | None, str]]:
    """(host, port, 'static' | 'dns') of every target of a scrape job."""
    found: list[tuple[str, int | None, str]] = []
    for static in job.get("static_configs") or []:
        for target in static.get("targets") or []:
            host, _, port = str(target).rpartition(":")
            found.append((host, int(port) if port.isdigit() else None, "static"))
    for dns in job.get("dns_sd_configs") or []:
        found += [(str(name), dns.get("port"), "dns") for name in dns.get("names") or []]
    return found


def load_config(compose: Mapping[str, Any], root: Path,
                variables: Mapping[str, str]) -> tuple[str, Mapping[str, Any]] | str:
    """(prometheus service name, its parsed config), or the problem that prevents it."""
    services = compose.get("services") or {}
    found = [n for n, s in services.items()
             if str(s.get("image", "")).startswith("prom/prometheus")]
    if not found:
        return "no prometheus service"
    name, ignored = found[0], []
    sources = [s for s, t in mounts(services[name], variables, ignored, name) if t == CONFIG_PATH]
    if not sources or not (root / sources[0]).is_file():
        return f"{name}: no config file mounted at {CONFIG_PATH}"
    return name, yaml.safe_load((root / sources[0]).read_text())


def scrape_problems(compose: Mapping[str, Any], root: Path,
                    variables: Mapping[str, str]) -> list[str]:
    loaded = load_config(compose, root, variables)
    if isinstance(loaded, str):
        return [loaded]
    prometheus, config = loaded
    services = compose.get("services") or {}
    mounted = {str(s if isinstance(s, str) else s.get("source"))
               for s in services[prometheus].get("secrets") or []}
    metrics, scraped, problems = listeners(services, variables), set(), []
    for job in config.get("scrape_configs") or []:
        where = f"prometheus job {job.get('job_name')}"
        credentials = (job.get("authorization") or {}).get("credentials_file")
        if credentials is not None:
            path = PurePosixPath(credentials)
            if path.parent != SECRETS_DIR or path.name not in mounted:
                problems.append(f"{where}: credentials_file {credentials} is not a secret "
                                f"mounted into {prometheus}")
        for host, port, via in targets(job):
            if host not in services:
                problems.append(f"{where}: target {host} is not a compose service")
            elif host in metrics:
                role, expected = metrics[host]
                scraped.add(host)
                if port != expected:
                    problems.append(f"{where}: scrapes {host}:{port}, but {host}'s "
                                    f"{ROLES[role].port_var} is {expected}")
                if role in SCALABLE and via != "dns":
                    problems.append(f"{where}: {host} is scaled; a static target reaches one "
                                    "replica, use dns_sd_configs")
                if role == "serve" and credentials is None:
                    problems.append(f"{where}: {host}'s /metrics needs an admin API key "
                                    "(authorization.credentials_file)")
            elif port is None or port not in container_ports(services[host]):
                problems.append(f"{where}: {host} does not expose port {port}")
    problems += [f"{name}: its /metrics is never scraped"
                 for name in sorted(set(metrics) - scraped)]
    return problems
