"""Embedded stack start-up: `Stack.up()` to healthy with topics, against the bare binaries
started in the same run and waited for until their ports accept connections.

The baseline is the floor any launcher pays (process start and listen); the ratio shows what
health checks, topic creation and bookkeeping add. Target: up under 20 s on a 2-core machine.
Usage: python bench/stack_up.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from lorafeed import procs
from lorafeed.binaries import milvus_lite_binary, redis_binary, tansu_binary
from lorafeed.settings import StackSettings
from lorafeed.stack import Stack


def bare_start(workdir: Path) -> float:
    """Seconds until the three raw servers accept TCP connections; then stops them."""
    host = "127.0.0.1"
    ports = {name: procs.free_port() for name in ("broker", "redis", "milvus")}
    address = f"tcp://{host}:{ports['broker']}"
    argvs = {
        "broker": [tansu_binary(), "broker", "--listener-url", address,
                   "--advertised-listener-url", address],
        "redis": [redis_binary(), "--port", str(ports["redis"]), "--bind", host, "--save", "",
                  "--dir", str(workdir)],
        "milvus": [milvus_lite_binary(), "server", "--data-dir", str(workdir / "milvus"),
                   "--host", host, "--port", str(ports["milvus"])],
    }
    began = time.perf_counter()
    handles = [procs.spawn(n, argv, workdir / f"{n}.log") for n, argv in argvs.items()]
    try:
        while not all(procs.port_open(host, port) for port in ports.values()):
            time.sleep(0.02)
        return time.perf_counter() - began
    finally:
        for handle in handles:
            procs.stop(handle)


def stack_up(workdir: Path) -> tuple[float, float, float]:
    """Seconds for a cold `up`, a second (already running) `up`, and `down`."""
    settings = StackSettings(state_dir=workdir / "state", kafka_port=0, milvus_port=0,
                             redis_url=f"redis://127.0.0.1:{procs.free_port()}/0")
    stack = Stack(settings)
    began = time.perf_counter()
    stack.up()
    cold = time.perf_counter() - began
    began = time.perf_counter()
    stack.up()
    warm = time.perf_counter() - began
    began = time.perf_counter()
    stack.down()
    return cold, warm, time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    bare, cold, warm, down = [], [], [], []
    for round_ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            bare.append(bare_start(Path(tmp) / "bare"))
            c, w, d = stack_up(Path(tmp) / "stack")
        cold.append(c)
        warm.append(w)
        down.append(d)
        print(f"round {round_ + 1}: bare {bare[-1]:.2f} s, up {c:.2f} s, "
              f"up again {w:.2f} s, down {d:.2f} s")
    b, c = statistics.median(bare), statistics.median(cold)
    print(f"\nmedian bare binaries listening: {b:.2f} s")
    print(f"median stack up to healthy with every topic created: "
          f"{c:.2f} s ({c / b:.2f}x bare; target < 20 s)")
    print(f"median second up (no-op): {statistics.median(warm):.2f} s; "
          f"median down: {statistics.median(down):.2f} s")


if __name__ == "__main__":
    main()
