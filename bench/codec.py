"""Codec cost: our decode (size cap, depth scan, duplicate keys, strict validation, typed errors)
and encode against plain pydantic on the same payloads, measured in the same run.

Usage: python bench/codec.py [--seconds 1.0]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

from lorafeed.samples import sample_events
from schemas import TOPICS, decode, encode


def rate(fn: Callable[[], object], seconds: float) -> float:
    """Calls per second of ``fn`` over about ``seconds`` of wall time (after a warm-up)."""
    for _ in range(50):
        fn()
    calls, began = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - began) < seconds:
        for _ in range(100):
            fn()
        calls += 100
    return calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=1.0, help="time per measurement")
    args = parser.parse_args()
    print(f"{'topic':<18}{'bytes':>7}{'decode/s':>11}{'pydantic/s':>12}{'ratio':>7}"
          f"{'encode/s':>11}{'dump/s':>10}{'ratio':>7}")
    ratios = []
    for topic, events in sample_events().items():
        event = events[0]
        data = encode(event)
        spec = TOPICS[topic]
        cls = type(event)
        ours = rate(lambda t=topic, d=data: decode(t, d), args.seconds)
        if spec.variants:
            adapter = spec.value_type
            plain = rate(lambda a=adapter, d=data: a.validate_json(d), args.seconds)
        else:
            plain = rate(lambda c=cls, d=data: c.model_validate_json(d), args.seconds)
        enc = rate(lambda e=event: encode(e), args.seconds)
        dump = rate(lambda e=event: e.model_dump_json(), args.seconds)
        ratios.append(ours / plain)
        print(f"{topic:<18}{len(data):>7}{ours:>11,.0f}{plain:>12,.0f}{ours / plain:>7.2f}"
              f"{enc:>11,.0f}{dump:>10,.0f}{enc / dump:>7.2f}")
    big = sample_events()[next(iter(sample_events()))][0]
    payload = big.model_copy(update={"content": "退款政策 refund policy. " * 40_000})
    data = encode(payload)
    ours = rate(lambda: decode("records.raw", data), args.seconds)
    plain = rate(lambda: type(payload).model_validate_json(data), args.seconds)
    loads = rate(lambda: json.loads(data), args.seconds)
    print(f"\n1 MB raw record: decode {ours:,.1f}/s, pydantic {plain:,.1f}/s "
          f"(ratio {ours / plain:.2f}), bare json.loads {loads:,.1f}/s")
    print(f"decode throughput vs plain pydantic, geometric mean over topics: "
          f"{_geomean(ratios):.2f}x")


def _geomean(values: list[float]) -> float:
    product = 1.0
    for value in values:
        product *= value
    return product ** (1 / len(values))


if __name__ == "__main__":
    main()
