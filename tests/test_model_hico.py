"""HiCoModel: visual token counts, splicing at <video>, answer-only loss, groups, checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from longvid.errors import NotFoundError
from longvid.training.model.encoder import UMTEncoder, released_state_dict
from longvid.training.model.hico import HiCoModel
from longvid.training.tokenizer import IGNORE_INDEX, build_prompt, encode_conversation


def frames(t: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(t, 3, 64, 64, generator=g)


def batch(tok, convs, durations):
    """Right-padded input_ids / attention_mask / labels for a list of conversations."""
    rows = [encode_conversation(tok, c, d, n) for c, (d, n) in zip(convs, durations, strict=True)]
    length = max(len(i) for i, _ in rows)
    ids = torch.full((len(rows), length), tok.pad_token_id)
    mask = torch.zeros(len(rows), length, dtype=torch.long)
    labels = torch.full((len(rows), length), IGNORE_INDEX)
    for b, (i, lab) in enumerate(rows):
        ids[b, : len(i)], mask[b, : len(i)], labels[b, : len(i)] = i, 1, lab
    return ids, mask, labels


CONVS = [
    [
        {"from": "human", "value": "<image>\nWhat does the man cut?"},
        {"from": "gpt", "value": "an onion"},
    ],
    [
        {"from": "human", "value": "Describe the video in detail."},
        {"from": "gpt", "value": "the dog runs across the park"},
    ],
]


def test_visual_token_counts(make_tiny_model):
    model = make_tiny_model()
    with torch.no_grad():
        v8 = model.encode_video(frames(8))
        assert v8.shape == (2 * 16, 64)  # 2 clips x (4 frames x 4 tokens), LLM width 64
        assert model.cfg.visual_tokens(8) == 32
        # 6 frames: the last frame is repeated to fill the second clip
        f6 = frames(6)
        padded = torch.cat([f6, f6[-1:], f6[-1:]])
        torch.testing.assert_close(model.encode_video(f6), model.encode_video(padded))
        # an image goes through as T = 1 with the image position table: 16 tokens (64 with the
        # real preset), not the same as the picture repeated into a clip
        img = frames(1)
        assert model.encode_video(img).shape == (16, 64) and model.cfg.visual_tokens(1) == 16
        direct = model.projector(model.encoder(img[None].transpose(1, 2))[0])
        torch.testing.assert_close(model.encode_video(img), direct)
        assert not torch.allclose(
            model.encode_video(img), model.encode_video(img.repeat(4, 1, 1, 1))
        )
        # images and videos in one batch: each sample gets its own tokens
        ids = torch.tensor([[model.video_token_id, 7], [model.video_token_id, 7]])
        out = model([img, frames(8)], ids, torch.ones_like(ids))
        assert out.n_visual_tokens == [16, 32]
        torch.testing.assert_close(out.logits[0, :16], model(
            [img], ids[:1], torch.ones_like(ids[:1])).logits[0, :16], rtol=1e-5, atol=1e-5)  # fmt: skip
    dense = make_tiny_model("merge.enabled=false")
    with torch.no_grad():
        assert dense.encode_video(frames(8)).shape == (2 * 64, 64)
        assert dense.encode_video(frames(1)).shape == (16, 64)  # one frame's patches
    assert dense.cfg.visual_tokens(8) == 128 and dense.cfg.visual_tokens(1) == 16


def test_an_image_is_merged_to_one_clip_budget(make_tiny_model):
    # at 224 px an image has 196 patches: merged to the 16 tokens of a clip (real model: 64)
    model = make_tiny_model("encoder.img_size=224")
    with torch.no_grad():
        assert model.encode_video(torch.randn(1, 3, 224, 224)).shape == (16, 64)
    assert model.cfg.visual_tokens(1) == 16


def test_real_presets_give_16_tokens_per_frame(tiny_model_config):
    from longvid.config import load_config
    from longvid.training.model.config import ModelConfig

    flash = load_config("conf/model/videochat_flash.yaml", ModelConfig)
    assert flash.encoder.tokens_per_frame == 784 and flash.visual_tokens_per_clip() == 64
    assert flash.visual_tokens(512) == 512 * 16
    assert (
        load_config(
            "conf/model/videochat_flash.yaml", ModelConfig, ["merge.enabled=false"]
        ).visual_tokens(512)
        == 512 * 784
    )


def test_forward_splices_video_and_learns_only_answers(make_tiny_model, hico_tokenizer):
    tok = hico_tokenizer
    model = make_tiny_model()
    ids, mask, labels = batch(tok, CONVS, [(8.0, 8), (20.0, 4)])
    vids = [frames(8, 1), frames(4, 2)]
    out = model(vids, ids, mask, labels)
    assert out.n_visual_tokens == [32, 16]
    new_len = max(int(mask[b].sum()) - 1 + n for b, n in enumerate(out.n_visual_tokens))
    assert out.logits.shape == (2, new_len, model.llm.config.vocab_size)
    for b, n in enumerate(out.n_visual_tokens):
        valid = int(mask[b].sum())
        p = int((ids[b] == model.video_token_id).nonzero())
        assert (out.labels[b, p : p + n] == IGNORE_INDEX).all()
        assert torch.equal(out.labels[b, :p], labels[b, :p])
        assert torch.equal(out.labels[b, p + n : p + n + valid - p - 1], labels[b, p + 1 : valid])
        assert (out.labels[b, valid - 1 + n :] == IGNORE_INDEX).all()  # padding
        assert int(out.attention_mask[b].sum()) == valid - 1 + n
    # the loss is the mean next-token cross-entropy over the answer tokens and nothing else
    counted = out.labels[:, 1:] != IGNORE_INDEX
    assert int(counted.sum()) == int((labels != IGNORE_INDEX).sum())
    per_token = F.cross_entropy(
        out.logits[:, :-1].transpose(1, 2).float(),
        out.labels[:, 1:],
        reduction="none",
        ignore_index=IGNORE_INDEX,
    )
    torch.testing.assert_close(out.loss, per_token[counted].mean())
    # the answers' loss depends on the video
    other = model([frames(8, 3), frames(4, 4)], ids, mask, labels)
    assert not torch.isclose(other.loss, out.loss)


def test_backward_reaches_every_part(make_tiny_model, hico_tokenizer):
    model = make_tiny_model().train()
    ids, mask, labels = batch(hico_tokenizer, CONVS[:1], [(8.0, 8)])
    model([frames(8)], ids, mask, labels).loss.backward()
    groups = model.parameter_groups()
    assert set(groups) == {"encoder", "projector", "llm"}
    ids_seen = [id(p) for ps in groups.values() for p in ps]
    assert len(ids_seen) == len(set(ids_seen)) == len(list(model.parameters()))
    for name, params in groups.items():
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), name


def test_gradient_checkpointing_gives_the_same_gradients(make_tiny_model, hico_tokenizer):
    ids, mask, labels = batch(hico_tokenizer, CONVS[:1], [(8.0, 8)])
    grads = []
    for ckpt in ("false", "true"):
        model = make_tiny_model(f"gradient_checkpointing={ckpt}", seed=5).train()
        on = ckpt == "true"
        assert model.encoder.grad_checkpointing is on
        assert all(layer.gradient_checkpointing is on for layer in model.llm.model.layers)
        model([frames(8)], ids, mask, labels).loss.backward()
        grads.append(
            torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        )
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-6)


def test_placeholder_count_is_checked(make_tiny_model, hico_tokenizer):
    model = make_tiny_model()
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(ValueError, match="sample 0: expected exactly one <video> token, found 0"):
        model([frames(4)], ids, torch.ones_like(ids))
    two = torch.tensor([[5, 2, 6, 2]])
    with pytest.raises(ValueError, match="found 2"):
        model([frames(4)], two, torch.ones_like(two))


def test_umt_checkpoint_from_config(tmp_path, make_tiny_model, tiny_model_config):
    torch.manual_seed(9)
    cfg = tiny_model_config()
    source = UMTEncoder(cfg.encoder).eval()
    torch.save(released_state_dict(source, depth=cfg.encoder.depth), tmp_path / "umt.pt")
    model = make_tiny_model(f"encoder.checkpoint={tmp_path / 'umt.pt'}")
    for k, v in source.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[k], v), k


def test_openclip_encoder_in_the_model(make_tiny_model):
    model = make_tiny_model("encoder.kind=openclip")
    with torch.no_grad():
        assert model.encode_video(frames(8)).shape == (32, 64)


def test_save_and_load_round_trip(tmp_path, make_tiny_model, hico_tokenizer):
    model = make_tiny_model(seed=3)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = HiCoModel.from_pretrained(tmp_path / "ckpt")
    assert loaded.cfg == model.cfg
    assert loaded.tokenizer.get_vocab() == hico_tokenizer.get_vocab()
    for (k, a), (k2, b) in zip(
        model.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert k == k2 and torch.equal(a, b), k
    ids = torch.tensor(hico_tokenizer(build_prompt("What?", 8.0, 8))["input_ids"])
    with torch.no_grad():
        a = model.prefill(frames(8), ids).logits
        b = loaded.prefill(frames(8), ids).logits
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(NotFoundError, match="not a HiCo checkpoint"):
        HiCoModel.from_pretrained(tmp_path / "nothing")


def test_preprocess_normalises_and_resizes(make_tiny_model):
    import numpy as np

    model = make_tiny_model()
    raw = np.full((2, 32, 48, 3), 255, dtype=np.uint8)
    x = model.preprocess(raw)
    assert x.shape == (2, 3, 64, 64)
    expected = (1 - torch.tensor(model.cfg.encoder.mean)) / torch.tensor(model.cfg.encoder.std)
    torch.testing.assert_close(x[0, :, 10, 10], expected)
