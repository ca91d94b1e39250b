"""gateway/serving/chat_render.py against transformers and tokenizers themselves: the same prompt
text as `apply_chat_template(tokenize=False)`, the same ids as the Rust tokenizer.

The model families the gateway targets are stood in for by SmolLM2's tokenizer given
each family's chat template (tests/gateway/serving/chat_templates/), special tokens and
pre-tokenizer, so that nothing is downloaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import pytest
from tokenizers import AddedToken, Regex, normalizers
from tokenizers import pre_tokenizers as pt
from transformers import AutoTokenizer

from gateway.serving.chat_render import ChatTemplate

TEMPLATES = Path(__file__).parent / "chat_templates"

# The pre-tokenizer regexes of Llama 3 and Qwen 2's tokenizer.json files.
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def split_then_bytes(pattern: str) -> pt.PreTokenizer:
    return pt.Sequence(
        [
            pt.Split(Regex(pattern), "isolated"),
            pt.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )


@dataclass(frozen=True)
class Family:
    template: str | dict[str, str]  # file names under chat_templates/
    special: dict[str, Any] = field(default_factory=dict)  # for add_special_tokens
    plain: tuple[str, ...] = ()  # added tokens that are not special
    pre_tokenizer: pt.PreTokenizer | None = None
    normalizer: normalizers.Normalizer | None = None


FAMILIES = {
    "llama3.1": Family(
        "llama3.1.jinja",
        {
            "bos_token": "<|begin_of_text|>",
            "eos_token": "<|eot_id|>",
            "additional_special_tokens": [
                "<|start_header_id|>",
                "<|end_header_id|>",
                "<|eom_id|>",
                "<|python_tag|>",
            ],
        },
        pre_tokenizer=split_then_bytes(LLAMA3_SPLIT),
    ),
    # Mistral's own tokenizer is SentencePiece-like; NFKC keeps this one off the fast path.
    "mistral": Family(
        "mistral.jinja",
        {
            "bos_token": "<s>",
            "eos_token": "</s>",
            "additional_special_tokens": [
                "[INST]",
                "[/INST]",
                "[TOOL_CALLS]",
                "[AVAILABLE_TOOLS]",
                "[/AVAILABLE_TOOLS]",
                "[TOOL_RESULTS]",
                "[/TOOL_RESULTS]",
            ],
        },
        normalizer=normalizers.NFKC(),
    ),
    "qwen2.5": Family(
        "qwen2.5.jinja",
        plain=("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"),
        pre_tokenizer=split_then_bytes(QWEN2_SPLIT),
        normalizer=normalizers.NFC(),
    ),
    # Named templates, as Hermes 2 Pro has them: "tool_use" serves requests with tools.
    "hermes": Family({"default": "chatml", "tool_use": "qwen2.5.jinja"}),
    "features": Family("features.jinja", {"bos_token": "<s>"}),
}


@pytest.fixture(scope="session")
def family_dirs(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each family as a tokenizer directory, built from SmolLM2's; and SmolLM2 itself."""
    root = tmp_path_factory.mktemp("families")
    dirs = {"smollm2": model_dir}
    for name, family in FAMILIES.items():
        tokenizer: Any = AutoTokenizer.from_pretrained(model_dir)
        tokenizer.chat_template = _template_text(model_dir, family.template)
        tokenizer.add_special_tokens(family.special)
        tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in family.plain])
        if family.pre_tokenizer is not None:
            tokenizer.backend_tokenizer.pre_tokenizer = family.pre_tokenizer
        if family.normalizer is not None:
            tokenizer.backend_tokenizer.normalizer = family.normalizer
        tokenizer.save_pretrained(root / name)
        dirs[name] = root / name
    return dirs


def _template_text(model_dir: Path, name: str | dict[str, str]) -> str | dict[str, str]:
    if isinstance(name, dict):
        return {key: str(_template_text(model_dir, value)) for key, value in name.items()}
    if name == "chatml":
        return (model_dir / "chat_template.jinja").read_text()
    return (TEMPLATES / name).read_text()


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "e.g. Zürich"}},
            "required": ["city"],
        },
    },
}
CALL = {
    "id": "call12345",  # Mistral's template wants 9 characters
    "type": "function",
    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
}
SYSTEM = {"role": "system", "content": "You are terse.\n"}


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant(text: str, **more: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": text, **more}


@dataclass(frozen=True)
class Case:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = True
    kwargs: dict[str, Any] = field(default_factory=dict)


CASES = {
    "plain": Case([user("Hello there, how are you?")]),
    "system": Case([SYSTEM, user("Name three colors.")]),
    "multi-turn": Case([SYSTEM, user("Hi"), assistant("Hello! "), user("What's 2+2?")]),
    "no generation prompt": Case([user("Hi"), assistant("Hello.")], add_generation_prompt=False),
    "tools given": Case([SYSTEM, user("Weather in Paris?")], tools=[WEATHER]),
    "tool call and result": Case(
        [
            user("Weather in Paris?"),
            assistant("", tool_calls=[CALL]),
            {"role": "tool", "content": '{"temp": 21}', "tool_call_id": "call12345"},
            {"role": "tool", "content": "sunny", "tool_call_id": "call12345"},
            assistant("21 and sunny."),
            user("Thanks!"),
        ],
        tools=[WEATHER],
    ),
    "None-valued keys dropped": Case([user("Hi"), assistant("Yo", tool_calls=None), user("Go")]),
    "reasoning": Case([user("Hi"), assistant("Yo", reasoning="I should greet."), user("Go")]),
    "template kwargs": Case(
        [user("Hi")], kwargs={"date_string": "1 Jan 2025", "extra": {"k": [1, "é"]}}
    ),
    "kwargs over special tokens": Case([user("Hi")], kwargs={"bos_token": "<BOS>"}),
    "non-ASCII": Case([SYSTEM, user("Grüße aus Zürich! 東京 😀 — «ok»\r\n\tdone")]),
    "roles not alternating": Case([user("Hi"), user("Hello?")]),
    "two tool calls": Case([user("Hi"), assistant("", tool_calls=[CALL, CALL])], tools=[WEATHER]),
    "control flow": Case([user("a"), {"role": "skip", "content": "b"}, {"role": "stop"}]),
}


def transformers_render(tokenizer: Any, case: Case) -> str | jinja2.TemplateError:
    try:
        text: str = tokenizer.apply_chat_template(
            case.messages,
            tools=case.tools,
            add_generation_prompt=case.add_generation_prompt,
            tokenize=False,
            **case.kwargs,
        )
    except jinja2.TemplateError as error:
        return error
    return text


@pytest.mark.parametrize("family", ["smollm2", *FAMILIES])
def test_renders_what_transformers_renders(family: str, family_dirs: dict[str, Path]) -> None:
    tokenizer: Any = AutoTokenizer.from_pretrained(family_dirs[family])
    templates = tokenizer.chat_template
    if isinstance(templates, str):
        templates = {"default": templates}
    template = ChatTemplate(templates, tokenizer.special_tokens_map)
    errors = 0
    for name, case in CASES.items():
        expected = transformers_render(tokenizer, case)
        try:
            text = template.render(
                case.messages,
                tools=case.tools,
                add_generation_prompt=case.add_generation_prompt,
                template_kwargs=case.kwargs,
            )
        except jinja2.TemplateError as error:
            assert str(error) == str(expected), name
            errors += 1
            continue
        assert text == expected, name
    assert errors < len(CASES)  # most cases render


def test_template_errors_are_the_template_s(family_dirs: dict[str, Path]) -> None:
    """The comparison above covers errors too: these templates do raise them."""
    tokenizer: Any = AutoTokenizer.from_pretrained(family_dirs["mistral"])
    error = transformers_render(tokenizer, CASES["roles not alternating"])
    assert isinstance(error, jinja2.TemplateError)
    assert "roles must alternate" in str(error)


def test_renders_tools_where_the_template_reads_them(family_dirs: dict[str, Path]) -> None:
    def renders_tools(family: str) -> bool:
        tokenizer: Any = AutoTokenizer.from_pretrained(family_dirs[family])
        templates = tokenizer.chat_template
        if isinstance(templates, str):
            templates = {"default": templates}
        return ChatTemplate(templates, {}).renders_tools

    assert not renders_tools("smollm2")
    assert renders_tools("llama3.1") and renders_tools("mistral") and renders_tools("qwen2.5")
    assert renders_tools("hermes")  # its tool_use template does; its default does not
