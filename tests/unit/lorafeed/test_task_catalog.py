"""The task catalog: TOML tasks and base-model paths, with errors naming the bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from lorafeed.task_catalog import CatalogError, load_catalog

GOOD = """
[base_models]
deepseek = "models/ds"

[tasks.fraud]
kind = "classification"
base_model = "all-minilm-l6-v2"
labels = ["fraud", "legit"]

[tasks.fraud.ewc]
lambda = 50.0

[tasks.support]
kind = "generation"
base_model = "deepseek"
"""


def _write(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "tasks.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_catalog_loads() -> None:
    catalog = load_catalog(Path("config/tasks.toml"))
    assert catalog.task("fraud").labels == ["fraud", "legit"]
    assert catalog.task("support").kind == "generation"


def test_tasks_get_their_names_and_settings_and_paths_resolve(tmp_path: Path) -> None:
    catalog = load_catalog(_write(tmp_path, GOOD))
    assert catalog.task("fraud").ewc.lambda_ == 50.0
    assert catalog.task("support").name == "support"
    assert catalog.base_models == {"deepseek": (tmp_path / "models/ds").resolve()}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tasks]\n", "at least one task"),
        ("tasks = 3\n", "at least one task"),
        ("[other]\nx = 1\n", "unknown top-level tables ['other']"),
        ("[tasks.a]\nkind = 'classification'\nbase_model = 'm'\n", "needs labels"),
        ("[tasks.a]\nkind = 'poetry'\nbase_model = 'm'\n", "task 'a' is invalid"),
        ("[tasks.a]\nname = 'b'\nkind = 'generation'\nbase_model = 'm'\n", "different name 'b'"),
        ("[tasks.a]\nkind = 'generation'\nbase_model = 'm'\nsurprise = 1\n", "surprise"),
        ("[tasks.a\n", "not valid TOML"),
        ("[base_models]\nx = 3\n[tasks.a]\nkind='generation'\nbase_model='m'\n", "base_models.x"),
    ],
)
def test_bad_catalogs_name_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CatalogError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_catalog(_write(tmp_path, text))


def test_missing_binary_and_oversized_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="does not exist"):
        load_catalog(tmp_path / "absent.toml")
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog(_write(tmp_path, b"\xff\xfe[tasks]"))
    with pytest.raises(CatalogError, match="limit is"):
        load_catalog(_write(tmp_path, "#" * (1024 * 1024 + 1)))


def test_unknown_task_lists_known_ones(tmp_path: Path) -> None:
    catalog = load_catalog(_write(tmp_path, GOOD))
    with pytest.raises(CatalogError, match="known tasks: fraud, support"):
        catalog.task("nope")
