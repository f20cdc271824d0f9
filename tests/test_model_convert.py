"""Released VideoChat-Flash checkpoints in and out: tiny checkpoints written here in the released
layout (one file, and shards with an index), converted; every tensor carried bit for bit, the
converted model's logits equal to our model built from the same tensors, export -> convert is the
identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from longvid.cli import main
from longvid.config import read_yaml
from longvid.errors import FormatError, NotFoundError
from longvid.training.model.convert import convert_videochat_flash
from longvid.training.model.hico import HiCoModel
from longvid.training.tokenizer import build_prompt

# UMT-like encoder at 224 px with 64-dim heads (what a release implies), a 4-layer Qwen2
RELEASE_SHAPE = (
    "encoder.img_size=224", "encoder.width=128", "encoder.heads=2", "encoder.depth=3",
    "merge.tokens_per_frame=4", "merge.head_chunks=2", "llm.tie_word_embeddings=false",
)  # fmt: skip


def released_name(ours: str) -> str:
    """Our name -> the released one, written out here from the release's key list."""
    vt = "model.vision_tower.vision_tower.encoder."
    if ours.startswith("encoder.norm."):
        return vt + "vision_layernorm." + ours.removeprefix("encoder.norm.")
    if ours.startswith("encoder."):
        return vt + ours.removeprefix("encoder.")
    if ours.startswith("projector.fc1."):
        return "model.mm_projector.mlp.0." + ours.removeprefix("projector.fc1.")
    if ours.startswith("projector.fc2."):
        return "model.mm_projector.mlp.2." + ours.removeprefix("projector.fc2.")
    assert ours.startswith("llm.")
    return ours.removeprefix("llm.")


def release_config(model: HiCoModel) -> dict:
    """config.json as the release writes it (only the fields that matter, no longvid entry)."""
    hf = model.llm.config
    return {
        "architectures": ["VideoChatFlashQwenForCausalLM"],
        "model_type": "videochat_flash_qwen",
        "hidden_size": hf.hidden_size,
        "num_attention_heads": hf.num_attention_heads,
        "num_key_value_heads": hf.num_key_value_heads,
        "num_hidden_layers": hf.num_hidden_layers,
        "max_position_embeddings": 4096,
        "rope_theta": 1000000.0,
        "rope_scaling": None,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": bool(hf.tie_word_embeddings),
        "vocab_size": hf.vocab_size,
        "mm_vision_tower": "umt-large",
        "mm_hidden_size": 128,
        "mm_vision_select_layer": -2,
        "mm_projector_type": "tome4_mlp_hd64",
        "mm_local_num_frames": 4,
        "mm_llm_compress": False,
        "llm_compress_type": "uniform0_attention",
        "llm_compress_layer_list": [1, 3],
        "llm_image_token_ratio_list": [1.0, 0.75, 0.25],
    }


def write_release(model: HiCoModel, out: Path, dtype=torch.float32, shards: int = 1) -> dict:
    """The model in the released layout; returns the released tensors by name."""
    out.mkdir(parents=True)
    tensors = {}
    for name, t in model.state_dict().items():
        if model.llm.config.tie_word_embeddings and name == "llm.lm_head.weight":
            continue
        tensors[released_name(name)] = t.to(dtype).clone().contiguous()
    names = list(tensors)
    if shards == 1:
        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i in range(shards):
            fname = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
            part = {n: tensors[n] for n in names[i::shards]}
            save_file(part, str(out / fname), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(part, fname))
        index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index))
    (out / "config.json").write_text(json.dumps(release_config(model)))
    model.tokenizer.save_pretrained(str(out))
    return tensors


def logits(model: HiCoModel) -> torch.Tensor:
    frames = torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(3))
    size = model.cfg.encoder.img_size
    if size != 224:
        frames = frames[..., :size, :size]
    prompt = build_prompt("What is shown?", 4.0, 4)
    ids = model.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model([frames], ids, torch.ones_like(ids)).logits


def assert_carried(converted: Path, released: dict[str, torch.Tensor]) -> None:
    ours = load_file(str(converted / "model.safetensors"))
    assert len(ours) == len(released)
    for name, tensor in ours.items():
        src = released[released_name(name)]
        assert tensor.dtype == src.dtype, name
        assert torch.equal(tensor.view(torch.uint8), src.view(torch.uint8)), name  # same bits


def test_single_file_release(tmp_path, make_tiny_model):
    source = make_tiny_model(*RELEASE_SHAPE, seed=5)
    released = write_release(source, tmp_path / "release")
    assert (
        main(["convert", "videochat-flash", str(tmp_path / "release"), str(tmp_path / "out")]) == 0
    )
    assert_carried(tmp_path / "out", released)
    model = HiCoModel.from_pretrained(tmp_path / "out")
    cfg = model.cfg
    assert (cfg.encoder.img_size, cfg.encoder.width, cfg.encoder.heads) == (224, 128, 2)
    assert (cfg.encoder.depth, cfg.encoder.select_layer, len(model.encoder.blocks)) == (3, -2, 2)
    assert (cfg.merge.tokens_per_frame, cfg.merge.head_chunks) == (4, 2)
    assert (cfg.llm.num_layers, cfg.llm.num_kv_heads, cfg.llm.tie_word_embeddings) == (4, 2, False)
    assert (cfg.dropout.uniform_layer, cfg.dropout.text_layer) == (1, 3)
    assert torch.equal(logits(model), logits(source))


def test_sharded_bf16_release_with_tied_head(tmp_path, make_tiny_model):
    source = make_tiny_model(*RELEASE_SHAPE, "llm.tie_word_embeddings=true", seed=6)
    released = write_release(source, tmp_path / "release", torch.bfloat16, shards=3)
    assert "lm_head.weight" not in released
    convert_videochat_flash(tmp_path / "release", tmp_path / "out")
    assert_carried(tmp_path / "out", released)
    # our model built from the same (bf16) tensors
    reference = make_tiny_model(*RELEASE_SHAPE, "llm.tie_word_embeddings=true", seed=99)
    state = {n: released[released_name(n)].float() for n in reference.state_dict()
             if n != "llm.lm_head.weight"}  # fmt: skip
    reference.load_state_dict(state, strict=False)
    converted = HiCoModel.from_pretrained(tmp_path / "out")
    assert (
        converted.llm.lm_head.weight.data_ptr()
        == converted.llm.model.embed_tokens.weight.data_ptr()
    )
    assert torch.equal(logits(converted), logits(reference))


def test_export_then_convert_is_the_identity(tmp_path, make_tiny_model):
    model = make_tiny_model(
        "llm.tie_word_embeddings=false", "llm.rope_scaling={type: yarn, factor: 2.0}",
        "llm.max_position_embeddings=8192", "dropout.enabled=true", seed=8,
    )  # fmt: skip
    model.save_pretrained(tmp_path / "ckpt")
    # a shard limit of 40 kB forces several shards and the index
    main(["export-model", "videochat-flash", str(tmp_path / "ckpt"), str(tmp_path / "rel"),
          "--max-shard-gb", str(40e3 / 2**30)])  # fmt: skip
    index = json.loads((tmp_path / "rel" / "model.safetensors.index.json").read_text())
    names = set(index["weight_map"])
    assert len(set(index["weight_map"].values())) > 1
    for key in (
        "model.embed_tokens.weight", "model.layers.3.self_attn.q_proj.bias",
        "model.layers.0.mlp.gate_proj.weight", "model.norm.weight", "lm_head.weight",
        "model.mm_projector.mlp.0.weight", "model.mm_projector.mlp.2.bias",
        "model.vision_tower.vision_tower.encoder.blocks.1.attn.q_bias",
        "model.vision_tower.vision_tower.encoder.patch_embed.proj.weight",
        "model.vision_tower.vision_tower.encoder.vision_layernorm.weight",
    ):  # fmt: skip
        assert key in names, key
    assert len(names) == len(model.state_dict())
    config = json.loads((tmp_path / "rel" / "config.json").read_text())
    assert config["architectures"] == ["VideoChatFlashQwenForCausalLM"]
    assert config["model_type"] == "videochat_flash_qwen"
    assert config["mm_projector_type"] == "tome4_mlp_hd16"
    assert config["rope_scaling"]["type"] == "yarn" and config["rope_scaling"]["factor"] == 2.0
    assert config["llm_compress_layer_list"] == [1, 3]

    convert_videochat_flash(tmp_path / "rel", tmp_path / "back")
    before = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    after = load_file(str(tmp_path / "back" / "model.safetensors"))
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)
    cfg_before = read_yaml(tmp_path / "ckpt" / "model.yaml")
    cfg_after = read_yaml(tmp_path / "back" / "model.yaml")
    cfg_before["llm"]["vocab_size"] = model.llm.config.vocab_size  # grown to the tokenizer
    assert cfg_after == cfg_before
    back = HiCoModel.from_pretrained(tmp_path / "back")
    assert back.tokenizer.get_vocab() == model.tokenizer.get_vocab()
    assert back.llm.config.rope_parameters["rope_type"] == "yarn"
    assert torch.equal(logits(back), logits(model))


def test_bad_releases_are_named(tmp_path, make_tiny_model):
    source = make_tiny_model(*RELEASE_SHAPE, seed=5)
    rel = tmp_path / "release"
    write_release(source, rel, shards=2)
    (rel / "model-00002-of-00002.safetensors").unlink()
    with pytest.raises(NotFoundError, match="model-00002-of-00002.safetensors: shard listed"):
        convert_videochat_flash(rel, tmp_path / "out")

    other = tmp_path / "other"
    write_release(source, other)
    cfg = json.loads((other / "config.json").read_text())
    (other / "config.json").write_text(json.dumps({**cfg, "architectures": ["LlamaForCausalLM"],
                                                   "model_type": "llama"}))  # fmt: skip
    with pytest.raises(FormatError, match="not a VideoChat-Flash checkpoint"):
        convert_videochat_flash(other, tmp_path / "out")

    wrong = tmp_path / "wrong"
    tensors = write_release(source, wrong)
    key = "model.layers.2.mlp.up_proj.weight"
    tensors[key] = tensors[key][:-1]
    save_file(tensors, str(wrong / "model.safetensors"))
    with pytest.raises(FormatError, match=f"{key} has shape"):
        convert_videochat_flash(wrong, tmp_path / "out")
