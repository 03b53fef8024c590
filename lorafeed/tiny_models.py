"""Tiny random causal LMs (Llama, Qwen2, DeepSeek V3) with a matching tokenizer, for tests.

They build in milliseconds, are deterministic for a seed, and save as ordinary Hugging Face
directories, so tests exercise the same loading and LoRA code paths as real checkpoints.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from lorafeed.models import ModelError

if TYPE_CHECKING:
    from transformers import PreTrainedConfig, PreTrainedModel, PreTrainedTokenizerFast

Arch = Literal["llama", "qwen2", "deepseek_v3"]


# A fixed corpus keeps the tiny tokenizer identical on every build without any download.
_TINY_CORPUS = (
    "The customer ordered three blue widgets and asked when the parcel would ship. Refunds are "
    "issued within five business days after the returned item arrives. Our support team answers "
    "questions about invoices, shipping and warranty claims.",
    "The warehouse in Lyon restocks printer cartridges every Monday morning. Please confirm the "
    "delivery address before we dispatch the replacement part.",
    "What is the capital of France? The capital of France is Paris. Premium members get free "
    "express delivery and a longer return window.",
    "The product manual explains how to reset the device to factory settings. An agent escalated "
    "the ticket because the payment failed twice. Inventory levels, order history and price "
    "changes are streamed from Kafka. Each answer should cite the knowledge base article it was "
    "drawn from. Quarterly revenue grew while the number of open complaints went down.",
)
_TINY_SPECIALS = {
    "unk": "<|endoftext|>",
    "bos": "<|im_start|>",
    "eos": "<|im_end|>",
    "pad": "<|pad|>",
}
_TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


@functools.cache
def _tiny_tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=512,
        special_tokens=list(_TINY_SPECIALS.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_TINY_CORPUS, trainer=trainer)
    return tokenizer.to_str()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A deterministic byte-level BPE (~512 tokens) with ChatML markers and a chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tiny_tokenizer_json()),
        chat_template=_TINY_CHAT_TEMPLATE,
        **{f"{role}_token": token for role, token in _TINY_SPECIALS.items()},
    )


def tiny_config(arch: Arch, **overrides: Any) -> PreTrainedConfig:
    """A config of the named architecture small enough to build and train in milliseconds."""
    from transformers import AutoConfig

    if arch not in get_args(Arch):
        raise ModelError(f"no tiny model for architecture {arch!r}; known: {get_args(Arch)}")
    tokenizer = tiny_tokenizer()
    sizes: dict[str, Any] = dict(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if arch == "deepseek_v3":  # multi-head latent attention, 4 routed experts + 1 shared
        sizes |= dict(
            num_key_value_heads=4,
            q_lora_rank=32,
            kv_lora_rank=16,
            qk_rope_head_dim=8,
            qk_nope_head_dim=8,
            v_head_dim=8,
            moe_intermediate_size=32,
            n_routed_experts=4,
            num_experts_per_tok=2,
            n_shared_experts=1,
            first_k_dense_replace=1,
            n_group=1,
            topk_group=1,
        )
    return AutoConfig.for_model(arch, **(sizes | overrides))


def tiny_causal_lm(
    arch: Arch, seed: int = 0, **overrides: Any
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """A random fp32 CPU causal LM of ``arch`` and its tokenizer; same seed, same weights."""
    import torch
    from transformers import AutoModelForCausalLM

    config = tiny_config(arch, **overrides)
    with torch.random.fork_rng(devices=[]):  # leave the caller's RNG stream untouched
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    return model.eval(), tiny_tokenizer()


def save_tiny_causal_lm(arch: Arch, directory: Path, seed: int = 0) -> Path:
    """Write a tiny model and its tokenizer as a directory ``from_pretrained`` loads offline."""
    model, tokenizer = tiny_causal_lm(arch, seed)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
