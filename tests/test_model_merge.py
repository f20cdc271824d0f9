"""Clip-level token merge: schedule, token counts, size-weighted means, matching order."""

from __future__ import annotations

import pytest
import torch

from longvid.training.model.config import EncoderConfig
from longvid.training.model.encoder import UMTEncoder
from longvid.training.model.merge import (
    bipartite_soft_matching,
    head_chunk_metric,
    merge_clips,
    merge_schedule,
    merge_to_target,
    merge_wavg,
)


def test_schedule_halves_then_takes_the_exact_remainder():
    assert merge_schedule(784, 64) == [392, 196, 98, 34]  # 224 px clip: 4 x 196 tokens
    assert merge_schedule(3136, 64) == [1568, 784, 392, 196, 98, 34]  # 448 px clip
    assert merge_schedule(64, 64) == []
    assert merge_schedule(10, 7) == [3]
    for n, target in [(784, 64), (3136, 64), (197, 5), (1000, 999)]:
        rounds = merge_schedule(n, target)
        assert n - sum(rounds) == target
        left = n
        for r in rounds:
            assert r <= left // 2  # every round is a legal bipartite round
            left -= r


@pytest.mark.parametrize(("img", "per_frame"), [(224, 196), (448, 784)])
def test_exact_token_counts_for_224_and_448_clips(img, per_frame):
    torch.manual_seed(0)
    # a real (narrow) UMT encoder at the real input sizes, so the counts come from the model
    cfg = EncoderConfig(img_size=img, depth=2, width=32, heads=2, select_layer=-1)
    enc = UMTEncoder(cfg).eval()
    clips = torch.randn(2, 3, 4, img, img)
    with torch.no_grad():
        tokens = enc(clips)
    assert tokens.shape == (2, 4 * per_frame, 32)
    merged, size = merge_to_target(tokens, 64, head_chunks=2)
    assert merged.shape == (2, 64, 32)
    assert size.shape == (2, 64, 1)
    # every original token is accounted for exactly once
    assert torch.equal(size.sum(dim=1).flatten(), torch.full((2,), 4.0 * per_frame))
    assert merge_clips(tokens, 16, 4, 2).shape == (2, 64, 32)


def test_merge_preserves_the_size_weighted_sum():
    torch.manual_seed(1)
    x = torch.randn(3, 784, 64, dtype=torch.float64)
    merged, size = merge_to_target(x, 64, head_chunks=16)
    assert merged.dtype == torch.float64
    torch.testing.assert_close((size * merged).sum(dim=1), x.sum(dim=1), rtol=1e-12, atol=1e-10)
    # a round that starts from non-unit sizes keeps sum(size * x) too
    s0 = torch.randint(1, 5, (3, 784, 1)).double()
    m2, s2 = merge_to_target(x, 100, head_chunks=8, size=s0)
    torch.testing.assert_close((s2 * m2).sum(dim=1), (s0 * x).sum(dim=1), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(s2.sum(dim=1), s0.sum(dim=1))


def test_fast_form_equals_repeated_weighted_means():
    # merge_to_target carries size-weighted sums; the reference recomputes means every round
    torch.manual_seed(5)
    x = torch.randn(2, 784, 64, dtype=torch.float64)
    ref, size = x, torch.ones(2, 784, 1, dtype=torch.float64)
    for r in merge_schedule(784, 64):
        ref, size = merge_wavg(ref, size, bipartite_soft_matching(head_chunk_metric(ref, 16), r))
    fast, fast_size = merge_to_target(x, 64, head_chunks=16)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    assert torch.equal(fast_size, size)


def test_identical_tokens_merge_first():
    torch.manual_seed(2)
    x = torch.randn(1, 40, 16)
    # A tokens sit at even positions, B tokens at odd ones; make three A/B pairs identical
    pairs = [(4, 11), (20, 7), (36, 37)]
    for a, b in pairs:
        x[0, a] = x[0, b]
    plan = bipartite_soft_matching(x, r=3)
    merged_a = sorted((plan.src[0] * 2).tolist())  # back to positions in x
    merged_b = sorted((plan.dst[0] * 2 + 1).tolist())
    assert merged_a == sorted(a for a, _ in pairs)
    assert merged_b == sorted(b for _, b in pairs)
    out, size = merge_wavg(x, torch.ones(1, 40, 1), plan)
    # the merged rows equal the (identical) originals, with size 2
    for _, b in pairs:
        row = (out[0] - x[0, b]).abs().sum(dim=-1).argmin()
        assert torch.allclose(out[0, row], x[0, b]) and size[0, row, 0] == 2


def test_hand_checked_tiny_example():
    # A = t0, t2 (even), B = t1, t3 (odd); metric = features (1 chunk)
    x = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 3.0], [2.0, 0.0]]])
    # cos(t0,t1)=0, cos(t0,t3)=1 -> t0's best is t3 with 1.0
    # cos(t2,t1)=3/sqrt(10)=0.949, cos(t2,t3)=1/sqrt(10) -> t2's best is t1 with 0.949
    plan = bipartite_soft_matching(x, r=1)
    assert plan.src.tolist() == [[0]] and plan.dst.tolist() == [[1]] and plan.unm.tolist() == [[1]]
    out, size = merge_wavg(x, torch.ones(1, 4, 1), plan)
    # unmerged A (t2), then B: t1, and t3 merged with t0: mean((2,0),(1,0)) = (1.5, 0)
    assert out.tolist() == [[[1.0, 3.0], [0.0, 1.0], [1.5, 0.0]]]
    assert size.flatten().tolist() == [1.0, 1.0, 2.0]
    # one more round from these sizes: A = (1,3) s1 and (1.5,0) s2, B = (0,1) s1;
    # (1,3) is closest to (0,1) (0.949 vs 0) and merges into it: (0.5, 2) with size 2
    out2, size2 = merge_to_target(out, 2, head_chunks=1, size=size)
    assert out2.tolist() == [[[1.5, 0.0], [0.5, 2.0]]]
    assert size2.flatten().tolist() == [2.0, 2.0]


def test_batch_rows_merge_independently():
    torch.manual_seed(3)
    x = torch.randn(4, 196, 32)
    together, _ = merge_to_target(x, 16, head_chunks=4)
    for i in range(4):
        alone, _ = merge_to_target(x[i : i + 1], 16, head_chunks=4)
        torch.testing.assert_close(together[i : i + 1], alone)


def test_metric_averages_head_chunks():
    x = torch.arange(8.0).reshape(1, 1, 8)  # chunks [0..3] and [4..7] -> mean [2, 3, 4, 5]
    assert head_chunk_metric(x, 2).tolist() == [[[2.0, 3.0, 4.0, 5.0]]]
    with pytest.raises(ValueError, match="not divisible"):
        head_chunk_metric(x, 3)


def test_merge_keeps_dtype_and_is_a_noop_at_target():
    x = torch.randn(2, 64, 32, dtype=torch.bfloat16)
    assert merge_clips(x, 16, 4, 4) is x
    y, _ = merge_to_target(torch.randn(2, 128, 32).bfloat16(), 64, head_chunks=4)
    assert y.dtype == torch.bfloat16 and y.shape == (2, 64, 32)
    with pytest.raises(ValueError, match="cannot remove"):
        bipartite_soft_matching(torch.randn(1, 10, 4), r=6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_merge_on_gpu_matches_cpu():
    torch.manual_seed(4)
    x = torch.randn(8, 3136, 64)
    cpu, cpu_size = merge_to_target(x, 64, head_chunks=16)
    gpu, gpu_size = merge_to_target(x.cuda(), 64, head_chunks=16)
    assert gpu.is_cuda and gpu.shape == (8, 64, 64)
    torch.testing.assert_close(gpu_size.cpu(), cpu_size)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-4, atol=1e-4)
