"""Progressive visual dropout: kept counts per layer, equality with the dense model at ratio 1,
text-guided choice by attention, renumbered positions, generation after dropping."""

from __future__ import annotations

import numpy as np
import torch

from longvid.training.model.config import DropoutConfig
from longvid.training.model.dropout import (
    DropStep,
    LayerRunner,
    plan_dropout,
    text_keep_indices,
    uniform_keep_indices,
)
from longvid.training.tokenizer import IGNORE_INDEX, build_prompt, encode_conversation

FRAMES = torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(7))
DROP = ("dropout.uniform_layer=1", "dropout.uniform_keep=0.75", "dropout.text_layer=3")


def prompt_ids(tok, question="What happens in the video?", n=8):
    return torch.tensor(tok(build_prompt(question, 16.0, n), add_special_tokens=False)["input_ids"])


def dense_inputs(model, ids):
    visual = model.encode_video(FRAMES)
    embeds, _, _ = model.splice(ids[None], torch.ones(1, len(ids), dtype=torch.long), [visual])
    return embeds, int((ids == model.video_token_id).nonzero()), visual.shape[0]


def test_index_choices():
    # linspace(0, n - 1, keep) truncated: both ends are always kept
    assert uniform_keep_indices(8, 4).tolist() == [0, 2, 4, 7]
    assert uniform_keep_indices(10, 10).tolist() == list(range(10))
    assert uniform_keep_indices(9, 3).tolist() == [0, 4, 8]
    assert uniform_keep_indices(32, 24).tolist() == [
        int(k) for k in np.floor(np.linspace(0, 31, 24) + 1e-9)
    ]
    assert uniform_keep_indices(6144, 2048)[[0, -1]].tolist() == [0, 6143]
    scores = torch.tensor([0.1, 0.9, 0.3, 0.8, 0.05, 0.7])
    assert text_keep_indices(scores, 3).tolist() == [1, 3, 5]  # top 3, in temporal order
    cfg = DropoutConfig(enabled=True, uniform_layer=4, uniform_keep=0.75, text_layer=18)
    assert plan_dropout(cfg, 8192, 28) == [
        DropStep(4, 6144, "uniform"),
        DropStep(18, 2048, "text"),
    ]
    assert plan_dropout(cfg.model_copy(update={"enabled": False}), 8192, 28) == []


def test_kept_tokens_per_layer(make_tiny_model, hico_tokenizer):
    model = make_tiny_model(*DROP, "dropout.text_keep=0.25")
    ids = prompt_ids(hico_tokenizer)
    pre = model.prefill(FRAMES, ids, dropout=True)
    # 32 visual tokens: layer 0 sees all, layers 1-2 see 75% (24), layer 3 sees 25% (8)
    assert pre.visual_per_layer == [32, 24, 24, 8]
    text = len(ids) - 1
    assert pre.seq_per_layer == [text + 32, text + 24, text + 24, text + 8]
    assert [pre.cache.length(i) for i in range(4)] == pre.seq_per_layer
    assert pre.kept.tolist() == sorted(pre.kept.tolist()) and len(pre.kept) == 8
    # the kept set is a subset of the uniform choice
    assert set(pre.kept.tolist()) <= set(uniform_keep_indices(32, 24).tolist())
    off = model.prefill(FRAMES, ids, dropout=False)
    assert off.visual_per_layer == [32] * 4


def test_ratio_one_is_identical_to_the_dense_model(make_tiny_model, hico_tokenizer):
    model = make_tiny_model(*DROP, "dropout.uniform_keep=1.0", "dropout.text_keep=1.0")
    ids = prompt_ids(hico_tokenizer)
    with torch.no_grad():
        embeds, _, _ = dense_inputs(model, ids)
        dense = model.llm(inputs_embeds=embeds).logits[:, -1]
        pre = model.prefill(FRAMES, ids, dropout=True)
    assert pre.visual_per_layer == [32] * 4
    torch.testing.assert_close(pre.logits, dense, rtol=1e-5, atol=1e-5)
    # greedy generation through the layer runner equals transformers' own generate
    ours = model.generate(FRAMES, ids, max_new_tokens=12, dropout=True, stop_ids=[])
    with torch.no_grad():
        ref = model.llm.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones(embeds.shape[:2], dtype=torch.long),
            max_new_tokens=12,
            min_new_tokens=12,
            do_sample=False,
            pad_token_id=hico_tokenizer.pad_token_id,
        )
    assert ours.tolist() == ref[0, -12:].tolist()
    assert ours.tolist() == model.generate(FRAMES, ids, 12, dropout=False, stop_ids=[]).tolist()


def test_text_guided_drop_keeps_the_most_attended_tokens(make_tiny_model, hico_tokenizer):
    # no uniform drop, text-guided drop after 3 layers: the choice follows the attention the last
    # prompt token pays in the NEXT layer (index 3), scored on the hidden states layer 3 receives
    # (as the original), as transformers' own eager attention of layer 3 reports it
    model = make_tiny_model(*DROP, "dropout.uniform_keep=1.0", "dropout.text_keep=0.25")
    ids = prompt_ids(hico_tokenizer)
    pre = model.prefill(FRAMES, ids, dropout=True)
    assert pre.visual_per_layer == [32, 32, 32, 8]
    with torch.no_grad():
        embeds, start, n = dense_inputs(model, ids)
        model.llm.set_attn_implementation("eager")
        att = model.llm(inputs_embeds=embeds, output_attentions=True).attentions[3]
    scores = att[0, :, -1, start : start + n].mean(dim=0)  # [n], averaged over heads
    expected = scores.topk(8).indices.sort().values
    assert pre.kept.tolist() == expected.tolist()


def test_text_scores_equal_a_direct_computation(make_tiny_model, hico_tokenizer):
    # the scores by hand: layer 3's RMSNorm and q/k projections on the hidden states after
    # layer 2, RoPE at positions 0..L-1, softmax over the sequence, mean over heads
    model = make_tiny_model(seed=4)
    ids = prompt_ids(hico_tokenizer)
    with torch.no_grad():
        embeds, start, n = dense_inputs(model, ids)
        hidden = model.llm(inputs_embeds=embeds, output_hidden_states=True).hidden_states[3]
        layer = model.llm.model.layers[3]
        x = layer.input_layernorm(hidden)[0]  # [L, D]
        length, heads, kv = x.shape[0], 4, 2
        d = 64 // heads
        q = layer.self_attn.q_proj(x).view(length, heads, d)
        k = layer.self_attn.k_proj(x).view(length, kv, d).repeat_interleave(heads // kv, dim=1)
        half = d // 2
        inv = 1.0 / (1e6 ** (torch.arange(0, half, dtype=torch.float64) * 2 / d))
        ang = torch.arange(length, dtype=torch.float64)[:, None] * inv[None]  # [L, d/2]
        cos = torch.cat([ang.cos(), ang.cos()], -1).float()[:, None]
        sin = torch.cat([ang.sin(), ang.sin()], -1).float()[:, None]

        def rot(t):
            return t * cos + torch.cat([-t[..., half:], t[..., :half]], -1) * sin

        q, k = rot(q), rot(k)
        w = torch.einsum("hd,lhd->hl", q[-1], k) / d**0.5  # [H, L]
        direct = w.softmax(-1).mean(0)
        runner = LayerRunner(model.llm)
        positions = torch.arange(length)
        ours = runner.text_scores(3, hidden, runner._rope(hidden, positions))[0]
        torch.testing.assert_close(ours, direct, rtol=1e-5, atol=1e-6)
        # and the prefill keeps the top of them, in temporal order
        pre = runner.prefill(embeds, start, n, [DropStep(3, 8, "text")])
    assert pre.kept.tolist() == direct[start : start + n].topk(8).indices.sort().values.tolist()


def test_uniform_drop_keeps_linspace_positions(make_tiny_model, hico_tokenizer):
    model = make_tiny_model(*DROP, "dropout.text_keep=0.75")  # text step keeps all: no-op
    ids = prompt_ids(hico_tokenizer)
    pre = model.prefill(FRAMES, ids, dropout=True)
    assert pre.visual_per_layer == [32, 24, 24, 24]
    assert pre.kept.tolist() == torch.linspace(0, 31, 24).long().tolist()
    assert pre.kept[0] == 0 and pre.kept[-1] == 31  # both ends


def test_decoding_after_a_drop_uses_renumbered_positions(make_tiny_model, hico_tokenizer):
    # dropping before layer 0 must be exactly the dense model run on the shortened prompt,
    # for the prefill and for every decoding step (caches and positions are compact)
    model = make_tiny_model()
    ids = prompt_ids(hico_tokenizer)
    with torch.no_grad():
        embeds, start, n = dense_inputs(model, ids)
        runner = LayerRunner(model.llm)
        pre = runner.prefill(embeds, start, n, [DropStep(0, 10, "uniform")])
        keep = uniform_keep_indices(n, 10)
        short = torch.cat([embeds[:, :start], embeds[:, start + keep], embeds[:, start + n :]], 1)
        ref = model.llm(inputs_embeds=short, use_cache=True)
        torch.testing.assert_close(pre.logits, ref.logits[:, -1], rtol=1e-5, atol=1e-5)
        cache_ref = ref.past_key_values if hasattr(ref, "past_key_values") else ref.cache
        logits, ref_logits = pre.logits, ref.logits[:, -1]
        for _ in range(4):
            tok = logits.argmax(-1, keepdim=True)
            assert torch.equal(tok, ref_logits.argmax(-1, keepdim=True))
            logits = runner.decode(tok, pre.cache)
            step = model.llm(input_ids=tok, use_cache=True, **{runner.cache_kw: cache_ref})
            ref_logits = step.logits[:, -1]
            torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)


def test_generation_after_dropout(make_tiny_model, hico_tokenizer):
    model = make_tiny_model(*DROP, "dropout.text_keep=0.25", "dropout.enabled=true")
    ids = prompt_ids(hico_tokenizer)
    out = model.generate(FRAMES, ids, max_new_tokens=10, stop_ids=[])
    assert out.dtype == torch.long and out.shape == (10,)
    assert (out >= 0).all() and (out < model.llm.config.vocab_size).all()
    # the config switch is the default; an explicit dropout=False gives the dense answer
    dense = model.generate(FRAMES, ids, max_new_tokens=10, dropout=False, stop_ids=[])
    assert model.prefill(FRAMES, ids).visual_per_layer == [32, 24, 24, 8]
    assert model.prefill(FRAMES, ids, dropout=False).visual_per_layer == [32] * 4
    assert dense.shape == (10,)
    # stops at a stop token: the first generated token, declared a stop, ends the answer at once
    assert model.generate(FRAMES, ids, 10, stop_ids=[int(out[0])]).numel() == 0


def test_dropout_is_off_in_training_forward(make_tiny_model, hico_tokenizer):
    conv = [{"from": "human", "value": "What?"}, {"from": "gpt", "value": "the dog runs"}]
    ids, labels = encode_conversation(hico_tokenizer, conv, 16.0, 8)
    mask = torch.ones(1, len(ids), dtype=torch.long)
    losses = []
    for enabled in ("false", "true"):
        model = make_tiny_model(*DROP, f"dropout.enabled={enabled}", seed=1)
        with torch.no_grad():
            out = model([FRAMES], ids[None], mask, labels[None])
        assert (out.labels != IGNORE_INDEX).sum() > 0
        losses.append(out.loss)
    assert torch.equal(losses[0], losses[1])
