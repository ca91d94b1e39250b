"""The model under test: a random-weight Llama with the carried tokenizer, saved as a directory.

Random weights cost exactly what a real checkpoint of that shape costs per
token, and need no download on a machine without network. The vocabulary is
the tokenizer's, so that the gateway's templating and detokenization run as
they do for the embedded SmolLM2.
"""

from __future__ import annotations

import gc
import json
import math
import shutil
import time
from pathlib import Path
from typing import Any

from bench.gpu import log

SHAPES: dict[str, dict[str, int]] = {
    "1b": {
        "hidden_size": 2048,
        "num_hidden_layers": 16,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "intermediate_size": 8192,
    },
    "tiny": {
        "hidden_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "intermediate_size": 128,
    },
}
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
)


def build_model(tokenizer_dir: Path, model_dir: Path, shape: str, device: str) -> dict[str, Any]:
    """A random-weight Llama in bf16 with the tokenizer's vocabulary, saved with the tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM

    started = time.monotonic()
    config = _config(tokenizer_dir, shape)
    torch.manual_seed(0)
    with torch.device(device):  # built where it will run: seconds, not minutes, for 1b
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # type: ignore[no-untyped-call]
    params = sum(p.numel() for p in model.parameters())
    if model_dir.exists():
        shutil.rmtree(model_dir)
    model.save_pretrained(model_dir)
    del model
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()  # the engine about to load it wants the memory back
    for name in TOKENIZER_FILES:  # after save_pretrained: the carried generation config wins
        if (tokenizer_dir / name).is_file():
            shutil.copy(tokenizer_dir / name, model_dir / name)
    info = {
        "shape": shape,
        **SHAPES[shape],
        "vocab_size": config.vocab_size,
        "params_b": round(params / 1e9, 3),
        "dtype": "bfloat16",
        "eos_token_id": config.eos_token_id,
        "build_and_save_s": round(time.monotonic() - started, 1),
    }
    log(f"model: {info} -> {model_dir}")
    return info


def _config(tokenizer_dir: Path, shape: str) -> Any:
    from transformers import AutoTokenizer, LlamaConfig

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    generation = json.loads((tokenizer_dir / "generation_config.json").read_text())
    shape_kwargs: dict[str, Any] = dict(SHAPES[shape])  # typed loosely, as LlamaConfig's are
    return LlamaConfig(
        vocab_size=len(tokenizer),
        max_position_embeddings=8192,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=generation.get("bos_token_id"),
        eos_token_id=generation.get("eos_token_id"),
        pad_token_id=generation.get("pad_token_id"),
        **shape_kwargs,
    )


def describe_model(model_dir: Path) -> dict[str, Any]:
    """What the report says of a model given as a directory (`--model-dir`), not built."""
    from safetensors import safe_open

    config = json.loads((model_dir / "config.json").read_text())
    params = 0
    for shard in model_dir.glob("*.safetensors"):
        with safe_open(shard, "np") as tensors:
            params += sum(math.prod(tensors.get_slice(name).get_shape()) for name in tensors.keys())  # noqa: SIM118 (not a dict)
    info = {
        "shape": model_dir.name,
        "vocab_size": config["vocab_size"],
        "params_b": round(params / 1e9, 3),
        "dtype": config.get("torch_dtype") or config.get("dtype"),
        "eos_token_id": config.get("eos_token_id"),
    }
    log(f"model: {info} <- {model_dir}")
    return info
