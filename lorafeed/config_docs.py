"""The configuration reference (docs/configuration.md), generated from the settings classes and the
task catalog's TaskConfig sections, so the documentation cannot say what the code does not.

`lorafeed docs config` (or `python -m lorafeed.config_docs`) rewrites the file; `--check` only
compares. A unit test fails when the committed file drifts from :func:`render`.
"""

from __future__ import annotations

import argparse
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from learner.settings import LearnerSettings
from lorafeed.dashboard_settings import DashboardSettings
from lorafeed.settings import PlatformSettings, StackSettings
from schemas.fields import IDENTIFIER_PATTERN
from schemas.tasks import (
    EwcSettings,
    GateSettings,
    LoraSettings,
    ReplaySettings,
    TaskConfig,
    TrainingSettings,
    TriggerSettings,
    WatchSettings,
)
from serving.settings import ServingSettings
from streams.settings import StreamsSettings

DEFAULT_PATH: Final = Path("docs/configuration.md")
REGENERATE: Final = "lorafeed docs config"  # also: python -m lorafeed.config_docs


@dataclass(frozen=True)
class SettingsSection:
    """One settings class, the heading it gets and who reads it."""

    title: str
    cls: type[BaseSettings]
    readers: str


SETTINGS: Final = (
    SettingsSection("Platform", PlatformSettings,
                    "every service and the CLI: where the broker, Redis, Milvus and the adapter "
                    "store are"),
    SettingsSection("Embedded stack", StackSettings, "`lorafeed stack up|down|status`, "
                    "`lorafeed up`, `lorafeed demo`"),
    SettingsSection("Streams worker", StreamsSettings, "`lorafeed run streams`"),
    SettingsSection("Learner", LearnerSettings, "`lorafeed run learner`"),
    SettingsSection("Serving node and scorer", ServingSettings,
                    "`lorafeed run serve`, `lorafeed run scorer`"),
    SettingsSection("Dashboard", DashboardSettings, "`lorafeed dashboard` (command-line options "
                    "override these)"),
)  # fmt: skip

TASK_SECTIONS: Final[tuple[tuple[str, type[BaseModel]], ...]] = (
    ("", TaskConfig),
    ("lora", LoraSettings),
    ("ewc", EwcSettings),
    ("replay", ReplaySettings),
    ("trigger", TriggerSettings),
    ("gate", GateSettings),
    ("training", TrainingSettings),
    ("watch", WatchSettings),
)

# Descriptions for fields whose settings class gives none (the class's own description wins;
# tests/unit/lorafeed/test_config_docs.py fails when an entry here is shadowed or unused).
NOTES: Final[Mapping[tuple[str, str], str]] = {
    ("StackSettings", "state_dir"): "Where the stack keeps `stack.json` (pids, ports), logs and "
    "Redis / Milvus data; the services' `LORAFEED_STATE_DIR` should match.",
    ("StackSettings", "kafka_port"): "Port of the embedded broker (Tansu); 0 picks a free one.",
    ("StackSettings", "milvus_port"): "Port of the Milvus Lite gRPC server; 0 picks a free one.",
    ("StackSettings", "topic_prefix"): "Prefix of the topics `stack up` creates.",
    ("StackSettings", "health_timeout_s"): "How long `stack up` waits for each component to "
    "answer its health check.",
    ("StreamsSettings", "collection"): "The Milvus collection records are indexed into.",
    ("StreamsSettings", "chunk_max_tokens"): "Chunk size in embedder tokens.",
    ("StreamsSettings", "chunk_overlap_tokens"): "Tokens shared by neighbouring chunks.",
    ("StreamsSettings", "dedup_ttl_days"): "How long exact and near-duplicate claims live in "
    "Redis.",
    ("StreamsSettings", "near_dup_threshold"): "Estimated Jaccard similarity (MinHash on "
    "5-shingles) from which a record is a near duplicate.",
    ("StreamsSettings", "min_chars"): "Cleaned text shorter than this is dead-lettered as too "
    "short.",
    ("StreamsSettings", "max_chars"): "Cleaned text longer than this is dead-lettered as too "
    "long.",
    ("StreamsSettings", "retry_max_backoff_s"): "Longest wait between retries of a batch while "
    "Redis, Milvus or the broker is unavailable.",
    ("StreamsSettings", "torch_threads"): "torch threads of the embedder (unset: torch's "
    "default).",
    ("LearnerSettings", "max_examples_per_update"): "Most new examples one update trains on "
    "(also bounded by the task's steps x batch size); the rest wait for the next update.",
    ("LearnerSettings", "torch_threads"): "torch threads (unset: torch's default).",
    ("ServingSettings", "port"): "HTTP port (`lorafeed run serve --port` overrides it).",
    ("ServingSettings", "default_max_tokens"): "max_tokens of a chat request that gives none.",
    ("ServingSettings", "score_batch_wait_ms"): "How long a scoring micro-batch waits to fill.",
    ("ServingSettings", "redis_prefix"): "Prefix of the node's Redis keys (contexts, rate "
    "limits, the scorer's results).",
    ("ServingSettings", "torch_threads"): "torch threads (unset: torch's default).",
}

OTHER_VARIABLES: Final = (
    ("LORAFEED_MODEL_CACHE", "`~/.cache/lorafeed/models`",
     "Where `lorafeed models prepare` writes converted models and tiny test models are built "
     "(the services' `*_MODELS_DIR` default)."),
    ("LORAFEED_FAILPOINT", "unset",
     "`name[@N][,name...]`: the process SIGKILLs itself at the named point (the N-th time); "
     "for crash tests. A name no service declares fails at start-up."),
)


# --- types, defaults, constraints --------------------------------------------------------------


def type_name(annotation: Any, *, models: str = "table") -> str:
    """A short readable name of a field's annotation (`int | None`, `list[str]`, `"a" | "b"`);
    nested models read `models` ("table" for TOML), or their class name when it is empty."""
    if annotation is None or annotation is type(None):
        return "None"
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_name(args[0], models=models)
    if origin is typing.Literal:
        return " | ".join(f'"{arg}"' if isinstance(arg, str) else repr(arg) for arg in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(arg, models=models) for arg in args)
    if origin is not None:
        inner = ", ".join(type_name(arg, models=models) for arg in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if annotation is SecretStr:
        return "secret"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel) and models:
        return models
    return getattr(annotation, "__name__", str(annotation))


def default_text(field: FieldInfo) -> str:
    """The default as it would be written in the environment or TOML; factories by name."""
    factory = field.default_factory
    if factory is not None:
        if factory in (list, tuple):
            return "(empty)"
        name = getattr(factory, "__name__", "")
        if isinstance(factory, type) and issubclass(factory, BaseModel):
            return "(see its section)"
        module = (getattr(factory, "__module__", "") or "").lstrip("_")
        return f"`{module}.{name}()`" if module not in ("", "builtins") else f"`{name}()`"
    value = field.default
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, str) and value == "":
        return '`""`'
    return f"`{value}`"


_BOUNDS: Final = (
    ("minimum", ">= {}"), ("exclusiveMinimum", "> {}"), ("maximum", "<= {}"),
    ("exclusiveMaximum", "< {}"), ("minLength", "length >= {}"), ("maxLength", "length <= {}"),
    ("minItems", "items >= {}"), ("pattern", "matches `{}`"),
)  # fmt: skip


def constraints(schema: Mapping[str, Any]) -> str:
    """Bounds from a property's JSON Schema (of its non-null branch), e.g. `>= 1, <= 4096`."""
    branches = [schema, *schema.get("anyOf", ())]
    found: list[str] = []
    for branch in branches:
        for key, template in _BOUNDS:
            if key == "pattern" and branch.get(key) == IDENTIFIER_PATTERN:
                found.append("no control characters")
            elif key in branch:
                found.append(template.format(branch[key]))
    return ", ".join(found)


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _describe(cls: type[BaseModel], name: str, field: FieldInfo) -> str:
    return field.description or NOTES.get((cls.__name__, name), "")


def _env_name(cls: type[BaseSettings], name: str, field: FieldInfo) -> str:
    alias = field.validation_alias if isinstance(field.validation_alias, str) else field.alias
    if alias:
        return alias.upper()
    prefix = str(cls.model_config.get("env_prefix", ""))
    return f"{prefix}{name}".upper()


def _doc(cls: type[BaseModel]) -> str:
    return " ".join((cls.__doc__ or "").split()).replace("``", "`")


# --- the document ------------------------------------------------------------------------------


HEADER: Final = f"""# Configuration reference

Generated from the settings classes and `schemas.tasks` by `{REGENERATE}`
(`python -m lorafeed.config_docs`); do not edit by hand: change the code and regenerate.
A unit test fails when this file and the code disagree.

Services read their settings once, from the environment, at start. Every service also reads the
platform settings (`LORAFEED_*`); when the broker, Redis or Milvus URL is unset, it is taken
from the running embedded stack's state file (`<state_dir>/stack.json`). Values that are
secrets are never printed back. Per-task learning knobs are not environment variables: they
live in the task catalog (`config/tasks.toml`, see the last part).

"""


def _settings_section(section: SettingsSection) -> list[str]:
    cls = section.cls
    properties = cls.model_json_schema()["properties"]
    prefix = str(cls.model_config.get("env_prefix", ""))
    lines = [
        f"## {section.title}: `{prefix}*`",
        "",
        f"`{cls.__module__}.{cls.__name__}`, read by {section.readers}. {_doc(cls)}",
        "",
        "| variable | type | default | allowed | description |",
        "|---|---|---|---|---|",
    ]
    for name, field in cls.model_fields.items():
        schema = properties.get(field.alias or name, {})
        lines.append(
            f"| `{_env_name(cls, name, field)}` | {_cell(type_name(field.annotation))} "
            f"| {_cell(default_text(field))} | {_cell(constraints(schema))} "
            f"| {_cell(_describe(cls, name, field))} |"
        )
    return [*lines, ""]


def _task_section(key: str, model: type[BaseModel]) -> list[str]:
    properties = model.model_json_schema()["properties"]
    table = "[tasks.<name>]" if not key else f"[tasks.<name>.{key}]"
    lines = [f"### `{table}`", "", _doc(model), "", "| key | type | default | allowed |",
             "|---|---|---|---|"]
    for name, field in model.model_fields.items():
        if name == "name":
            continue  # the table's own name
        wire = field.alias or name
        lines.append(
            f"| `{wire}` | {_cell(type_name(field.annotation))} | {_cell(default_text(field))} "
            f"| {_cell(constraints(properties.get(wire, {})))} |"
        )
    return [*lines, ""]


TASKS_INTRO: Final = """## Task catalog: `config/tasks.toml`

Read by the learner (`LEARNER_TASKS_FILE`) and by serving nodes and the scorer
(`SERVING_TASKS_FILE`); give them the same file. Each `[tasks.<name>]` table is one
`schemas.tasks.TaskConfig` (task names: lowercase letters, digits, `_`, `-`, at most 64
characters); omitted keys keep the defaults below. Unknown keys are refused with the task's name.
The optional `[base_models]` table maps a base-model name to a local Hugging Face directory
(relative paths are resolved against the task file's directory); a name found there wins over the
built-in names (`smollm2-135m-instruct`, `all-minilm-l6-v2`, `tiny-llama`, `tiny-qwen2`,
`tiny-deepseek-v3`). Every adapter manifest records the task settings it was trained with.

"""


def render() -> str:
    """The whole of docs/configuration.md."""
    lines = [HEADER.rstrip("\n"), ""]
    for section in SETTINGS:
        lines += _settings_section(section)
    lines += ["## Other environment variables", "", "| variable | default | description |",
              "|---|---|---|"]
    lines += [f"| `{name}` | {default} | {_cell(text)} |"
              for name, default, text in OTHER_VARIABLES]
    lines += ["", TASKS_INTRO.rstrip("\n"), ""]
    for key, model in TASK_SECTIONS:
        lines += _task_section(key, model)
    return "\n".join(lines).rstrip("\n") + "\n"


def sync_file(path: Path, text: str, *, check: bool, command: str) -> int:
    """Write `text` to `path`, or with `check` only compare (1 on drift, naming `command` as the
    way to regenerate). Prints what happened."""
    current = path.read_text(encoding="utf-8") if path.is_file() else None
    if check:
        if current == text:
            print(f"{path} is up to date")
            return 0
        print(f"{path} differs from the code; regenerate it with `{command}`")
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    print(f"{path} {'unchanged' if current == text else 'written'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Write (or with --check, compare) the configuration reference; 1 when --check finds drift."""
    parser = argparse.ArgumentParser(description="Generate docs/configuration.md.")
    parser.add_argument("path", nargs="?", type=Path, default=DEFAULT_PATH)
    parser.add_argument("--check", action="store_true", help="Only compare; exit 1 on drift.")
    args = parser.parse_args(argv)
    return sync_file(args.path, render(), check=args.check, command=REGENERATE)


if __name__ == "__main__":
    sys.exit(main())
