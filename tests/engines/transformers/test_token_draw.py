from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from engines.transformers.token_draw import candidates, sample, truncate


@dataclass
class Row:
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    generator: torch.Generator | None = None


def test_truncate_keeps_the_top_k_then_the_top_p_nucleus() -> None:
    values = torch.tensor([0.5, 0.3, 0.15, 0.05]).log().expand(5, 4)

    out = truncate(values, [0, 3, 0, 0, 1], [1.0, 1.0, 0.75, 0.0, 1.0])

    kept = torch.isfinite(out).sum(dim=1).tolist()
    assert kept == [4, 3, 2, 1, 1]
    assert torch.equal(out[0], values[0])


def test_draws_follow_the_probabilities() -> None:
    probs = torch.tensor([0.0, 0.6, 0.3, 0.1, 0.0, 0.0, 0.0, 0.0])
    draws = 6000
    row = Row()

    tokens = sample(probs.log().expand(draws, -1), [row] * draws)

    counts = torch.bincount(tokens, minlength=8).double() / draws
    assert counts[probs == 0].sum() == 0  # a token of probability 0 never comes
    assert counts[1:4].tolist() == pytest.approx([0.6, 0.3, 0.1], abs=0.03)


@pytest.mark.parametrize(("scale", "width"), [(4.0, 64), (0.2, 4096)])
def test_top_p_over_a_head_keeps_the_nucleus_of_the_whole_row(scale, width) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4096, generator=generator) * scale
    top_p = [0.5, 0.9]
    rows = [Row(top_p=p) for p in top_p]

    values, ids, log_total = candidates(logits, rows)
    head = truncate(values, [0, 0], top_p, log_total)
    whole_values, whole_ids = logits.sort(dim=-1, descending=True)
    whole = truncate(whole_values, [0, 0], top_p)

    assert values.size(1) == width  # peaked rows need no whole sort
    for r in range(2):
        kept = set(ids[r][torch.isfinite(head[r])].tolist())
        assert kept == set(whole_ids[r][torch.isfinite(whole[r])].tolist())
