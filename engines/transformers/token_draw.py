"""Drawing one token per row of logits: temperature, top-k, top-p, then the draw.

Batched over rows: a softmax, a cumsum and one uniform number a row, never a
full sort where a head of the row holds what top-p keeps.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch

_INF = float("inf")


class Draws(Protocol):
    """What a row's request says about drawing its token."""

    temperature: float
    top_k: int  # 0: no top-k
    top_p: float
    generator: torch.Generator | None  # a seeded request's own; None: the global one


def truncate(
    values: torch.Tensor,
    top_k: Sequence[int],
    top_p: Sequence[float],
    log_total: torch.Tensor | None = None,
) -> torch.Tensor:
    """Set to -inf what top-k (0: none) then top-p drop from rows sorted likeliest first.

    Top-p keeps the fewest likeliest tokens whose probability reaches `top_p`;
    the likeliest one always stays. Probabilities are over the row's tokens left
    after top-k, or, where `values` are only the head of the rows, over the whole
    rows, whose logsumexp `log_total` then gives.
    """
    width = values.size(1)
    positions = torch.arange(width, device=values.device)
    ks = torch.tensor([k or width for k in top_k], device=values.device)
    values = values.masked_fill(positions >= ks.unsqueeze(1), -_INF)
    if min(top_p) < 1.0:
        if log_total is None:
            probs = values.softmax(dim=-1)
        else:
            probs = (values - log_total.unsqueeze(1)).exp()
        likelier = probs.cumsum(dim=-1) - probs  # the mass of the tokens before each one
        ps = torch.tensor([p if p < 1.0 else _INF for p in top_p], device=values.device)
        drop = likelier >= ps.unsqueeze(1)
        drop[:, 0] = False
        values = values.masked_fill(drop, -_INF)
    return values


def sample(logits: torch.Tensor, rows: Sequence[Draws]) -> torch.Tensor:
    """Temperature, top-k and top-p, then one draw per row: a token id per row."""
    device = logits.device
    logits = logits / torch.tensor([row.temperature for row in rows], device=device).unsqueeze(1)
    tokens = torch.empty(len(rows), dtype=torch.long, device=device)
    groups: dict[str, list[int]] = {"top_k": [], "top_p": [], "plain": []}
    for j, row in enumerate(rows):
        groups["top_k" if row.top_k else "top_p" if row.top_p < 1.0 else "plain"].append(j)
    for kind, members in groups.items():
        if not members:
            continue
        index = torch.tensor(members, device=device)
        group = [rows[j] for j in members]
        if kind == "plain":
            tokens[index] = _draw(logits[index].softmax(dim=-1), group)
            continue
        values, ids, log_total = candidates(logits[index], group)
        top_k, top_p = [row.top_k for row in group], [row.top_p for row in group]
        values = truncate(values, top_k, top_p, log_total)
        picks = _draw(values.softmax(dim=-1), group)
        tokens[index] = ids.gather(1, picks.unsqueeze(1)).squeeze(1)
    return tokens


def candidates(
    logits: torch.Tensor, rows: Sequence[Draws]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The head of each row, likeliest first, holding every token top-k and top-p may keep.

    Sorting a whole row costs some 50 times a top-64: top-p rows grow their head
    only until it holds the probability asked for. Also the rows' logsumexp
    where the head is not the whole top-p distribution (top-k rows renormalise).
    """
    if rows[0].top_k:  # a group of top-k rows
        values, ids = logits.topk(max(row.top_k for row in rows), dim=-1)
        return values, ids, None
    log_total = logits.logsumexp(dim=-1)
    need = torch.tensor([row.top_p for row in rows], device=logits.device)
    width = 64
    while width < logits.size(1):
        values, ids = logits.topk(width, dim=-1)
        mass = (values - log_total.unsqueeze(1)).exp().sum(dim=-1)
        if bool((mass >= need).all()):
            return values, ids, log_total
        width *= 8
    values, ids = logits.sort(dim=-1, descending=True)
    return values, ids, log_total


def _draw(probs: torch.Tensor, rows: Sequence[Draws]) -> torch.Tensor:
    """One index per row, by inverse CDF: one uniform number per row.

    (multinomial draws one per token: 1.4 ms a row of 49152 on a CPU core.) A
    seeded row takes its number from its own generator.
    """
    uniform = torch.rand(len(rows), 1, device=probs.device)
    for j, row in enumerate(rows):
        if row.generator is not None:
            uniform[j] = torch.rand(1, generator=row.generator, device=probs.device)
    cdf = probs.cumsum(dim=-1)
    # In (0, total]: the first index whose CDF reaches it has a probability above 0.
    target = (1.0 - uniform) * cdf[:, -1:]
    return torch.searchsorted(cdf, target).squeeze(1)
