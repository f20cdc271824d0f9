"""Progressive visual dropout: kept counts per layer, equality with the dense model at ratio 1,
text-guided choice by attention, renumbered positions, generation after dropping."""

from __future__ import annotations

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
    assert uniform_keep_indices(8, 4).tolist() == [1, 3, 5, 7]
    assert uniform_keep_indices(10, 10).tolist() == list(range(10))
    assert uniform_keep_indices(9, 3).tolist() == [1, 4, 7]
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
    # no uniform drop, text-guided drop before layer 3: the choice must follow layer 2's attention
    # of the last prompt token, as transformers' eager attention reports it
    model = make_tiny_model(*DROP, "dropout.uniform_keep=1.0", "dropout.text_keep=0.25")
    ids = prompt_ids(hico_tokenizer)
    pre = model.prefill(FRAMES, ids, dropout=True)
    assert pre.visual_per_layer == [32, 32, 32, 8]
    with torch.no_grad():
        embeds, start, n = dense_inputs(model, ids)
        model.llm.set_attn_implementation("eager")
        att = model.llm(inputs_embeds=embeds, output_attentions=True).attentions[2]
    scores = att[0, :, -1, start : start + n].mean(dim=0)  # [n], averaged over heads
    expected = scores.topk(8).indices.sort().values
    assert pre.kept.tolist() == expected.tolist()


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
