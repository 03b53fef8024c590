"""Invariant 4 (pure, over an `Observed` snapshot): every version directory in the adapter store
has a valid manifest whose files verify; every champion pointer and every model event names a
version that exists, with that version's manifest digest; gate verdicts and events agree; no
node failed to load a version (nothing the learner publishes is incomplete)."""

from __future__ import annotations

from collections import Counter

from tests.faults.observe import Observed
from tests.faults.results import CheckResult, Violations

_NAMED = ("adapter_published", "adapter_promoted", "adapter_rejected", "adapter_activated")


def check_adapters(o: Observed) -> CheckResult:
    v = Violations()
    store = o.store
    for problem in store.problems:
        v.add(problem)
    for task, champion in store.champions.items():
        if champion is not None and store.digest(task, champion[0]) != champion[1]:
            v.add(f"{task}: the champion pointer names {champion[0]} ({champion[1][:12]}), "
                  "not a verified version with that digest")
    seen = Counter[str]()
    for event in o.model_events:
        kind = str(getattr(event, "type", type(event).__name__))
        seen[kind] += 1
        if kind in _NAMED:
            version = getattr(event, "version", None)
            digest = getattr(event, "manifest_sha256", None)
            if version is None and kind == "adapter_activated":
                continue
            found = store.digest(event.task, str(version))
            if found is None:
                v.add(f"{kind} names {event.task}@{version}: no such version directory")
            elif digest is not None and digest != found:
                v.add(f"{kind} names {event.task}@{version} with digest {digest[:12]}, the "
                      f"store holds {found[:12]}")
            manifest = store.manifests.get((event.task, str(version)))
            if manifest is not None and kind in ("adapter_promoted", "adapter_rejected") \
                    and manifest.gate.promoted != (kind == "adapter_promoted"):
                v.add(f"{kind} for {event.task}@{version}, whose gate says "
                      f"promoted={manifest.gate.promoted}")
        elif kind == "adapter_rolled_back":
            source = getattr(event, "from_version", None)
            if store.digest(event.task, str(source)) is None:
                v.add(f"rollback of {event.task} from {source}: no such version directory")
        elif kind == "adapter_load_failed":
            v.add(f"{getattr(event, 'node', '?')} failed to load {event.task}@"
                  f"{getattr(event, 'version', '?')}: {getattr(event, 'reason', '')[:200]}")
    promoted = sum(m.gate.promoted for m in store.manifests.values())
    return v.result("adapters", {
        "versions": len(store.manifests), "promoted": promoted,
        "rejected": len(store.manifests) - promoted, "events": len(o.model_events),
        "activations": seen["adapter_activated"], "rollbacks": seen["adapter_rolled_back"],
        "load_failures": seen["adapter_load_failed"],
    })
