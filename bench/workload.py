"""Request bodies: prompts of a known token length, output lengths that vary.

Prompts are drawn from common English words that SmolLM2's tokenizer (a GPT-2
style byte-level BPE) encodes as exactly one token each when they follow a
space, so N words make N prompt tokens plus the chat template's own. Real text
is mostly such words; a random-vocabulary prompt would instead defeat the BPE
word cache and take about three times longer to tokenize.

Output lengths vary around the mean (uniform over [mean/2, 3*mean/2]) so that
closed-loop streams do not finish in lockstep: with equal lengths every stream
started together would also end together, and the engine would idle between
waves.
"""

from __future__ import annotations

import random
from typing import Any

import orjson

_WORD_LIST = (
    "the of and to in is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there one all we their been has when who will "
    "more no if out so said what up its about into than them can only other new some could "
    "time these two may then do first any my now such like our over man me even most made "
    "after also did many before must through back years where much your way well down should "
    "because each just those people how too little state good very make world still own see "
    "men work long get here between both life being under never day same another know while "
    "last might us great old year off come since against go came right used take three"
)
WORDS = tuple(_WORD_LIST.split())

CHAT_PATH = "/v1/chat/completions"


def prompt_text(words: int, rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def chat_body(model: str, prompt: str, max_tokens: int, temperature: float | None = None) -> bytes:
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if temperature is not None:
        body["temperature"] = temperature
    return orjson.dumps(body)


def chat_bodies(
    model: str,
    prompt_words: int,
    mean_max_tokens: int,
    count: int = 64,
    seed: int = 0,
    temperature: float | None = None,
) -> tuple[bytes, ...]:
    """`count` distinct request bodies; clients cycle through them."""
    rng = random.Random(seed)
    low, high = max(1, mean_max_tokens // 2), max(1, mean_max_tokens * 3 // 2)
    if mean_max_tokens <= 2:
        low = high = mean_max_tokens  # too short to vary around
    return tuple(
        chat_body(model, prompt_text(prompt_words, rng), rng.randint(low, high), temperature)
        for _ in range(count)
    )


def mean_max_tokens(bodies: tuple[bytes, ...]) -> float:
    """The mean `max_tokens` of these bodies: the mean output length the engine will emit."""
    return sum(int(orjson.loads(body)["max_tokens"]) for body in bodies) / len(bodies)
