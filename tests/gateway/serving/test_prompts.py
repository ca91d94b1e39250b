"""PromptRenderer: the ids transformers itself gives, whichever way a prompt renders (on
the event loop, in a thread, in a render worker process), and the errors a template
raises as 400s."""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from transformers import AutoTokenizer

from gateway.errors import InvalidRequest
from gateway.serving.prompts import INLINE_CHARS, PromptRenderer
from gateway.serving.token_encoder import TokenEncoder

TEMPLATES = Path(__file__).parent / "chat_templates"
WEATHER = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}
LONG = " ".join(["the quick brown fox jumps over the lazy dog."] * (INLINE_CHARS // 40))


def chat(text: str) -> list[dict[str, Any]]:
    return [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]


PROMPTS = {
    "short": (chat("Hi there!"), None),
    "long": (chat(LONG), None),
    "short, non-ASCII": (chat("Grüße, 世界"), None),
    "long, non-ASCII": (chat(LONG + " Grüße"), None),
    "tools": (chat("Weather?"), [WEATHER]),
}


@pytest.fixture(scope="module")
def qwen_template() -> Path:
    return TEMPLATES / "qwen2.5.jinja"


@pytest.fixture(scope="module")
def renderer(model_dir: Path, qwen_template: Path) -> Iterator[PromptRenderer]:
    renderer = PromptRenderer(model_dir, qwen_template)
    yield renderer
    renderer.close()


@pytest.fixture(scope="module")
def reference(model_dir: Path, qwen_template: Path) -> Any:
    tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = qwen_template.read_text()
    return tokenizer


def expected_ids(reference: Any, messages: list[dict[str, Any]], tools: Any = None) -> list[int]:
    ids: list[int] = reference.apply_chat_template(
        messages, tools=tools, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    return ids


@pytest.mark.parametrize("prompt", PROMPTS)
async def test_renders_the_ids_transformers_gives(
    prompt: str, renderer: PromptRenderer, reference: Any
) -> None:
    messages, tools = PROMPTS[prompt]
    expected = expected_ids(reference, messages, tools)
    assert await renderer.render(messages, tools=tools) == expected
    assert renderer.render_sync(messages, tools=tools) == expected


async def test_short_prompts_render_on_the_event_loop(model_dir: Path, reference: Any) -> None:
    renderer = PromptRenderer(model_dir)
    renderer.close()  # no thread left to hop to
    messages, _ = PROMPTS["short"]
    assert await renderer.render(messages) == renderer.render_sync(messages)
    expected = reference.backend_tokenizer.encode("Hi there", add_special_tokens=False).ids
    assert await renderer.encode("Hi there") == expected
    with pytest.raises(RuntimeError, match="after shutdown"):
        await renderer.render(PROMPTS["long"][0])


async def test_encode_gives_the_tokenizer_s_ids(renderer: PromptRenderer, reference: Any) -> None:
    for text in ("Hi there", LONG, LONG + " Grüße"):
        expected = reference.backend_tokenizer.encode(text, add_special_tokens=False).ids
        assert await renderer.encode(text) == expected


@pytest.mark.parametrize("text", ["Hi", LONG])
async def test_template_errors_are_invalid_requests(text: str, model_dir: Path) -> None:
    renderer = PromptRenderer(model_dir, TEMPLATES / "mistral.jinja")
    try:
        with pytest.raises(InvalidRequest, match="roles must alternate") as caught:
            await renderer.render([{"role": "user", "content": text}] * 2)
    finally:
        renderer.close()
    assert caught.value.param == "messages"
    assert str(caught.value).startswith("chat template: After the optional system message")


async def test_template_kwargs_cannot_replace_the_request(renderer: PromptRenderer) -> None:
    with pytest.raises(InvalidRequest, match="cannot set messages, tools") as caught:
        await renderer.render(chat("Hi"), template_kwargs={"tools": [], "messages": []})
    assert caught.value.param == "chat_template_kwargs"


def test_a_model_without_a_chat_template_is_refused(model_dir: Path, tmp_path: Path) -> None:
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(model_dir / name, tmp_path / name)
    with pytest.raises(ValueError, match="no chat template; set chat_template"):
        PromptRenderer(tmp_path)


@pytest.fixture
def with_workers(model_dir: Path, qwen_template: Path) -> Iterator[PromptRenderer]:
    renderer = PromptRenderer(model_dir, qwen_template, render_workers=2)
    yield renderer
    renderer.close()


async def test_workers_render_long_prompts_as_the_gateway_does(
    with_workers: PromptRenderer, reference: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [PROMPTS[name] for name in ("long", "long, non-ASCII", "tools")]
    expected = [expected_ids(reference, messages, tools) for messages, tools in cases]

    def not_here(*args: Any, **kwargs: Any) -> list[int]:
        raise AssertionError("rendered in the gateway's own process")

    monkeypatch.setattr(TokenEncoder, "encode", not_here)  # workers have their own
    for (messages, tools), ids in zip(cases, expected, strict=True):
        assert await with_workers.render(messages, tools=tools) == ids
    with pytest.raises(InvalidRequest, match="chat template: "):
        await with_workers.render([{"role": "user"}, {"role": "user", "content": LONG}])


async def test_a_burst_through_workers_gets_each_prompt_its_own_answer(
    with_workers: PromptRenderer, reference: Any
) -> None:
    """Prompts asked for together travel in shared batches; each still gets its own ids,
    its own error, or nothing once its request went away."""
    prompts = [chat(f"{n} {LONG}") for n in range(40)]
    broken = [{"role": "user"}, {"role": "user", "content": LONG}]  # no content: undefined
    renders = [asyncio.ensure_future(with_workers.render(messages)) for messages in prompts]
    failing = asyncio.ensure_future(with_workers.render(broken))
    gone = asyncio.ensure_future(with_workers.render(prompts[0]))
    await asyncio.sleep(0)  # all asked for in one turn of the loop
    gone.cancel()
    results = await asyncio.gather(*renders, failing, return_exceptions=True)
    assert results[:-1] == [expected_ids(reference, messages) for messages in prompts]
    assert isinstance(results[-1], InvalidRequest)
    assert gone.cancelled()


def test_closing_leaves_no_worker_behind(model_dir: Path) -> None:
    before = set(multiprocessing.active_children())
    renderer = PromptRenderer(model_dir, render_workers=2)
    workers = set(multiprocessing.active_children()) - before
    assert len(workers) == 2
    renderer.close()
    assert not any(worker.is_alive() for worker in workers)
    assert not set(multiprocessing.active_children()) - before


async def test_a_dead_worker_leaves_rendering_to_threads(
    with_workers: PromptRenderer, reference: Any, caplog: pytest.LogCaptureFixture
) -> None:
    messages, _ = PROMPTS["long"]
    for worker in multiprocessing.active_children():
        worker.kill()
    with caplog.at_level(logging.ERROR, logger="gateway.serving.prompts"):
        assert await with_workers.render(messages) == expected_ids(reference, messages)
        assert await with_workers.render(messages) == expected_ids(reference, messages)
    assert [r.message for r in caplog.records].count(
        "a render worker died; rendering in threads from now on"
    ) == 1
