"""The LoRA adapter versions loaded into one base model, side by side under peft names
"v<major>_<minor>_<patch>": load, switch, smoke-test and delete them.

Not thread-safe by design: only the engine's model-owner thread may call it, so no forward pass
ever overlaps a switch, load or delete.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lorafeed.models import ModelError
from lorafeed.task_models import ADAPTER_FILES, open_adapter
from schemas.tasks import TaskConfig
from serving.errors import AdapterRefused, UnknownVersion

if TYPE_CHECKING:
    import torch
    from peft import PeftModel
    from transformers import PreTrainedModel

log = logging.getLogger(__name__)
_UNSET: Final = object()  # which adapter is switched on is unknown (after a load or delete)


def adapter_name(version: str) -> str:
    """The peft adapter name of a version: "1.2.3" -> "v1_2_3"."""
    return "v" + version.replace(".", "_")


class AdapterSlots:
    """Adapters of `task` on `model` (modified in place by peft; forward through `model`)."""

    def __init__(self, task: TaskConfig, model: PreTrainedModel) -> None:
        self.task = task
        self.model = model
        self._peft: PeftModel | None = None
        self._loaded: dict[str, str] = {}  # version -> adapter name
        self._retired: str | None = None  # last adapter left, kept until another is loaded
        self._current: object = _UNSET

    @property
    def versions(self) -> frozenset[str]:
        return frozenset(self._loaded)

    def activate(self, version: str | None) -> None:
        """Switch the model to `version` (None: the base model) unless it already is."""
        if self._current == version:
            return
        if version is None:
            if self._peft is not None:
                self._tuner().disable_adapter_layers()
        else:
            name = self._loaded.get(version)
            if name is None or self._peft is None:
                raise UnknownVersion(self.task.name, version, "not loaded in the engine")
            self._tuner().enable_adapter_layers()
            self._peft.set_adapter(name, inference_mode=True)
        self._current = version

    def _tuner(self) -> Any:
        """peft's LoraModel inside the PeftModel (typed loosely: torch types it as a Tensor)."""
        assert self._peft is not None
        return self._peft.base_model

    def load(self, version: str, version_dir: Path) -> None:
        """Add `version` from `version_dir`; the active adapter is unchanged."""
        if version in self._loaded:
            return
        name = adapter_name(version)
        holder: Any = self._peft if self._peft is not None else self.model
        self._current = _UNSET
        try:
            self._peft = open_adapter(
                self.task, holder, version_dir, trainable=False, adapter_name=name
            )
        except ModelError as exc:
            self._discard(name)
            raise AdapterRefused(self.task.name, version, f"peft could not load it: {exc}") from exc
        self._peft.eval()
        self._loaded[version] = name
        if self._retired is not None:
            self._delete(self._retired)
            self._retired = None

    def smoke(self, version: str, probe: dict[str, torch.Tensor]) -> None:
        """AdapterRefused unless `version`'s weights and its logits on `probe` are finite."""
        import torch

        name = self._loaded.get(version)
        if name is None or self._peft is None:
            raise UnknownVersion(self.task.name, version, "not loaded in the engine")
        weights = [(n, p) for n, p in self._peft.named_parameters() if f".{name}." in n]
        if not weights:
            raise AdapterRefused(self.task.name, version, "no weights of it are in the model")
        bad = [n for n, p in weights if not bool(torch.isfinite(p).all())]
        if bad:
            raise AdapterRefused(
                self.task.name, version, f"{len(bad)} weight tensors hold NaN/Inf, e.g. {bad[0]}"
            )
        self.activate(version)
        with torch.inference_mode():
            logits = self.model(**probe).logits
        if not bool(torch.isfinite(logits).all()):
            raise AdapterRefused(self.task.name, version, "its output on the probe has NaN/Inf")

    def unload(self, version: str) -> None:
        """Delete `version` and give its memory back (no-op if not loaded)."""
        name = self._loaded.pop(version, None)
        if name is None or self._peft is None:
            return
        self._current = _UNSET
        if len(self._peft.peft_config) == 1:
            # peft cannot add an adapter to a classification model left with none: keep this
            # one (never activated again) until the next load replaces it.
            self._retired = name
        else:
            self._delete(name)
        release_memory()

    def _delete(self, name: str) -> None:
        assert self._peft is not None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "adapter X was active which is now deleted"
            self._peft.delete_adapter(name)
        self._current = _UNSET

    def _discard(self, name: str) -> None:
        """Remove what a failed load left behind, so the base and other versions stay exact."""
        try:
            if self._peft is not None and name in self._peft.peft_config:
                if len(self._peft.peft_config) > 1:
                    self._delete(name)
                else:
                    self._retired = name
            elif self._peft is None:
                from peft.tuners.tuners_utils import delete_adapter

                delete_adapter(self.model, name, prefix="lora_")
        except Exception:  # best effort; the load has already failed and is reported
            log.exception("task %s: cleaning up failed adapter %s", self.task.name, name)


def check_weights_file(task: str, version: str, version_dir: Path) -> None:
    """AdapterRefused unless the adapter's safetensors file reads and every float is finite
    (run before the model is touched)."""
    import safetensors.torch

    path = Path(version_dir) / ADAPTER_FILES[1]
    try:
        tensors = safetensors.torch.load_file(path)
    except Exception as exc:  # safetensors raises its own error type for malformed files
        raise AdapterRefused(task, version, f"cannot read {path.name}: {exc}") from exc
    if not tensors:
        raise AdapterRefused(task, version, f"{path.name} holds no tensor")
    bad = sorted(
        key for key, t in tensors.items() if t.is_floating_point() and not bool(t.isfinite().all())
    )
    if bad:
        raise AdapterRefused(
            task, version, f"{len(bad)} tensors of {path.name} hold NaN/Inf, e.g. {bad[0]}"
        )


def release_memory() -> None:
    """Give freed heap back to the OS (glibc keeps it otherwise), so RSS stays flat across
    adapter load/unload cycles. A deleted adapter's tensors are freed by reference counting;
    only the youngest generation is collected, as a full collection of a process holding
    torch and transformers takes ~0.3 s on the model-owner thread (measured: RSS flat over 300
    cycles either way)."""
    gc.collect(0)
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
