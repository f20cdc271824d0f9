"""UMT encoder (shapes, position table, released-checkpoint loading) and the open_clip path."""

from __future__ import annotations

import math

import pytest
import torch

from longvid.errors import FormatError, NotFoundError
from longvid.training.model.config import EncoderConfig
from longvid.training.model.encoder import (
    UMTEncoder,
    load_umt_checkpoint,
    map_umt_key,
    released_state_dict,
    sincos_table,
    umt_pos_embed,
)

TINY = {"img_size": 64, "depth": 3, "width": 32, "heads": 4, "mlp_ratio": 2.0}


def test_sincos_table_values():
    t = sincos_table(10, 6)
    # position 3, channel pair j=2,3 -> angle 3 / 10000^(2/6)
    angle = 3 / 10000 ** (2 / 6)
    assert t[3, 2].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert t[3, 3].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert t[0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def test_pos_embed_is_the_plain_table_at_224_and_resized_at_448():
    plain = umt_pos_embed(4, 14, 16)
    assert torch.equal(plain, sincos_table(4 * 196, 16))
    big = umt_pos_embed(4, 28, 16)
    assert big.shape == (4 * 784, 16)
    # per frame, the 28x28 grid is a smooth resize of the 14x14 one: its 2x2 average pooling
    # comes back close to the original
    f0 = big[:784].reshape(28, 28, 16).permute(2, 0, 1)[None]
    pooled = torch.nn.functional.avg_pool2d(f0, 2)[0].permute(1, 2, 0).reshape(196, 16)
    assert (pooled - plain[:196]).abs().mean() < 0.05
    assert umt_pos_embed(8, 14, 16).shape == (8 * 196, 16)  # temporal resize


def test_encoder_shapes_and_select_layer():
    torch.manual_seed(0)
    enc = UMTEncoder(EncoderConfig(**TINY)).eval()
    assert len(enc.blocks) == 2  # second-to-last of 3: the last block is not built
    out = enc(torch.randn(2, 3, 4, 64, 64))
    assert out.shape == (2, 4 * 16, 32)
    with pytest.raises(ValueError, match="expects clips of 4 frames \\(or images\\) at 64x64"):
        enc(torch.randn(1, 3, 4, 32, 32))


def test_images_use_their_own_position_table():
    torch.manual_seed(0)
    enc = UMTEncoder(EncoderConfig(**{**TINY, "img_size": 224})).eval()
    # the image table is one frame of the pretraining grid: positions 0..195 of the 1-D table
    assert torch.equal(enc.img_pos_embed, sincos_table(196, 32))
    assert torch.equal(enc.img_pos_embed, enc.pos_embed[:196])
    assert enc(torch.randn(2, 3, 1, 224, 224)).shape == (2, 196, 32)
    big = UMTEncoder(EncoderConfig(**{**TINY, "img_size": 448, "pretrain_clip_len": 2}))
    assert torch.equal(big.img_pos_embed, umt_pos_embed(1, 28, 32, 1, 14))
    with pytest.raises(ValueError, match="expects clips of 4 frames \\(or images\\)"):
        enc(torch.randn(1, 3, 2, 224, 224))


def test_tokens_mix_across_the_frames_of_a_clip():
    # joint space-time attention: changing frame 3 changes frame 0's tokens
    torch.manual_seed(0)
    enc = UMTEncoder(EncoderConfig(**TINY)).eval()
    clip = torch.randn(1, 3, 4, 64, 64)
    other = clip.clone()
    other[:, :, 3] = torch.randn(3, 64, 64)
    with torch.no_grad():
        a, b = enc(clip), enc(other)
    assert not torch.allclose(a[:, :16], b[:, :16])


def test_released_key_mapping():
    assert map_umt_key("encoder.blocks.3.attn.q_bias", 23) == ("blocks.3.attn.q_bias", "")
    assert map_umt_key("encoder.norm.weight", 23) == ("norm.weight", "")
    assert map_umt_key("encoder.vision_layernorm.bias", 23) == ("norm.bias", "")
    assert map_umt_key("model.vision_tower.vision_tower.encoder.patch_embed.proj.weight", 23)[
        0
    ] == ("patch_embed.proj.weight")
    assert map_umt_key("encoder.blocks.23.mlp.fc1.weight", 23)[0] is None
    assert map_umt_key("clip_decoder.0.head.weight", 23)[0] is None


def test_released_checkpoint_round_trip(tmp_path):
    cfg = EncoderConfig(**TINY)
    torch.manual_seed(1)
    source = UMTEncoder(cfg).eval()
    # release layout: all 3 blocks (the file has the block we skip), 'encoder.' names,
    # extra distillation tensors, wrapped in {"model": ...}
    sd = released_state_dict(source, depth=3)
    assert "encoder.blocks.2.attn.qkv.weight" in sd and "encoder.norm.weight" in sd
    sd["clip_decoder.0.head.weight"] = torch.zeros(3, 3)
    path = tmp_path / "UMT-L_f4_vision.pt"
    torch.save({"model": sd}, path)

    torch.manual_seed(2)
    target = UMTEncoder(cfg).eval()
    clips = torch.randn(1, 3, 4, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(target(clips), source(clips))
        report = load_umt_checkpoint(target, path)
        torch.testing.assert_close(target(clips), source(clips), rtol=0, atol=0)
    assert "clip_decoder.0.head.weight" in report.ignored
    assert any(k.startswith("encoder.blocks.2.") for k in report.ignored)
    assert len(report.loaded) == len(target.state_dict())


def test_checkpoint_errors_name_the_file_and_key(tmp_path):
    cfg = EncoderConfig(**TINY)
    enc = UMTEncoder(cfg)
    with pytest.raises(NotFoundError, match="nope.pt"):
        load_umt_checkpoint(enc, tmp_path / "nope.pt")
    wide = UMTEncoder(EncoderConfig(**{**TINY, "width": 48, "heads": 4}))
    bad = tmp_path / "wide.pt"
    torch.save(released_state_dict(wide), bad)
    with pytest.raises(
        FormatError, match=r"wide\.pt: encoder\.patch_embed\.proj\.weight has shape"
    ):
        load_umt_checkpoint(enc, bad)
    partial = released_state_dict(enc)
    del partial["encoder.blocks.1.norm2.weight"]
    torch.save(partial, tmp_path / "partial.pt")
    with pytest.raises(FormatError, match=r"missing from checkpoint: blocks\.1\.norm2\.weight"):
        load_umt_checkpoint(enc, tmp_path / "partial.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FormatError, match="junk.pt"):
        load_umt_checkpoint(enc, tmp_path / "junk.pt")


def test_openclip_frame_encoder_from_a_config():
    from longvid.training.model.openclip_encoder import OpenClipFrameEncoder

    torch.manual_seed(0)
    cfg = EncoderConfig(kind="openclip", openclip_model="custom", **TINY)
    enc = OpenClipFrameEncoder(cfg).eval()
    clips = torch.randn(2, 3, 4, 64, 64)
    with torch.no_grad():
        out = enc(clips)
    assert out.shape == (2, 4 * 16, 32)  # CLS dropped, frames concatenated per clip
    # frame-wise: frame 1's tokens depend on frame 1 only
    other = clips.clone()
    other[:, :, 3] += 1.0
    with torch.no_grad():
        out2 = enc(other)
    torch.testing.assert_close(out[:, :48], out2[:, :48])
    assert not torch.allclose(out[:, 48:], out2[:, 48:])
    # the features are the second-to-last block's output after ln_post
    with torch.no_grad():
        frames = clips.permute(0, 2, 1, 3, 4).reshape(8, 3, 64, 64)
        x = enc.tower._embeds(frames)
        for blk in enc.tower.transformer.resblocks[:2]:
            x = blk(x)
        expected = enc.tower.ln_post(x)[:, 1:].reshape(2, 64, 32)
    torch.testing.assert_close(out, expected)
