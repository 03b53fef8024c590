"""The task catalog: every TaskConfig and the local base-model directories, from one TOML file.

Read once by the learner's and serving's composition roots (`LEARNER_TASKS_FILE`,
`SERVING_TASKS_FILE`, default `config/tasks.toml`) and passed down.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from pydantic import ValidationError

from schemas.tasks import TaskConfig

MAX_FILE_BYTES: Final = 1024 * 1024
DEFAULT_TASKS_FILE: Final = Path("config/tasks.toml")


class CatalogError(ValueError):
    """The task file is missing, unreadable, not TOML, or describes an invalid task."""


@dataclass(frozen=True)
class TaskCatalog:
    """Tasks by name, and base-model names mapped to local directories (overrides)."""

    tasks: Mapping[str, TaskConfig]
    base_models: Mapping[str, Path] = field(default_factory=dict)
    source: Path | None = None

    def task(self, name: str) -> TaskConfig:
        """The named task; CatalogError listing the known ones otherwise."""
        try:
            return self.tasks[name]
        except KeyError:
            known = ", ".join(sorted(self.tasks)) or "none"
            raise CatalogError(f"unknown task {name!r}; known tasks: {known}") from None


def load_catalog(path: Path) -> TaskCatalog:
    """Parse `path`: `[tasks.<name>]` tables (TaskConfig fields) and `[base_models]` paths.

    Relative base-model paths are resolved against the file's directory.
    """
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CatalogError(f"task file {path} is {size} bytes; the limit is {MAX_FILE_BYTES}")
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CatalogError(f"task file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CatalogError(f"cannot read task file {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CatalogError(f"task file {path} is not valid TOML: {exc}") from exc
    return parse_catalog(data, source=path)


def parse_catalog(data: Mapping[str, Any], *, source: Path | None = None) -> TaskCatalog:
    """Build the catalog from already-parsed TOML data (see load_catalog)."""
    where = str(source) if source is not None else "task catalog"
    unknown = sorted(set(data) - {"tasks", "base_models"})
    if unknown:
        raise CatalogError(
            f"{where}: unknown top-level tables {unknown}; use [tasks.*] and [base_models]"
        )
    tables = data.get("tasks", {})
    if not isinstance(tables, Mapping) or not tables:
        raise CatalogError(f"{where}: declare at least one task as a [tasks.<name>] table")
    tasks: dict[str, TaskConfig] = {}
    for name, table in tables.items():
        if not isinstance(table, Mapping):
            raise CatalogError(f"{where}: tasks.{name} must be a table, got {type(table).__name__}")
        if "name" in table and table["name"] != name:
            raise CatalogError(f"{where}: tasks.{name} declares a different name {table['name']!r}")
        try:
            tasks[name] = TaskConfig.model_validate({**table, "name": name})
        except ValidationError as exc:
            raise CatalogError(f"{where}: task {name!r} is invalid: {exc}") from exc
    return TaskCatalog(tasks, _base_models(data.get("base_models", {}), source, where), source)


def _base_models(table: object, source: Path | None, where: str) -> dict[str, Path]:
    if not isinstance(table, Mapping):
        raise CatalogError(f"{where}: [base_models] must map names to directory paths")
    root = source.parent if source is not None else Path.cwd()
    paths: dict[str, Path] = {}
    for name, value in table.items():
        if not isinstance(value, str) or not value:
            raise CatalogError(f"{where}: base_models.{name} must be a directory path string")
        paths[name] = (root / value).resolve()
    return paths
