"""The model layer shared by learner and serving: resolve a task's base model, load it for the
task's kind, attach, save and reopen LoRA adapters (byte-stable), say why an adapter cannot serve.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from lorafeed.adapter_compat import ADAPTER_CONFIG
from lorafeed.adapter_compat import compatibility_problems as compatibility_problems
from lorafeed.models import (
    SMOLLM2_DIRNAME,
    ModelError,
    check_prepared,
    file_sha256,
    lora_target_modules,
    minilm_dir,
    smollm2_gguf_path,
)
from lorafeed.tiny_models import Arch, save_tiny_causal_lm

if TYPE_CHECKING:
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

    from schemas.tasks import TaskConfig

ADAPTER_FILES: Final = (ADAPTER_CONFIG, "adapter_model.safetensors")
SMOLLM2_NAME: Final = "smollm2-135m-instruct"
MINILM_NAME: Final = "all-minilm-l6-v2"
TINY_ARCHS: Final[dict[str, Arch]] = {
    "tiny-llama": "llama",
    "tiny-qwen2": "qwen2",
    "tiny-deepseek-v3": "deepseek_v3",
}
KNOWN_MODELS: Final = (SMOLLM2_NAME, MINILM_NAME, *TINY_ARCHS)
_BERT_TARGETS: Final = ("query", "key", "value", "dense")
_HEADS: Final = ("classifier", "score")  # BERT-like / causal-LM sequence classification heads
_HEAD_SEED: Final = 0  # the untrained head of a base is initialised the same way everywhere


# --- base models -------------------------------------------------------------------------------


def resolve_base_model(
    name: str, models_dir: Path, overrides: Mapping[str, Path] | None = None
) -> Path:
    """The local directory of base model `name`; `overrides[name]` (a local HF dir) wins."""
    if overrides and name in overrides:
        directory = Path(overrides[name])
        if not (directory / "config.json").is_file():
            raise ModelError(f"override for base model {name!r}: {directory} has no config.json")
        return directory
    if name == MINILM_NAME:
        return minilm_dir()
    if name == SMOLLM2_NAME:
        return _prepared_smollm2(models_dir)
    if name in TINY_ARCHS:
        return _tiny_model_dir(models_dir / name, TINY_ARCHS[name])
    known = sorted({*KNOWN_MODELS, *(overrides or {})})
    raise ModelError(f"unknown base model {name!r}; known: {known}")


def _prepared_smollm2(models_dir: Path) -> Path:
    directory = models_dir / SMOLLM2_DIRNAME
    problem = check_prepared(directory, _source_sha256(smollm2_gguf_path()))
    if problem is not None:
        raise ModelError(
            f"base model {SMOLLM2_NAME!r} is not prepared ({problem}); "
            f"run `lorafeed models prepare` first"
        )
    return directory


@functools.cache
def _source_sha256(path: Path) -> str:
    return file_sha256(path)


def _tiny_model_dir(directory: Path, arch: Arch) -> Path:
    """Generate the tiny model once (seed 0); a file lock serializes concurrent builders."""
    if (directory / "config.json").is_file():
        return directory
    directory.parent.mkdir(parents=True, exist_ok=True)
    with _file_lock(directory.parent / f".{directory.name}.lock"):
        if (directory / "config.json").is_file():
            return directory
        scratch = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
        try:
            save_tiny_causal_lm(arch, scratch, seed=0)
            if directory.exists():  # a half-written dir without config.json
                shutil.rmtree(directory)
            os.rename(scratch, directory)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return directory


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def base_model_sha256(directory: Path) -> str:
    """sha256 over sorted (relative path, file sha256) of every regular file of `directory`.

    Memoized per (path, sizes, mtimes), so repeated calls on an unchanged dir cost one listing.
    """
    root = Path(directory).resolve()
    listing = tuple(
        (path.relative_to(root).as_posix(), stat.st_size, stat.st_mtime_ns)
        for path in sorted(root.rglob("*"))
        if path.is_file() and not path.is_symlink()
        for stat in (path.stat(),)
    )
    if not listing:
        raise ModelError(f"base model directory {root} has no files")
    return _tree_sha256(root, listing)


@functools.lru_cache(maxsize=64)
def _tree_sha256(root: Path, listing: tuple[tuple[str, int, int], ...]) -> str:
    digest = hashlib.sha256()
    for relative, _size, _mtime in listing:
        digest.update(f"{relative}\0{file_sha256(root / relative)}\n".encode())
    return digest.hexdigest()


DTYPE_NAMES: Final = ("float32", "bfloat16", "float16")


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype a `*_DTYPE` setting names (float32, bfloat16 or float16)."""
    import torch

    if name not in DTYPE_NAMES:
        raise ModelError(f"dtype {name!r} is not one of {list(DTYPE_NAMES)}")
    return getattr(torch, name)  # type: ignore[no-any-return]


def load_base(
    task: TaskConfig, directory: Path, *, device: str = "cpu", dtype: torch.dtype | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """The base model for the task's kind (eval mode, on `device`) and its tokenizer.

    Classification loads a sequence-classification model with the task's labels; its new head is
    initialised from a fixed seed so every process sees the same base. Pad tokens are ensured.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    chosen = dtype or torch.float32
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if task.kind == "generation":
            model = AutoModelForCausalLM.from_pretrained(directory, dtype=chosen)
        else:
            labels = list(task.labels or ())
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(_HEAD_SEED)
                model = AutoModelForSequenceClassification.from_pretrained(
                    directory,
                    dtype=chosen,
                    num_labels=len(labels),
                    id2label=dict(enumerate(labels)),
                    label2id={label: index for index, label in enumerate(labels)},
                )
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(
            f"cannot load base model {task.base_model!r} from {directory}: {exc}"
        ) from exc
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    model.to(device)  # type: ignore[arg-type]  # transformers types .to() for dtypes only
    model.train(False)
    return model, tokenizer


# --- LoRA adapters -----------------------------------------------------------------------------


def head_name(base: PreTrainedModel) -> str:
    """The classification head's module name ("classifier" for BERT, "score" for causal LMs)."""
    children = dict(_unwrapped(base).named_children())
    for name in _HEADS:
        if name in children:
            return name
    raise ModelError(f"{type(base).__name__} has no classification head named one of {_HEADS}")


def _unwrapped(model: Any) -> Any:
    from peft import PeftModel

    return model.get_base_model() if isinstance(model, PeftModel) else model


def resolved_targets(task: TaskConfig, base: PreTrainedModel) -> list[str]:
    """The LoRA target module names: the task's own, else the architecture's default."""
    inner = _unwrapped(base)
    if task.lora.target_modules is not None:
        targets = list(task.lora.target_modules)
    elif getattr(inner.config, "model_type", None) == "bert":
        targets = list(_BERT_TARGETS)
    else:
        targets = lora_target_modules(inner.config)
    names = {name.rsplit(".", 1)[-1] for name, _module in inner.named_modules()}
    missing = [target for target in targets if target not in names]
    if missing:
        raise ModelError(
            f"task {task.name!r}: LoRA targets {missing} are not modules of {type(inner).__name__}"
        )
    return targets


def lora_config(task: TaskConfig, base: PreTrainedModel) -> LoraConfig:
    """The peft LoraConfig for the task on this base (head trained in full for classification)."""
    from peft import LoraConfig, TaskType

    classification = task.kind == "classification"
    return LoraConfig(
        r=task.lora.r,
        lora_alpha=task.lora.alpha,
        lora_dropout=task.lora.dropout,
        target_modules=resolved_targets(task, base),
        modules_to_save=[head_name(base)] if classification else None,
        task_type=TaskType.SEQ_CLS if classification else TaskType.CAUSAL_LM,
        base_model_name_or_path=task.base_model,
    )


def new_adapter(task: TaskConfig, base: PreTrainedModel, seed: int) -> PeftModel:
    """A fresh trainable adapter "default" on `base` (modified in place); same seed, same init."""
    import torch
    from peft import get_peft_model

    config = lora_config(task, base)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*base_model_name_or_path.*")
        torch.manual_seed(seed)
        model = get_peft_model(base, config)
    # peft swaps in the local path; the saved config names the model, so bytes do not depend on it
    model.peft_config["default"].base_model_name_or_path = task.base_model
    return model


def open_adapter(
    task: TaskConfig,
    base: PreTrainedModel | PeftModel,
    adapter_dir: Path,
    *,
    trainable: bool,
    adapter_name: str = "default",
) -> PeftModel:
    """Load the adapter in `adapter_dir` onto `base` under `adapter_name`.

    A `PeftModel` base gets one more named adapter (the active one is unchanged); a plain model
    is wrapped. The adapter must have been trained for this task's kind.
    """
    from peft import PeftModel

    missing = [name for name in ADAPTER_FILES if not (Path(adapter_dir) / name).is_file()]
    if missing:
        raise ModelError(f"adapter dir {adapter_dir} lacks {missing}")
    try:
        if isinstance(base, PeftModel):
            base.load_adapter(str(adapter_dir), adapter_name, is_trainable=trainable)
            return base
        return PeftModel.from_pretrained(
            base, str(adapter_dir), adapter_name=adapter_name, is_trainable=trainable
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(
            f"task {task.name!r}: cannot load adapter {adapter_dir} as {adapter_name!r}: {exc}"
        ) from exc


def save_adapter(model: PeftModel, out_dir: Path, adapter_name: str = "default") -> list[str]:
    """Write `ADAPTER_FILES` for `adapter_name` into `out_dir`; same weights, same bytes.

    peft's own `save_pretrained` writes sets in hash order, so the config is serialized here with
    sorted keys and lists; tensors go in sorted key order. Returns the file names written.
    """
    import safetensors.torch
    from peft import get_peft_model_state_dict

    if adapter_name not in model.peft_config:
        raise ModelError(f"no adapter {adapter_name!r}; have {sorted(model.peft_config)}")
    state = get_peft_model_state_dict(model, adapter_name=adapter_name, save_embedding_layers=False)
    tensors = {key: state[key].detach().to("cpu").contiguous() for key in sorted(state)}
    out_dir.mkdir(parents=True, exist_ok=True)
    data = safetensors.torch.save(tensors, metadata={"format": "pt"})
    _write_bytes(out_dir / ADAPTER_FILES[1], data)
    config = _jsonable(model.peft_config[adapter_name].to_dict())
    config["inference_mode"] = True
    config["modules_to_save"] = sorted(set(config["modules_to_save"] or ())) or None
    text = json.dumps(config, indent=2, sort_keys=True) + "\n"
    _write_bytes(out_dir / ADAPTER_FILES[0], text.encode())
    return list(ADAPTER_FILES)


def _jsonable(value: Any) -> Any:
    """Sets become sorted lists, enums their value, recursively; everything else unchanged."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):
        return sorted(_jsonable(item) for item in value)
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if hasattr(value, "value") and isinstance(value.value, str):
        return value.value
    return value


def _write_bytes(path: Path, data: bytes) -> None:
    scratch = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(scratch, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)
