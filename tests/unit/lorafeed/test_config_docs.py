"""docs/configuration.md is generated from the settings classes and must not drift from them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings

from lorafeed import config_docs
from lorafeed.config_docs import (
    NOTES,
    OTHER_VARIABLES,
    REGENERATE,
    SETTINGS,
    constraints,
    default_text,
    render,
    sync_file,
    type_name,
)

ROOT = Path(__file__).resolve().parents[3]
COMMITTED = ROOT / "docs" / "configuration.md"
DRIFTED = (
    "docs/configuration.md drifted from the settings classes; regenerate it with "
    f"`{REGENERATE}` (or `python -m lorafeed.config_docs`) and commit the result"
)
PACKAGES = ("schemas", "streams", "learner", "serving", "lorafeed")


def test_committed_reference_matches_the_code() -> None:
    assert COMMITTED.is_file(), DRIFTED
    assert COMMITTED.read_text(encoding="utf-8") == render(), DRIFTED


def test_every_settings_class_of_the_code_is_documented() -> None:
    declared = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            declared |= set(re.findall(r"^class (\w+)\(BaseSettings\)", path.read_text(),
                                       re.MULTILINE))
    documented = {section.cls.__name__ for section in SETTINGS}
    assert declared == documented, (
        f"settings classes {sorted(declared - documented)} are missing from "
        "lorafeed/config_docs.SETTINGS (add them, then regenerate with "
        f"`{REGENERATE}`)"
    )


def test_every_setting_is_listed_and_described() -> None:
    text = render()
    for section in SETTINGS:
        prefix = str(section.cls.model_config.get("env_prefix", ""))
        for name, field in section.cls.model_fields.items():
            variable = f"{prefix}{name}".upper()
            assert f"| `{variable}` |" in text
            assert field.description or (section.cls.__name__, name) in NOTES, (
                f"{variable} has no description: give the field a description= "
                "in its settings class"
            )


def test_notes_only_fill_gaps() -> None:
    classes = {section.cls.__name__: section.cls for section in SETTINGS}
    for (cls_name, name), _text in NOTES.items():
        assert cls_name in classes, cls_name
        field = classes[cls_name].model_fields.get(name)
        assert field is not None, f"NOTES names {cls_name}.{name}, which no longer exists"
        assert not field.description, (
            f"{cls_name}.{name} has its own description now: drop it from config_docs.NOTES"
        )


def test_other_variables_are_read_by_the_code() -> None:
    sources = "".join(
        path.read_text() for package in PACKAGES for path in (ROOT / package).rglob("*.py")
        if path.name != "config_docs.py"
    )
    for name, _default, _text in OTHER_VARIABLES:
        assert f'"{name}"' in sources, f"{name} is documented but no code reads it"


def test_every_task_setting_is_listed() -> None:
    text = render()
    for key, model in config_docs.TASK_SECTIONS:
        table = "[tasks.<name>]" if not key else f"[tasks.<name>.{key}]"
        assert f"### `{table}`" in text
        for name, field in model.model_fields.items():
            if name != "name":
                assert f"| `{field.alias or name}` |" in text, (table, name)
    assert "| `lambda` | float | `1000.0` | >= 0.0 |" in text
    assert '| `kind` | "generation" \\| "classification" | required |' in text


class _Sample(BaseSettings):
    count: Annotated[int, Field(ge=1, le=9)] = 3
    token: SecretStr | None = None
    mode: Literal["a", "b"] = "a"
    names: list[str] = Field(default_factory=list)
    flag: bool = True
    empty: str = ""


def test_type_default_and_bounds_rendering() -> None:
    fields = _Sample.model_fields
    properties = _Sample.model_json_schema()["properties"]
    assert type_name(fields["count"].annotation) == "int"
    assert type_name(fields["token"].annotation) == "secret | None"
    assert type_name(fields["mode"].annotation) == '"a" | "b"'
    assert type_name(fields["names"].annotation) == "list[str]"
    assert [default_text(fields[name]) for name in ("count", "token", "names", "flag", "empty")] \
        == ["`3`", "unset", "(empty)", "`true`", '`""`']
    assert constraints(properties["count"]) == ">= 1, <= 9"

    class Inner(BaseModel):
        x: int = 0

    assert type_name(list[Inner]) == "list[table]"
    assert type_name(list[Inner], models="") == "list[Inner]"


def test_sync_file_writes_then_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "docs" / "x.md"
    assert sync_file(path, "a\n", check=True, command="make it") == 1
    assert "regenerate it with `make it`" in capsys.readouterr().out
    assert sync_file(path, "a\n", check=False, command="make it") == 0
    assert path.read_text() == "a\n"
    assert sync_file(path, "a\n", check=True, command="make it") == 0
    assert sync_file(path, "b\n", check=True, command="make it") == 1


def test_main_checks_the_given_path(tmp_path: Path) -> None:
    path = tmp_path / "configuration.md"
    assert config_docs.main([str(path), "--check"]) == 1
    assert config_docs.main([str(path)]) == 0
    assert config_docs.main([str(path), "--check"]) == 0
