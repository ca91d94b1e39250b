from __future__ import annotations

from engines.base import TokenLogprob
from gateway.openai.logprobs import LogprobFormatter

TEXTS = {1: "Hello", 2: " world", 3: "é"}
formatter = LogprobFormatter(TEXTS.__getitem__)


def test_chat_entries_carry_text_bytes_and_alternatives_best_first() -> None:
    entries = formatter.chat([3], [TokenLogprob(-0.25, ((3, -0.25), (1, -2.0)))])
    assert entries == [
        {
            "token": "é",
            "logprob": -0.25,
            "bytes": [0xC3, 0xA9],
            "top_logprobs": [
                {"token": "é", "logprob": -0.25, "bytes": [0xC3, 0xA9]},
                {"token": "Hello", "logprob": -2.0, "bytes": list(b"Hello")},
            ],
        }
    ]


def test_completion_columns_with_offsets_after_earlier_text() -> None:
    columns = formatter.completion(
        [1, 2], [TokenLogprob(-0.5, ((1, -0.5),)), TokenLogprob(-1.0, ((2, -1.0),))], offset=3
    )
    assert columns == {
        "tokens": ["Hello", " world"],
        "token_logprobs": [-0.5, -1.0],
        "top_logprobs": [{"Hello": -0.5}, {" world": -1.0}],
        "text_offset": [3, 8],
    }


def test_an_impossible_token_gets_a_finite_logprob() -> None:
    (entry,) = formatter.chat([1], [TokenLogprob(float("-inf"))])
    assert entry["logprob"] == -9999.0
