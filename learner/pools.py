"""Which held-out examples judge a candidate: the target pool (the batch's domains), one
retention pool per older domain, and a frozen probe slice for classification (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from learner.examples import Example

EVAL_KINDS = frozenset({"sft", "text", "label"})


@dataclass(frozen=True)
class GatePools:
    """Held-out examples per role; `retention` maps an older domain to its examples."""

    target: list[Example]
    retention: dict[str, list[Example]] = field(default_factory=dict)
    probe: list[Example] = field(default_factory=list)


def gate_pools(
    heldout: Sequence[Example],
    batch_domains: set[str],
    *,
    cap: int = 256,
    probe_size: int = 32,
    classification: bool = False,
) -> GatePools:
    """Split the held-out pool (oldest first) for the gate; each pool holds at most `cap`.

    The target pool is the held-out data of the batch's domains (all of it when those domains
    have none yet); every other domain is a retention pool. For classification the probe is the
    `probe_size` oldest held-out examples: a slice that never changes once it exists.
    """
    usable = [example for example in heldout if example.kind in EVAL_KINDS]
    target = [e for e in usable if e.domain in batch_domains] or list(usable)
    retention: dict[str, list[Example]] = {}
    for example in usable:
        if example.domain not in batch_domains:
            retention.setdefault(example.domain, []).append(example)
    probe = usable[:probe_size] if classification else []
    return GatePools(
        target=target[-cap:],
        retention={domain: pool[-cap:] for domain, pool in sorted(retention.items())},
        probe=probe,
    )
