"""Checks docker-compose.yml (parsed with PyYAML) against what the code really reads: the
settings classes, the `lorafeed run` subcommands, the Dockerfile's model cache and the files it
mounts. `compose_problems` returns one line per mistake, naming the service, key and value;
`tests/support/compose_scrape.py` checks the Prometheus side the same way."""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from learner.settings import LearnerSettings
from lorafeed.settings import PlatformSettings, StackSettings
from serving.settings import ServingSettings
from streams.settings import StreamsSettings


def _dashboard() -> tuple[tuple[str, type[BaseSettings]], ...]:
    try:
        from lorafeed.dashboard_settings import DashboardSettings
    except ImportError:
        return ()
    return (("LORAFEED_DASHBOARD_", DashboardSettings),)


# Longest prefix first: LORAFEED_STACK_X is StackSettings', never PlatformSettings'.
SETTINGS: tuple[tuple[str, type[BaseSettings]], ...] = (
    *_dashboard(),
    ("LORAFEED_STACK_", StackSettings),
    ("LORAFEED_", PlatformSettings),
    ("STREAMS_", StreamsSettings),
    ("LEARNER_", LearnerSettings),
    ("SERVING_", ServingSettings),
)
# Variables read outside the settings classes: name -> the file that reads it.
RAW_VARIABLES = {"LORAFEED_MODEL_CACHE": "lorafeed/models.py",
                 "LORAFEED_FAILPOINT": "lorafeed/failpoints.py"}


@dataclass(frozen=True)
class Role:
    """What a `lorafeed run X` service reads and where it listens (None: no listener)."""

    prefix: str
    port_var: str | None
    host_var: str | None


ROLES = {
    "streams": Role("STREAMS_", "STREAMS_METRICS_PORT", "STREAMS_METRICS_HOST"),
    "learner": Role("LEARNER_", "LEARNER_METRICS_PORT", "LEARNER_METRICS_HOST"),
    "serve": Role("SERVING_", "SERVING_PORT", "SERVING_HOST"),
    "scorer": Role("SERVING_", None, None),
}
CONNECTIONS = ("LORAFEED_BOOTSTRAP_SERVERS", "LORAFEED_REDIS_URL", "LORAFEED_MILVUS_URI",
               "LORAFEED_PII_KEY")
ADAPTER_USERS = {"learner", "serve", "scorer"}
REMOTE_STORE = ("LORAFEED_ADAPTER_STORE_URL", "LORAFEED_S3_ENDPOINT_URL")
SCALABLE = {"streams", "serve"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def interpolate(value: object, variables: Mapping[str, str], problems: list[str],
                where: str) -> str:
    """`value` with compose's ${VAR}, ${VAR:-default} and ${VAR:?error} resolved."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2) or "", match.group(3) or ""
        given = variables.get(name)
        if "?" in op and not given:
            problems.append(f"{where}: needs ${{{name}}} ({arg})")
        if given or (given == "" and op in ("-", "?")):
            return given or ""
        return arg if "-" in op else ""

    return _VAR.sub(one, str(value))


def variables_used(text: str) -> set[str]:
    return {match.group(1) for match in _VAR.finditer(text)}


def environment(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) if "=" in item else (item, "") for item in raw)
    return {str(key): "" if value is None else str(value) for key, value in raw.items()}


def settings_class(name: str) -> tuple[str, type[BaseSettings]] | None:
    return next(((p, cls) for p, cls in SETTINGS if name.startswith(p)), None)


def validate_values(service: str, env: Mapping[str, str]) -> list[str]:
    """Each settings class built from the service's values (and nothing from this process's
    environment): unknown names and values its validators refuse are problems."""
    problems, grouped = [], {}
    for name, value in env.items():
        found = settings_class(name)
        if found is None:
            continue
        prefix, cls = found
        field = name[len(prefix):].lower()
        if field not in cls.model_fields:
            near = [f"{prefix}{f.upper()}" for f in cls.model_fields if f[:4] == field[:4]]
            problems.append(f"{service}: {name} is not a field of {cls.__name__}"
                            + (f" (did you mean {', '.join(near)}?)" if near else ""))
            continue
        grouped.setdefault(cls, {})[field] = value
    for cls, values in grouped.items():
        isolated = type(cls.__name__, (cls,), {"model_config": SettingsConfigDict(
            **{**cls.model_config, "env_prefix": "LORAFEED_COMPOSE_CHECK_UNUSED_"})})
        try:
            isolated(**values)
        except ValidationError as exc:
            for error in exc.errors():
                field = str(error["loc"][0]) if error["loc"] else "?"
                problems.append(f"{service}: {cls.__name__}.{field}: {error['msg']}")
    return problems


def run_role(command: object, service: str, problems: list[str]) -> str | None:
    """The `lorafeed run X` subcommand of a lorafeed service (None for a `python -m` one)."""
    from lorafeed.cli import run_app

    argv = command.split() if isinstance(command, str) else list(command or [])
    if argv[:2] == ["python", "-m"] and len(argv) >= 3:
        if importlib.util.find_spec(argv[2]) is None or not hasattr(
            importlib.import_module(argv[2]), "main"
        ):
            problems.append(f"{service}: command module {argv[2]} does not exist or has no main")
        return None
    subcommands = {c.name or c.callback.__name__ for c in run_app.registered_commands
                   if c.callback is not None}
    if argv[:2] != ["lorafeed", "run"] or len(argv) < 3 or argv[2] not in subcommands:
        problems.append(f"{service}: command {argv} is not `lorafeed run "
                        f"{'|'.join(sorted(subcommands))}` or `python -m MODULE`")
        return None
    return argv[2]


def container_ports(service: Mapping[str, Any]) -> set[int]:
    """Ports the service declares it listens on (`expose`, container side of `ports`)."""
    found = {int(str(p).split("/")[0]) for p in service.get("expose") or []}
    for entry in service.get("ports") or []:
        target = entry.get("target") if isinstance(entry, dict) else str(entry).split(":")[-1]
        found.add(int(str(target).split("/")[0]))
    return found


def endpoint_problems(service: str, env: Mapping[str, str],
                      services: Mapping[str, Any]) -> list[str]:
    """Every host:port a lorafeed service dials must be a compose service declaring that port."""
    targets = [(n, s) for n in ("LORAFEED_BOOTSTRAP_SERVERS",) for s in env.get(n, "").split(",")]
    targets += [(n, urlsplit(env[n]).netloc) for n in
                ("LORAFEED_REDIS_URL", "LORAFEED_MILVUS_URI", "LORAFEED_S3_ENDPOINT_URL")
                if env.get(n)]
    problems = []
    for name, hostport in targets:
        host, _, port = hostport.rpartition(":")
        if host not in services:
            problems.append(f"{service}: {name} names host {host!r}, not a compose service")
        elif not port.isdigit() or int(port) not in container_ports(services[host]):
            problems.append(f"{service}: {name} dials {hostport}, but {host} does not expose "
                            f"{port} (it exposes {sorted(container_ports(services[host]))})")
    return problems
