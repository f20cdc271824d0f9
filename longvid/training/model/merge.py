"""Clip-level token merge: ToMe bipartite soft matching, repeated, with size-weighted means.

Pure functions on batched tensors (one batch row = one clip); the only Python loop is over the
few merge rounds. Shapes: B clips, N tokens, C channels, M = C / head_chunks metric channels.

Each round splits the tokens by position parity into A (even) and B (odd), matches every A token
to its most similar B token (cosine on the metric), and folds the r best-matched A tokens into
their matches. A token's ``size`` counts the original tokens it stands for, so the merged value is
the size-weighted mean and ``sum(size * x)`` is unchanged by every round. Rounds remove half of
the tokens while more than half must go, then the exact remainder (784 -> 64: 392, 196, 98, 34).
Output order follows ToMe (unmerged A tokens by descending match score, then all B tokens), as in
the released VideoChat-Flash connector.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor


class MergePlan(NamedTuple):
    """Index tensors of one round. ``unm``: [B, Na-r] A tokens that stay; ``src``: [B, r] A tokens
    that merge; ``dst``: [B, r] the B token each of them merges into."""

    unm: Tensor
    src: Tensor
    dst: Tensor


def merge_schedule(n_tokens: int, target: int) -> list[int]:
    """Tokens removed per round to go from ``n_tokens`` to ``target`` (empty when already there)."""
    rounds: list[int] = []
    n = n_tokens
    while n > target:
        if n - target <= n // 2:
            rounds.append(n - target)
            break
        rounds.append(n // 2)
        n -= n // 2
    return rounds


def head_chunk_metric(x: Tensor, chunks: int) -> Tensor:
    """[B, N, C] -> [B, N, C/chunks]: the features split into ``chunks`` equal slices, averaged."""
    b, n, c = x.shape
    if c % chunks:
        raise ValueError(f"width {c} is not divisible by head_chunks {chunks}")
    return x.reshape(b, n, chunks, c // chunks).mean(dim=2)


def bipartite_soft_matching(metric: Tensor, r: int) -> MergePlan:
    """Plan one round removing ``r`` tokens. metric: [B, N, M]; needs r <= N // 2."""
    n = metric.shape[1]
    if not 0 < r <= n // 2:
        raise ValueError(f"cannot remove {r} of {n} tokens in one round (at most {n // 2})")
    with torch.no_grad():
        m = metric.float()
        m = m / m.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        a, b = m[:, ::2], m[:, 1::2]  # [B, Na, M], [B, Nb, M]
        scores = a @ b.transpose(-1, -2)  # [B, Na, Nb] cosine similarity
        best, best_idx = scores.max(dim=-1)  # [B, Na]
        # stable sort: equal scores keep position order, so results never depend on the kernel
        order = best.argsort(dim=-1, descending=True, stable=True)  # [B, Na]
        src = order[:, :r]
        return MergePlan(unm=order[:, r:], src=src, dst=best_idx.gather(1, src))


def merge_sum(x: Tensor, plan: MergePlan) -> Tensor:
    """[B, N, C] -> [B, N - r, C]: each merging A row is added onto its B row."""
    a, b = x[:, ::2], x[:, 1::2]
    c = x.shape[-1]
    unm = a.gather(1, plan.unm[..., None].expand(-1, -1, c))  # [B, Na-r, C]
    moved = a.gather(1, plan.src[..., None].expand(-1, -1, c))  # [B, r, C]
    b = b.scatter_add(1, plan.dst[..., None].expand(-1, -1, c), moved)  # [B, Nb, C]
    return torch.cat([unm, b], dim=1)


def merge_wavg(x: Tensor, size: Tensor, plan: MergePlan) -> tuple[Tensor, Tensor]:
    """Size-weighted merge. x: [B, N, C], size: [B, N, 1] -> ([B, N-r, C], [B, N-r, 1])."""
    total = merge_sum(x * size, plan)
    new_size = merge_sum(size, plan)
    return total / new_size, new_size


def merge_to_target(
    x: Tensor, target: int, head_chunks: int, size: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Merge [B, N, C] down to [B, target, C]; returns (tokens, sizes [B, target, 1]).

    Same result as repeating ``merge_wavg``, with the metric recomputed every round from the
    current (merged) features, but cheaper: the rounds carry ``size * x`` and divide once at the
    end. The metric can come from the weighted sums because cosine similarity ignores each
    token's positive scale. Arithmetic runs in at least float32; the result has ``x.dtype``."""
    dtype = x.dtype
    work = torch.promote_types(dtype, torch.float32)
    size = torch.ones_like(x[..., :1], dtype=work) if size is None else size.to(work)
    total = x.to(work) * size  # [B, N, C] size-weighted sums
    for r in merge_schedule(x.shape[1], target):
        plan = bipartite_soft_matching(head_chunk_metric(total, head_chunks), r)
        total, size = merge_sum(total, plan), merge_sum(size, plan)
    return (total / size).to(dtype), size


def merge_clips(tokens: Tensor, tokens_per_frame: int, clip_len: int, head_chunks: int) -> Tensor:
    """[n_clips, clip_len * P, C] -> [n_clips, clip_len * tokens_per_frame, C].

    Merging crosses the frames of a clip: the budget is per frame, the tokens are per clip."""
    target = tokens_per_frame * clip_len
    if tokens.shape[1] <= target:
        return tokens
    merged, _ = merge_to_target(tokens, target, head_chunks)
    return merged
