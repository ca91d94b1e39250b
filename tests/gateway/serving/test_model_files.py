from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.serving import model_files
from gateway.serving.model_files import EMBEDDED_NAME, resolve_model_dir


def test_a_model_directory_is_checked(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="not found"):
        resolve_model_dir(tmp_path / "missing", tmp_path)
    (tmp_path / "weights.gguf").write_bytes(b"")
    with pytest.raises(ValueError, match="not a file"):
        resolve_model_dir(tmp_path / "weights.gguf", tmp_path)
    with pytest.raises(ValueError, match=r"no config\.json"):
        resolve_model_dir(tmp_path, tmp_path)
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_dir(tmp_path, tmp_path / "cache") == tmp_path


def test_the_embedded_file_is_found_without_importing_its_package() -> None:
    path = model_files.embedded_gguf_path()
    assert path.suffix == ".gguf"
    assert path.stat().st_size > 50_000_000


@pytest.fixture
def fake_conversion(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """A slow stand-in for the 15 s conversion; records where it wrote."""
    calls: list[Path] = []

    def convert(gguf: Path, out: Path) -> None:
        calls.append(out)
        time.sleep(0.3)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(model_files, "_convert_gguf", convert)
    return calls


def test_concurrent_starts_convert_once(tmp_path: Path, fake_conversion: list[Path]) -> None:
    results: list[Path] = []
    threads = [
        threading.Thread(target=lambda: results.append(resolve_model_dir(None, tmp_path)))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert results == [tmp_path / EMBEDDED_NAME] * 3
    assert len(fake_conversion) == 1
    assert fake_conversion[0] != results[0]  # converted aside, then moved into place
    assert (results[0] / "config.json").is_file()
    assert resolve_model_dir(None, tmp_path) == results[0]
    assert len(fake_conversion) == 1


def test_leftovers_of_a_killed_conversion_are_replaced(
    tmp_path: Path, fake_conversion: list[Path]
) -> None:
    stale = tmp_path / f".{EMBEDDED_NAME}.tmp-dead"
    stale.mkdir()
    (tmp_path / EMBEDDED_NAME).mkdir()  # no completeness marker

    model_dir = resolve_model_dir(None, tmp_path)

    assert not stale.exists()
    assert (model_dir / "config.json").is_file()
    assert len(fake_conversion) == 1


@pytest.mark.model
def test_the_embedded_model_converts_to_a_plain_directory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from transformers import AutoConfig, AutoTokenizer

    with caplog.at_level(logging.INFO, logger="gateway.serving.model_files"):
        model_dir = resolve_model_dir(None, tmp_path)

    assert "converting" in caplog.text
    assert (model_dir / "model.safetensors").stat().st_size > 500_000_000
    assert "quantization_config" not in AutoConfig.from_pretrained(model_dir).to_dict()
    tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    assert [p.name for p in tmp_path.iterdir() if p.is_dir()] == [EMBEDDED_NAME]
