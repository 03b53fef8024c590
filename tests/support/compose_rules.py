"""`compose_problems`: every rule docker-compose.yml must follow to start what the code expects.

Per service: an image or a build (pinned tags), valid depends_on (existing names, conditions the
target can meet, no cycles), mounts whose sources exist; per lorafeed service: a `lorafeed run`
subcommand, only env vars its settings classes define with values they accept, the connection
settings (the same everywhere), listeners on 0.0.0.0 at declared ports, files it names present,
persistent learner state and scalable services without fixed names or ports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from tests.support.compose_check import (
    ADAPTER_USERS,
    CONDITIONS,
    CONNECTIONS,
    RAW_VARIABLES,
    REMOTE_STORE,
    ROLES,
    SCALABLE,
    container_ports,
    endpoint_problems,
    environment,
    interpolate,
    run_role,
    settings_class,
    validate_values,
)


def is_lorafeed(service: Mapping[str, Any]) -> bool:
    return "build" in service or str(service.get("image", "")).startswith("lorafeed")


def image_problems(name: str, service: Mapping[str, Any], root: Path) -> list[str]:
    image, build = service.get("image"), service.get("build")
    if image is None and build is None:
        return [f"{name}: neither image nor build"]
    problems = []
    if build is not None:
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile"
        if isinstance(build, dict):
            dockerfile = build.get("dockerfile", dockerfile)
        if not (root / context / dockerfile).is_file():
            problems.append(f"{name}: build context {context} has no {dockerfile}")
    if image is not None:
        tag = str(image).rsplit("/", 1)[-1].partition(":")[2]
        if not tag or tag == "latest":
            problems.append(f"{name}: image {image} is not pinned to a tag")
    return problems


def depends_problems(
    name: str, service: Mapping[str, Any], services: Mapping[str, Any]
) -> list[str]:
    raw = service.get("depends_on") or {}
    deps = {d: {"condition": "service_started"} for d in raw} if isinstance(raw, list) else raw
    problems = []
    for dep, spec in deps.items():
        condition = (spec or {}).get("condition", "service_started")
        if dep not in services or dep == name:
            problems.append(f"{name}: depends_on {dep!r}, which is not another service")
        elif condition not in CONDITIONS:
            problems.append(f"{name}: depends_on {dep} with unknown condition {condition!r}")
        elif condition == "service_healthy" and "healthcheck" not in services[dep]:
            problems.append(f"{name}: waits for {dep} to be healthy, but {dep} has no healthcheck")
        elif condition == "service_completed_successfully" and services[dep].get("restart") != "no":
            problems.append(f"{name}: waits for {dep} to complete, but {dep} restarts "
                            f"({services[dep].get('restart')!r}); one-shots need restart: 'no'")
    return problems


def cycle_problems(services: Mapping[str, Any]) -> list[str]:
    def deps(name: str) -> list[str]:
        raw = services[name].get("depends_on") or {}
        return [d for d in raw if d in services]

    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> list[str]:
        if state.get(name) == 1:
            return [f"depends_on cycle: {' -> '.join([*path, name])}"]
        if state.get(name) == 2:
            return []
        state[name] = 1
        found = [p for dep in deps(name) for p in visit(dep, [*path, name])]
        state[name] = 2
        return found

    return [p for name in services for p in visit(name, [])]


def mounts(service: Mapping[str, Any], variables: Mapping[str, str],
           problems: list[str], name: str) -> list[tuple[str, str]]:
    """(source, target) of each volume; bind sources keep their leading '.' or '/'."""
    found = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            found.append((str(entry.get("source", "")), str(entry.get("target", ""))))
        else:
            parts = interpolate(entry, variables, problems, f"{name}: volume").split(":")
            found.append((parts[0], parts[1] if len(parts) > 1 else parts[0]))
    return found


def mount_problems(
    compose: Mapping[str, Any], root: Path, variables: Mapping[str, str]
) -> list[str]:
    problems: list[str] = []
    declared_volumes = set(compose.get("volumes") or {})
    declared_secrets = compose.get("secrets") or {}
    for name, service in (compose.get("services") or {}).items():
        for source, _target in mounts(service, variables, problems, name):
            if source.startswith((".", "/")):
                if not (root / source).exists():
                    problems.append(f"{name}: bind mount source {source} does not exist")
            elif source not in declared_volumes:
                problems.append(f"{name}: volume {source!r} is not declared under volumes:")
        for secret in service.get("secrets") or []:
            secret = secret if isinstance(secret, str) else secret.get("source")
            if secret not in declared_secrets:
                problems.append(f"{name}: secret {secret!r} is not declared under secrets:")
    for secret, spec in declared_secrets.items():
        if "file" in spec and not (root / spec["file"]).parent.is_dir():
            problems.append(f"secret {secret}: directory of {spec['file']} does not exist")
    return problems


def model_cache(dockerfile: Path) -> str | None:
    found = re.findall(r"LORAFEED_MODEL_CACHE=(\S+)", dockerfile.read_text())
    return found[-1] if found else None


def scope_problems(name: str, env: Mapping[str, str], role: str | None) -> list[str]:
    allowed = {"LORAFEED_"} | ({ROLES[role].prefix} if role else set())
    problems = []
    for var in env:
        found = settings_class(var)
        if var in RAW_VARIABLES or found is None:
            continue
        prefix, cls = found
        if prefix not in allowed:
            what = f"`lorafeed run {role}`" if role else "this one-shot"
            problems.append(f"{name}: {var} belongs to {cls.__name__}, which {what} never reads")
    return problems


def required_problems(name: str, env: Mapping[str, str], role: str | None) -> list[str]:
    wanted = list(CONNECTIONS)
    if role in ADAPTER_USERS:
        wanted += REMOTE_STORE
    if role is not None and ROLES[role].port_var:
        wanted.append(str(ROLES[role].port_var))
    return [f"{name}: {var} is not set" for var in wanted if not env.get(var)]


def listener_problems(name: str, service: Mapping[str, Any], env: Mapping[str, str],
                      role: str | None) -> list[str]:
    if role is None or ROLES[role].host_var is None:
        return []
    spec, problems = ROLES[role], []
    host_var = str(spec.host_var)
    prefix, cls = settings_class(host_var) or ("", object)
    if host_var[len(prefix):].lower() not in getattr(cls, "model_fields", {}):
        problems.append(f"{name}: {getattr(cls, '__name__', cls)} has no "
                        f"{host_var[len(prefix):].lower()} ({host_var}): its listener binds "
                        "127.0.0.1, unreachable from other containers")
    elif env.get(host_var) not in ("0.0.0.0", "::"):
        problems.append(f"{name}: {host_var} is {env.get(host_var)!r}; other containers reach "
                        "it only on 0.0.0.0")
    port = env.get(str(spec.port_var), "")
    if port.isdigit() and int(port) not in container_ports(service):
        problems.append(f"{name}: listens on {port} ({spec.port_var}) but does not expose it")
    return problems


def file_problems(name: str, service: Mapping[str, Any], env: Mapping[str, str],
                  root: Path, variables: Mapping[str, str], cache: str | None) -> list[str]:
    problems: list[str] = []
    binds = [(s, t) for s, t in mounts(service, variables, problems, name) if s.startswith(".")]
    for var, value in env.items():
        if var.endswith("_TASKS_FILE"):
            path = PurePosixPath(value)
            hits = [root / s / path.relative_to(t) for s, t in binds if path.is_relative_to(t)]
            if not any(hit.is_file() for hit in hits):
                problems.append(f"{name}: {var}={value} is not a file mounted from the repository")
        if var.endswith("_MODELS_DIR") and value != cache:
            problems.append(f"{name}: {var}={value}, but the Dockerfile prepares models in {cache}")
    if name == "learner" or env.get("LEARNER_DATA_DIR"):
        every = mounts(service, variables, problems, name)
        named = [target for source, target in every if not source.startswith((".", "/"))]
        state = env.get("LORAFEED_STATE_DIR", "")
        for what in (env.get("LEARNER_DATA_DIR") or f"{state}/learner",
                     env.get("LORAFEED_ADAPTER_STORE") or f"{state}/adapters"):
            if not any(PurePosixPath(what).is_relative_to(t) for t in named):
                problems.append(f"{name}: {what} is on no named volume; it would not survive")
    return problems


def scaling_problems(name: str, service: Mapping[str, Any], role: str | None) -> list[str]:
    if role not in SCALABLE:
        return []
    problems = [f"{name}: container_name fixes one replica"] if "container_name" in service else []
    for entry in service.get("ports") or []:
        parts = str(entry).split(":")
        host = parts[-2] if len(parts) >= 2 else ""
        if host and "-" not in host:
            problems.append(f"{name}: host port {host} can serve one replica only; use a range")
    return problems


def compose_problems(compose: Mapping[str, Any], root: Path,
                     variables: Mapping[str, str]) -> list[str]:
    """Every rule broken by `compose` (repository at `root`, .env `variables`)."""
    services = compose.get("services") or {}
    problems = mount_problems(compose, root, variables) + cycle_problems(services)
    cache = model_cache(root / "Dockerfile")
    envs: dict[str, dict[str, str]] = {}
    for name, service in services.items():
        problems += image_problems(name, service, root)
        problems += depends_problems(name, service, services)
        if not is_lorafeed(service):
            continue
        env = {k: interpolate(v, variables, problems, f"{name}: {k}")
               for k, v in environment(service).items()}
        role = run_role(service.get("command"), name, problems)
        problems += validate_values(name, env) + scope_problems(name, env, role)
        problems += required_problems(name, env, role) + endpoint_problems(name, env, services)
        problems += listener_problems(name, service, env, role)
        problems += file_problems(name, service, env, root, variables, cache)
        problems += scaling_problems(name, service, role)
        envs[name] = env
    # platform settings are shared: one broker, one Redis, one PII key, one bucket, one prefix
    for var in sorted({v for env in envs.values() for v in env if v.startswith("LORAFEED_")}):
        values = {name: env.get(var, "<unset>") for name, env in envs.items()}
        if len(set(values.values())) > 1:
            problems.append(f"{var} differs between services: {values}")
    return problems
