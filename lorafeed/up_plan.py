"""What ``lorafeed up`` runs (pure): the service list, their ports and environments, and the
torch thread budget that keeps every process together within the machine's cores.

:func:`service_specs` turns an :class:`UpPlan` into the supervisor's :class:`ServiceSpec` list;
the demo and ``lorafeed up`` share it, so both start exactly the same processes.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from lorafeed.supervisor import ServiceSpec

ROOT: Final = Path(__file__).resolve().parents[1]
LEARNER: Final = "learner"
STREAMS: Final = "streams"
SCORER: Final = "scorer"
SCORER_NODE_ID: Final = "streaming"  # the scorer announces itself as "<node id>-scorer"
OFFLINE_ENV: Final = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONUNBUFFERED": "1",
}
# Each service's own torch-thread setting (see its settings class); OMP/MKL follow it.
_THREAD_SETTING: Final = {
    STREAMS: "STREAMS_TORCH_THREADS",
    LEARNER: "LEARNER_TORCH_THREADS",
    SCORER: "SERVING_TORCH_THREADS",
}


_SERVICE_PREFIXES: Final = ("SERVING_", "LEARNER_", "STREAMS_")
PER_PROCESS: Final = frozenset({"SERVING_NODE_ID", "SERVING_PORT"})


class UpPlanError(ValueError):
    """An impossible plan (no nodes, bad ports, a share outside (0, 1])."""


def node_name(index: int) -> str:
    """The supervisor name and SERVING_NODE_ID of serving node `index` (1-based)."""
    return f"node-{index}"


@dataclass(frozen=True)
class UpPlan:
    """Everything that decides the service list.

    `node_ports` has one HTTP port per serving node (node-1, node-2, ...). `learner_share` is
    the fraction of `cores` the learner's torch gets (it trains in bursts); the other torch
    processes split the rest, at least one thread each. `env` is added to every service.
    """

    state_dir: Path
    tasks_file: Path
    node_ports: tuple[int, ...] = (8001, 8002)
    cores: int = 2
    learner_share: float = 0.5
    scorer: bool = True
    streams_metrics_port: int = 0
    api_key_entries: str = "[]"
    env: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.node_ports:
            raise UpPlanError("a plan needs at least one serving node port")
        bad = [p for p in self.node_ports if not 0 < p < 65536]
        if bad or len(set(self.node_ports)) != len(self.node_ports):
            raise UpPlanError(f"serving node ports must be distinct and in 1-65535: "
                              f"{list(self.node_ports)}")
        if self.cores < 1:
            raise UpPlanError(f"cores must be >= 1, got {self.cores}")
        if not 0.0 < self.learner_share <= 1.0:
            raise UpPlanError(f"learner_share must be in (0, 1], got {self.learner_share}")
        clash = sorted(PER_PROCESS & set(self.env))
        if clash:
            raise UpPlanError(f"{clash} differ per process and cannot be set for all services")

    @property
    def names(self) -> list[str]:
        """Service names in start order."""
        nodes = [node_name(i + 1) for i in range(len(self.node_ports))]
        return [STREAMS, LEARNER, *nodes, *([SCORER] if self.scorer else [])]

    def node_urls(self) -> dict[str, str]:
        return {node_name(i + 1): f"http://127.0.0.1:{port}"
                for i, port in enumerate(self.node_ports)}


def thread_budget(cores: int, names: Sequence[str], learner_share: float) -> dict[str, int]:
    """Torch threads per service: the learner gets round(cores * share) (at least 1); the others
    split what is left evenly, at least 1 each (so a small machine is oversubscribed by at most
    one thread per service, never by a torch default of one thread per core per process)."""
    if cores < 1:
        raise UpPlanError(f"cores must be >= 1, got {cores}")
    others = [name for name in names if name != LEARNER]
    budget: dict[str, int] = {}
    left = cores
    if LEARNER in names:
        budget[LEARNER] = max(1, min(cores, round(cores * learner_share)))
        left = cores - budget[LEARNER] if others else 0
    for name in others:
        budget[name] = max(1, left // len(others))
    return budget


def service_specs(
    plan: UpPlan, health: Callable[[str], Callable[[], bool]] | None = None
) -> list[ServiceSpec]:
    """The supervisor's specs for `plan`; `health(url)` builds a readiness check per node."""
    threads = thread_budget(plan.cores, plan.names, plan.learner_share)
    tasks = str(plan.tasks_file.resolve())
    common = {**OFFLINE_ENV, "LORAFEED_STATE_DIR": str(plan.state_dir.resolve()), **plan.env}
    python = [sys.executable, "-m", "lorafeed", "run"]
    specs = []
    urls = plan.node_urls()
    for name in plan.names:
        env = dict(common) | _thread_env(name, threads[name])
        argv = [*python, name]
        check = None
        if name == STREAMS:
            if plan.streams_metrics_port:
                env["STREAMS_METRICS_PORT"] = str(plan.streams_metrics_port)
        elif name == LEARNER:
            env["LEARNER_TASKS_FILE"] = tasks
        else:
            node_id = SCORER_NODE_ID if name == SCORER else name
            env |= {"SERVING_TASKS_FILE": tasks, "SERVING_NODE_ID": node_id,
                    "SERVING_API_KEYS": plan.api_key_entries}
            if name in urls:
                argv = [*python, "serve", "--port", urls[name].rsplit(":", 1)[1]]
                check = health(urls[name]) if health else None
        specs.append(ServiceSpec(name, argv, env=env | dict(plan.env), health=check, cwd=ROOT,
                                 stop_timeout=20.0))
    return specs


def passed_through(environ: Mapping[str, str]) -> dict[str, str]:
    """Service settings set in the caller's environment (they win over computed defaults),
    except those that must differ per process (node id, port)."""
    return {key: value for key, value in environ.items()
            if key.startswith(_SERVICE_PREFIXES) and key not in PER_PROCESS}


def _thread_env(name: str, threads: int) -> dict[str, str]:
    setting = _THREAD_SETTING.get(name, "SERVING_TORCH_THREADS")
    count = str(threads)
    return {setting: count, "OMP_NUM_THREADS": count, "MKL_NUM_THREADS": count}

