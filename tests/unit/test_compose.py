"""docker-compose.yml and deploy/prometheus.yml checked against the code, since no Docker engine
runs here: the real files pass every rule, and a copy with one real mistake is refused with a
message naming it (so the checker itself can fail)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.compose_check import variables_used
from tests.support.compose_rules import compose_problems
from tests.support.compose_scrape import scrape_problems

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
# what an operator's .env provides for the required ${...:?} variables
VARIABLES = {"LORAFEED_PII_KEY": "0123456789abcdef0123", "SERVING_API_KEYS": "[]"}

Compose = dict[str, Any]


def load() -> Compose:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict)
    return data


def problems(compose: Compose, variables: dict[str, str] = VARIABLES) -> list[str]:
    return compose_problems(compose, ROOT, variables) + scrape_problems(compose, ROOT, variables)


def test_the_compose_file_matches_the_code() -> None:
    assert problems(load()) == []


def test_every_lorafeed_service_and_the_infrastructure_is_there() -> None:
    services = load()["services"]
    assert {"kafka", "redis", "etcd", "minio", "milvus", "prometheus", "init", "streams",
            "learner", "serving", "scorer"} <= set(services)
    commands = {name: s["command"] for name, s in services.items() if "build" in s}
    assert commands["serving"] == ["lorafeed", "run", "serve"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert "--appendonly" in services["redis"]["command"]


def test_required_variables_must_be_given() -> None:
    found = problems(load(), {})
    assert any("needs ${LORAFEED_PII_KEY}" in p for p in found)
    assert any("needs ${SERVING_API_KEYS}" in p for p in found)


def test_every_variable_is_documented_in_the_env_example() -> None:
    lines = (ROOT / "deploy" / "env.example").read_text().splitlines()
    documented = {line.split("=", 1)[0] for line in lines if "=" in line and line[:1] != "#"}
    assert variables_used(COMPOSE.read_text()) - documented == set()


def env(service: str) -> Callable[[Compose], dict[str, Any]]:
    return lambda c: c["services"][service]["environment"]


def setitem(getter: Callable[[Compose], Any], key: Any, value: Any) -> Callable[[Compose], None]:
    return lambda c: getter(c).__setitem__(key, value)


def service(name: str) -> Callable[[Compose], dict[str, Any]]:
    return lambda c: c["services"][name]


MUTATIONS: dict[str, tuple[Callable[[Compose], None], str]] = {
    "misspelt env var": (setitem(env("streams"), "STREAMS_BATCH_MAXX", "64"),
                         "streams: STREAMS_BATCH_MAXX is not a field of StreamsSettings"),
    "another service's settings": (setitem(env("learner"), "SERVING_PORT", "8000"),
                                   "learner: SERVING_PORT belongs to ServingSettings"),
    "value the settings refuse": (setitem(env("serving"), "SERVING_PORT", "eighty"),
                                  "serving: ServingSettings.port"),
    "unknown subcommand": (setitem(service("serving"), "command", ["lorafeed", "run", "serving"]),
                           "serving: command ['lorafeed', 'run', 'serving'] is not"),
    "missing one-shot module": (setitem(service("init"), "command",
                                        ["python", "-m", "lorafeed.no_such_init"]),
                                "init: command module lorafeed.no_such_init does not exist"),
    "misspelt dependency": (setitem(service("learner"), "depends_on", ["kafak"]),
                            "learner: depends_on 'kafak', which is not another service"),
    "health wait on no healthcheck": (
        setitem(service("learner"), "depends_on", {"scorer": {"condition": "service_healthy"}}),
        "learner: waits for scorer to be healthy, but scorer has no healthcheck"),
    "restarting one-shot": (setitem(service("init"), "restart", "unless-stopped"),
                            "waits for init to complete, but init restarts"),
    "dependency cycle": (setitem(service("redis"), "depends_on", ["learner"]), "depends_on cycle"),
    "missing connection": (lambda c: env("streams")(c).pop("LORAFEED_REDIS_URL"),
                           "streams: LORAFEED_REDIS_URL is not set"),
    "wrong endpoint port": (setitem(env("serving"), "LORAFEED_MILVUS_URI", "http://milvus:19531"),
                            "serving: LORAFEED_MILVUS_URI dials milvus:19531, but milvus does not"),
    "unknown endpoint host": (setitem(env("learner"), "LORAFEED_BOOTSTRAP_SERVERS", "broker:9092"),
                              "learner: LORAFEED_BOOTSTRAP_SERVERS names host 'broker'"),
    "PII keys differ": (setitem(env("scorer"), "LORAFEED_PII_KEY", "another-key-0123456789"),
                        "LORAFEED_PII_KEY differs between services"),
    "loopback listener": (setitem(env("serving"), "SERVING_HOST", "127.0.0.1"),
                          "serving: SERVING_HOST is '127.0.0.1'"),
    "fixed port on a scaled service": (setitem(service("serving"), "ports", ["8000:8000"]),
                                       "serving: host port 8000 can serve one replica only"),
    "models not where the image has them": (
        setitem(env("learner"), "LEARNER_MODELS_DIR", "/models"),
        "the Dockerfile prepares models in /opt/lorafeed/models"),
    "tasks file not mounted": (setitem(env("learner"), "LEARNER_TASKS_FILE", "/app/config/x.toml"),
                               "learner: LEARNER_TASKS_FILE=/app/config/x.toml is not a file"),
    "learner state not persisted": (
        lambda c: service("learner")(c)["volumes"].remove("learner-data:/var/lib/lorafeed"),
        "learner: /var/lib/lorafeed/learner is on no named volume"),
    "undeclared volume": (lambda c: c["volumes"].pop("redis-data"),
                          "redis: volume 'redis-data' is not declared"),
    "unpinned image": (setitem(service("redis"), "image", "redis"),
                       "redis: image redis is not pinned"),
    "metrics port not scraped": (
        setitem(env("learner"), "LEARNER_METRICS_PORT", "9103"),
        "scrapes learner:9102, but learner's LEARNER_METRICS_PORT is 9103"),
}


@pytest.mark.parametrize("mistake", sorted(MUTATIONS))
def test_a_real_mistake_is_refused(mistake: str) -> None:
    mutate, expected = MUTATIONS[mistake]
    compose = copy.deepcopy(load())
    mutate(compose)
    found = problems(compose)
    assert any(expected in problem for problem in found), found


SCRAPE_MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "streams never scraped": (
        lambda p: p["scrape_configs"].remove(job(p, "streams")),
        "streams: its /metrics is never scraped"),
    "serving without a key": (lambda p: job(p, "serving").pop("authorization"),
                              "serving's /metrics needs an admin API key"),
    "misspelt target": (
        lambda p: job(p, "learner").__setitem__("static_configs", [{"targets": ["lerner:9102"]}]),
        "target lerner is not a compose service"),
    "scaled service as one static target": (
        lambda p: job(p, "serving").update(dns_sd_configs=[], static_configs=[
            {"targets": ["serving:8000"]}]), "serving is scaled; a static target reaches one"),
    "secret not mounted": (lambda p: job(p, "serving")["authorization"].__setitem__(
        "credentials_file", "/run/secrets/other"), "is not a secret mounted into prometheus"),
}


def job(config: dict[str, Any], name: str) -> dict[str, Any]:
    return next(j for j in config["scrape_configs"] if j["job_name"] == name)


@pytest.mark.parametrize("mistake", sorted(SCRAPE_MUTATIONS))
def test_a_scrape_mistake_is_refused(mistake: str, tmp_path: Path) -> None:
    mutate, expected = SCRAPE_MUTATIONS[mistake]
    config = yaml.safe_load((ROOT / "deploy" / "prometheus.yml").read_text())
    mutate(config)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    compose = copy.deepcopy(load())
    volumes = compose["services"]["prometheus"]["volumes"]
    volumes[0] = f"{tmp_path / 'prometheus.yml'}:/etc/prometheus/prometheus.yml:ro"
    found = problems(compose)
    assert any(expected in problem for problem in found), found


def test_the_dockerfile_installs_torch_first_copies_every_package_and_prepares_models() -> None:
    import tomllib

    dockerfile = (ROOT / "Dockerfile").read_text()
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [torch_pin] = [d for d in project["project"]["dependencies"] if d.startswith("torch")]
    runs = [line for line in dockerfile.splitlines() if line.startswith("RUN ")]
    [torch_run] = [i for i, line in enumerate(runs) if torch_pin in line]
    [project_run] = [i for i, line in enumerate(runs) if "pip install ." in line]
    [prepare_run] = [i for i, line in enumerate(runs) if "lorafeed models prepare" in line]
    assert torch_run < project_run < prepare_run
    assert "--index-url" in runs[torch_run]  # the CPU wheel index, never a CUDA build
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    copied = [line.split()[1] for line in dockerfile.splitlines()
              if line.startswith("COPY ") and "--from" not in line]
    for source in copied:
        assert (ROOT / source).exists() and source not in ignored, source
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= set(copied), f"packages the image lacks: {packages - set(copied)}"
