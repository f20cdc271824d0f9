"""``longvid export-model videochat-flash CKPT OUT``: a HiCo model directory -> the released
VideoChat-Flash layout (``config.json`` with its field names, safetensors under the released
tensor names, one file or shards with an index, the tokenizer files).

The exported ``config.json`` also carries our whole model config under ``longvid_model``
(ignored by the original code), so ``longvid convert`` gives back exactly the same model. The
original's Python files (``modeling_videochat_flash.py`` and its helpers, referenced by
``auto_map``) are not part of the export: copy them from the released model to load it there.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path
from typing import Any

from longvid.training.model.convert import (
    INDEX_FILE,
    LONGVID_CONFIG_KEY,
    RELEASED_ARCHITECTURE,
    RELEASED_MODEL_TYPE,
    SINGLE_FILE,
    ours_to_released,
)

log = logging.getLogger(__name__)

DTYPES = ("keep", "bfloat16", "float16", "float32")


def released_config(model) -> dict[str, Any]:
    """config.json of the release for ``model`` (Qwen2 fields + the multimodal fields)."""
    cfg = model.cfg
    hf = model.llm.config
    enc, merge, drop = cfg.encoder, cfg.merge, cfg.dropout
    rope = None
    if cfg.llm.rope_scaling is not None:
        rope = cfg.llm.rope_scaling.hf_dict(cfg.llm.max_position_embeddings)
        rope["type"] = rope["rope_type"]  # the original code (transformers 4) reads "type"
    head_dim = enc.width // merge.head_chunks
    return {
        "architectures": [RELEASED_ARCHITECTURE],
        "model_type": RELEASED_MODEL_TYPE,
        # the Qwen2 language model
        "vocab_size": hf.vocab_size,
        "hidden_size": hf.hidden_size,
        "intermediate_size": hf.intermediate_size,
        "num_hidden_layers": hf.num_hidden_layers,
        "num_attention_heads": hf.num_attention_heads,
        "num_key_value_heads": hf.num_key_value_heads,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.llm.max_position_embeddings,
        "max_window_layers": hf.num_hidden_layers,
        "rope_theta": cfg.llm.rope_theta,
        "rope_scaling": rope,
        "rms_norm_eps": cfg.llm.rms_norm_eps,
        "tie_word_embeddings": bool(hf.tie_word_embeddings),
        "attention_dropout": 0.0,
        "initializer_range": 0.02,
        "use_cache": True,
        "use_sliding_window": False,
        "sliding_window": cfg.llm.max_position_embeddings,
        "bos_token_id": model.tokenizer.bos_token_id,
        "eos_token_id": model.tokenizer.eos_token_id,
        "pad_token_id": model.tokenizer.pad_token_id,
        # the vision side
        "mm_vision_tower": "umt-hd-large" if enc.img_size >= 448 else "umt-large",
        "mm_hidden_size": enc.width,
        "mm_vision_select_layer": enc.select_layer,
        "mm_vision_select_feature": "patch",
        "mm_projector_type": f"tome{merge.tokens_per_frame}_mlp_hd{head_dim}",
        "mm_local_num_frames": enc.clip_len,
        "mm_patch_merge_type": "spatial_nopad",
        "mm_newline_position": "nothing",
        "mm_spatial_pool_mode": "bilinear",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "use_mm_proj": True,
        "vision_encode_type": "video_image",
        "image_aspect_ratio": "square",
        "frame_aspect_ratio": "square",
        "tokenizer_padding_side": "right",
        "tokenizer_model_max_length": cfg.llm.max_position_embeddings,
        # progressive visual dropout, in the original's terms
        "mm_llm_compress": drop.enabled,
        "llm_compress_type": "uniform0_attention",
        "llm_compress_layer_list": [drop.uniform_layer, drop.text_layer],
        "llm_image_token_ratio_list": [1.0, drop.uniform_keep, drop.text_keep],
        LONGVID_CONFIG_KEY: cfg.model_dump(mode="json"),
    }


def released_tensors(model, dtype: str = "keep") -> dict[str, Any]:
    """Our weights under the released names (a tied output head is stored once, as the
    embedding, like the released small Qwen2 models)."""
    import torch

    tied = bool(model.llm.config.tie_word_embeddings)
    out = {}
    for name, tensor in model.state_dict().items():
        if tied and name == "llm.lm_head.weight":
            continue
        t = tensor.detach().to("cpu").contiguous()
        if dtype != "keep":
            t = t.to(getattr(torch, dtype))
        out[ours_to_released(name)] = t  # no copy: a 7B model in fp32 is 30 GB
    return out


def write_shards(tensors: dict[str, Any], out: Path, max_shard_bytes: int) -> list[str]:
    """One ``model.safetensors``, or ``model-0000i-of-0000n.safetensors`` + the index when the
    tensors exceed ``max_shard_bytes``. Returns the file names written."""
    from safetensors.torch import save_file

    groups: list[dict[str, Any]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if groups[-1] and size + nbytes > max_shard_bytes:
            groups.append({})
            size = 0
        groups[-1][name] = t
        size += nbytes
    meta = {"format": "pt"}
    if len(groups) == 1:
        save_file(groups[0], str(out / SINGLE_FILE), metadata=meta)
        return [SINGLE_FILE]
    names = [f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors" for i in range(len(groups))]
    weight_map = {}
    for fname, group in zip(names, groups, strict=True):
        save_file(group, str(out / fname), metadata=meta)
        weight_map.update(dict.fromkeys(group, fname))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out / INDEX_FILE).write_text(json.dumps(index, indent=2) + "\n")
    return [*names, INDEX_FILE]


def export_videochat_flash(
    ckpt: str | Path, out: str | Path, dtype: str = "keep", max_shard_gb: float = 5.0
) -> Path:
    """Write the HiCo model in ``ckpt`` to ``out`` in the released layout."""
    from longvid.training.model.hico import HiCoModel

    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {DTYPES}")
    model = HiCoModel.from_pretrained(ckpt)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    config = released_config(model)
    tensors = released_tensors(model, dtype)
    any_tensor = next(iter(tensors.values()))
    config["torch_dtype"] = str(any_tensor.dtype).removeprefix("torch.")
    files = write_shards(tensors, out, int(max_shard_gb * 2**30))
    model.tokenizer.save_pretrained(str(out))
    tmp = out / "config.json.tmp"
    tmp.write_text(json.dumps(config, indent=2) + "\n")
    os.replace(tmp, out / "config.json")
    log.info("%s -> %s: %d tensors in %s", ckpt, out, len(tensors), ", ".join(files))
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export-model",
        help="write a longvid model in a released layout (VideoChat-Flash)",
        description="Export a model directory (save_pretrained layout, e.g. OUT/model of a "
        "training run) with the released tensor names and config fields.",
    )
    p.add_argument("format", choices=["videochat-flash"], help="layout to write")
    p.add_argument("ckpt", help="longvid model directory")
    p.add_argument("out", help="output directory")
    p.add_argument("--dtype", choices=DTYPES, default="keep", help="weight dtype (keep = as saved)")
    p.add_argument(
        "--max-shard-gb", type=float, default=5.0, help="split the weights into shards of this size"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = export_videochat_flash(
        Path(args.ckpt).resolve(), Path(args.out).resolve(), args.dtype, args.max_shard_gb
    )
    print(out)
    return 0
