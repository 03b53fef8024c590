"""Real English text that ships with Python, for the learner benchmarks: prose sentences and
documented objects from standard-library docstrings, read from the source files (so `-OO` does
not matter). Every list is sorted, so a seed alone decides what a benchmark samples.
"""

from __future__ import annotations

import ast
import functools
import re
import sysconfig
from collections import Counter
from pathlib import Path
from typing import Final

FAMILIES: Final[dict[str, tuple[str, ...]]] = {
    "email": ("email",),
    "asyncio": ("asyncio",),
    "unittest": ("unittest",),
    "xml": ("xml",),
    "logging": ("logging",),
    "http": ("http", "urllib"),
    "tkinter": ("tkinter",),
    "decimal": ("_pydecimal", "fractions", "statistics"),
}
"""Module families (label -> stdlib packages or modules); a sentence belongs to its family."""

_MIN_WORDS, _MAX_WORDS = 6, 40


def stdlib_dir() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def source_files(name: str) -> list[Path]:
    """The `.py` files of stdlib package or module `name`, tests excluded, sorted."""
    root = stdlib_dir()
    package = root / name
    if package.is_dir():
        return sorted(p for p in package.rglob("*.py") if not {"test", "tests"} & set(p.parts))
    module = root / f"{name}.py"
    return [module] if module.is_file() else []


def documented(path: Path) -> list[tuple[str, str]]:
    """(qualified name, whitespace-normalized docstring) of the module and each documented
    function or class of `path`, in source order."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError):
        return []
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}.{child.name}"
                doc = ast.get_docstring(child)
                if doc:
                    found.append((name, " ".join(doc.split())))
                visit(child, name)

    module_doc = ast.get_docstring(tree)
    if module_doc:
        found.append(("", " ".join(module_doc.split())))
    visit(tree, "")
    return found


def prose_sentences(doc: str) -> list[str]:
    """Sentences of `doc` that read as prose: 6-40 words, mostly letters, no doctest."""
    out = []
    for sentence in re.split(r"(?<=[.!?])\s+", doc):
        words = sentence.split()
        if not _MIN_WORDS <= len(words) <= _MAX_WORDS or ">>>" in sentence:
            continue
        letters = sum(ch.isalpha() or ch.isspace() for ch in sentence) / len(sentence)
        if letters > 0.85:
            out.append(sentence)
    return out


@functools.cache
def family_sentences() -> dict[str, tuple[str, ...]]:
    """Family -> its sorted prose sentences; a sentence found in two families is dropped."""
    raw = {
        family: {
            sentence
            for name in names
            for path in source_files(name)
            for _qualname, doc in documented(path)
            for sentence in prose_sentences(doc)
        }
        for family, names in FAMILIES.items()
    }
    shared = Counter(s for sentences in raw.values() for s in sentences)
    return {f: tuple(sorted(s for s in ss if shared[s] == 1)) for f, ss in raw.items()}


@functools.cache
def documented_objects(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """(dotted name, docstring) of every documented function and class of the stdlib packages
    or modules `names`, sorted; docstrings shorter than 8 words are left out."""
    root = stdlib_dir()
    out = []
    for name in names:
        for path in source_files(name):
            module = ".".join(path.relative_to(root).with_suffix("").parts)
            module = module.removesuffix(".__init__")
            for qualname, doc in documented(path):
                if qualname and len(doc.split()) >= 8:
                    out.append((f"{module}{qualname}", doc))
    return tuple(sorted(out))
