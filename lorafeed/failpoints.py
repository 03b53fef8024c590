"""Failpoints: named places where a test makes the process SIGKILL itself, to hit crash windows.

``LORAFEED_FAILPOINT=name[@N][,name[@N]...]`` arms points; services declare their points at import
time with :func:`declare` and call :func:`check_armed` at startup so a misspelt name fails loudly.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
from collections.abc import Mapping
from types import MappingProxyType

ENV_VAR = "LORAFEED_FAILPOINT"
_NAME_RE = re.compile(r"^[a-z0-9_.:-]+$")


class FailpointError(ValueError):
    """A failpoint name or the LORAFEED_FAILPOINT value is invalid, or names an unknown point."""


_registry: dict[str, str] = {}
# Armed point -> the hit (1-based) on which it fires; None until the environment is first read.
_armed: Mapping[str, int] | None = None
_names: frozenset[str] = frozenset()
_hits: dict[str, int] = {}


def validate_name(name: str) -> str:
    """Return ``name`` if it is a valid failpoint name, else raise :class:`FailpointError`."""
    if not _NAME_RE.match(name):
        raise FailpointError(f"invalid failpoint name {name!r}: must match {_NAME_RE.pattern}")
    return name


def parse(spec: str) -> dict[str, int]:
    """Parse a LORAFEED_FAILPOINT value into {name: hit on which it fires}; blanks are skipped."""
    armed: dict[str, int] = {}
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, sep, count = item.partition("@")
        validate_name(name)
        hit = 1
        if sep:
            if not count.isdigit() or int(count) < 1:
                raise FailpointError(
                    f"invalid hit count {count!r} in {ENV_VAR} item {item!r}: need an integer >= 1"
                )
            hit = int(count)
        if name in armed:
            raise FailpointError(f"failpoint {name!r} is armed twice in {ENV_VAR}={spec!r}")
        armed[name] = hit
    return armed


def reload(environ: Mapping[str, str] | None = None) -> None:
    """Re-read the armed points (from ``environ``, default ``os.environ``) and reset hit counts.

    Called implicitly on first use; tests call it after changing the environment.
    """
    global _armed, _names
    env = os.environ if environ is None else environ
    armed = parse(env.get(ENV_VAR, ""))
    _armed = MappingProxyType(armed)
    _names = frozenset(armed)
    _hits.clear()


def armed() -> Mapping[str, int]:
    """The armed points, each with the hit (1-based) on which it fires."""
    if _armed is None:
        reload()
    assert _armed is not None
    return _armed


def declare(name: str, description: str) -> str:
    """Register a failpoint and return its name, for use as a module constant.

    Declaring the same name again with the same description is allowed (re-imports); a different
    description means two places claim one name, which is an error.
    """
    validate_name(name)
    known = _registry.get(name)
    if known is not None and known != description:
        raise FailpointError(
            f"failpoint {name!r} is already declared as {known!r}, not {description!r}"
        )
    _registry[name] = description
    return name


def declared() -> Mapping[str, str]:
    """Every declared failpoint with its description (a read-only view)."""
    return MappingProxyType(_registry)


def check_armed() -> None:
    """Raise :class:`FailpointError` if LORAFEED_FAILPOINT names a point nobody declared.

    Services call this at startup, after importing the modules that declare their points.
    """
    unknown = sorted(set(armed()) - set(_registry))
    if unknown:
        known = ", ".join(sorted(_registry)) or "none"
        raise FailpointError(
            f"{ENV_VAR} arms undeclared failpoint(s) {', '.join(unknown)}; declared: {known}"
        )


def failpoint(name: str) -> None:
    """SIGKILL this process if ``name`` is armed and this is the hit it is armed for.

    Costs one set lookup when ``name`` is not armed.
    """
    if _armed is None:
        reload()
    if name not in _names:
        return
    hit = _hits.get(name, 0) + 1
    _hits[name] = hit
    assert _armed is not None
    if hit == _armed[name]:
        _die(name)


def _die(name: str) -> None:
    # A closed or broken stream must not stop the kill.
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    with contextlib.suppress(OSError):
        os.write(2, f"failpoint {name} hit, pid {os.getpid()}\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)
