"""``longvid convert videochat-flash SRC OUT``: a released VideoChat-Flash checkpoint -> a HiCo
model directory (the ``save_pretrained`` layout that ``longvid infer`` and ``init:`` load).

The released layout (Hugging Face, custom code): ``config.json`` with ``architectures:
["VideoChatFlashQwenForCausalLM"]`` and ``model_type: videochat_flash_qwen``; the weights in one
``model.safetensors`` or in shards listed by ``model.safetensors.index.json``; the Qwen2
tokenizer files. Tensor names, released -> ours:

    model.vision_tower.vision_tower.encoder.patch_embed.proj.*   -> encoder.patch_embed.proj.*
    model.vision_tower.vision_tower.encoder.blocks.{j}.*         -> encoder.blocks.{j}.*
    model.vision_tower.vision_tower.encoder.vision_layernorm.*   -> encoder.norm.*
    model.mm_projector.mlp.0.* / mlp.2.*                          -> projector.fc1.* / fc2.*
    model.embed_tokens / model.layers.{i}.* / model.norm          -> llm.model.(same)
    lm_head.weight                                                -> llm.lm_head.weight

The release holds only the encoder blocks it runs (23 of UMT-L's 24 with select layer -2), so
the architecture depth is ``blocks - select_layer - 1``. Every size is read from the tensors
(widths, block and layer counts, MLP widths, key/value heads); the config fields give what the
tensors cannot (LLM query heads, select layer, clip length, merge budget, input size, RoPE).
Tensors are written unchanged (same dtype, same bits); the ``<image>`` placeholder of the
original (``IMAGE_TOKEN_INDEX`` -200, never a vocabulary entry) becomes our ``<video>`` token,
added to the released tokenizer.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path
from typing import Any

from longvid.errors import FormatError, NotFoundError

log = logging.getLogger(__name__)

RELEASED_ARCHITECTURE = "VideoChatFlashQwenForCausalLM"
RELEASED_MODEL_TYPE = "videochat_flash_qwen"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# our full ModelConfig, stored in an exported config.json so that a round trip is exact
LONGVID_CONFIG_KEY = "longvid_model"

VISION_PREFIX = "model.vision_tower.vision_tower.encoder."
_PROJECTOR = {
    "model.mm_projector.mlp.0.": "projector.fc1.",
    "model.mm_projector.mlp.2.": "projector.fc2.",
}
_LLM_PARTS = ("model.embed_tokens.", "model.layers.", "model.norm.")
_TOME = re.compile(r"^tome(\d+)_mlp_hd(\d+)$")
_BLOCK = re.compile(r"blocks\.(\d+)\.")
_LAYER = re.compile(r"^model\.layers\.(\d+)\.")
UMT_HEAD_DIM = 64  # UMT-B (768 / 12) and UMT-L (1024 / 16) both use 64-dim heads


# ------------------------------------------------------------------------------ name mapping
def released_to_ours(name: str) -> str | None:
    """A released tensor name -> our state-dict name (None: not part of the model we build)."""
    if name.startswith(VISION_PREFIX):
        rest = name[len(VISION_PREFIX) :]
        if rest.startswith("vision_layernorm."):
            return "encoder.norm." + rest[len("vision_layernorm.") :]
        if rest.startswith(("patch_embed.", "blocks.")):
            return "encoder." + rest
        return None  # fixed sin-cos tables and the like are rebuilt from the config
    for released, ours in _PROJECTOR.items():
        if name.startswith(released):
            return ours + name[len(released) :]
    if name.startswith(_LLM_PARTS) or name.startswith("lm_head."):
        return "llm." + name
    return None


def ours_to_released(name: str) -> str:
    """Our state-dict name -> the released name (the inverse of ``released_to_ours``)."""
    if name.startswith("encoder.norm."):
        return VISION_PREFIX + "vision_layernorm." + name[len("encoder.norm.") :]
    if name.startswith("encoder."):
        return VISION_PREFIX + name[len("encoder.") :]
    for released, ours in _PROJECTOR.items():
        if name.startswith(ours):
            return released + name[len(ours) :]
    if name.startswith("llm."):
        return name[len("llm.") :]
    raise ValueError(f"{name}: no released name for this tensor")


# ---------------------------------------------------------------------------- reading a release
def read_released_config(src: Path) -> dict[str, Any]:
    path = src / "config.json"
    if not path.is_file():
        raise NotFoundError(f"{path}: config.json not found (not a released checkpoint directory)")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(f"{path}: not valid JSON ({exc})") from None
    archs = cfg.get("architectures") or []
    if RELEASED_ARCHITECTURE not in archs and cfg.get("model_type") != RELEASED_MODEL_TYPE:
        raise FormatError(
            f"{path}: architectures {archs} / model_type {cfg.get('model_type')!r} is not a "
            f"VideoChat-Flash checkpoint ({RELEASED_ARCHITECTURE}, {RELEASED_MODEL_TYPE})"
        )
    return cfg


def read_released_weights(src: Path) -> dict[str, Any]:
    """Every tensor of the release, by released name (one file, or the shards of the index)."""
    from safetensors.torch import load_file

    index = src / INDEX_FILE
    if index.is_file():
        try:
            weight_map: dict[str, str] = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise FormatError(f"{index}: not a safetensors index ({exc})") from None
        tensors: dict[str, Any] = {}
        for shard in sorted(set(weight_map.values())):
            path = src / shard
            if not path.is_file():
                raise NotFoundError(f"{path}: shard listed in {INDEX_FILE} not found")
            part = load_file(str(path))
            listed = {k for k, v in weight_map.items() if v == shard}
            absent = sorted(listed - set(part))
            if absent:
                raise FormatError(
                    f"{path}: {len(absent)} tensors of the index missing: {absent[:3]}"
                )
            tensors.update({k: part[k] for k in listed})
        return tensors
    single = src / SINGLE_FILE
    if single.is_file():
        return load_file(str(single))
    raise NotFoundError(f"{src}: neither {SINGLE_FILE} nor {INDEX_FILE} found")


def _count(pattern: re.Pattern, names: list[str]) -> int:
    found = {int(m.group(1)) for n in names if (m := pattern.search(n))}
    if found != set(range(len(found))):
        raise FormatError(f"numbered blocks/layers are not contiguous: {sorted(found)}")
    return len(found)


def _shape(tensors: dict[str, Any], name: str) -> tuple[int, ...]:
    if name not in tensors:
        raise FormatError(f"tensor {name} missing from the checkpoint")
    return tuple(tensors[name].shape)


def model_config_from_release(cfg: dict[str, Any], tensors: dict[str, Any]):
    """The ModelConfig of a release: sizes from the tensors, the rest from config.json (an
    exported ``longvid_model`` entry first, then the released fields, then our defaults)."""
    from longvid.config import validate_config
    from longvid.training.model.config import ModelConfig

    base = validate_config(cfg.get(LONGVID_CONFIG_KEY) or {}, ModelConfig, "config.json")
    data = base.model_dump()
    enc, llm, merge, drop = data["encoder"], data["llm"], data["merge"], data["dropout"]
    ours = LONGVID_CONFIG_KEY in cfg  # an export of ours: its own fields are authoritative

    # encoder: sizes from the patch embedding and the blocks
    width, _, _, patch, _ = _shape(tensors, VISION_PREFIX + "patch_embed.proj.weight")
    vision = [n for n in tensors if n.startswith(VISION_PREFIX)]
    blocks = _count(_BLOCK, vision)
    hidden = _shape(tensors, VISION_PREFIX + "blocks.0.mlp.fc1.weight")[0]
    select = int(cfg.get("mm_vision_select_layer", enc["select_layer"]))
    enc.update(width=width, patch_size=patch, mlp_ratio=hidden / width, select_layer=select)
    enc["depth"] = blocks - select - 1 if select < 0 else blocks
    if not ours:
        enc["heads"] = max(1, width // UMT_HEAD_DIM)
        # the released tower names its input size: umt-hd-large = 448 px, umt-large = 224 px
        enc["img_size"] = 448 if "hd" in str(cfg.get("mm_vision_tower", "")) else 224
        enc["clip_len"] = int(cfg.get("mm_local_num_frames", enc["clip_len"]))
        enc["checkpoint"] = None
    kind = str(cfg.get("mm_projector_type", ""))
    m = _TOME.match(kind)
    if m is None:
        raise FormatError(
            f"config.json: mm_projector_type {kind!r} is not a tome<N>_mlp_hd<D> merge"
        )
    merge.update(enabled=True, tokens_per_frame=int(m.group(1)))
    merge["head_chunks"] = max(1, width // int(m.group(2)))

    # projector and LLM
    embed = _shape(tensors, "model.embed_tokens.weight")
    vocab, d_llm = embed
    proj_hidden = _shape(tensors, "model.mm_projector.mlp.0.weight")[0]
    data["projector_hidden"] = None if proj_hidden == d_llm else proj_hidden
    heads = int(cfg.get("num_attention_heads", llm["num_heads"]))
    head_dim = d_llm // heads
    kv_rows = _shape(tensors, "model.layers.0.self_attn.k_proj.weight")[0]
    llm.update(
        path=None,
        vocab_size=vocab,
        hidden_size=d_llm,
        num_layers=_count(_LAYER, list(tensors)),
        num_heads=heads,
        num_kv_heads=kv_rows // head_dim,
        intermediate_size=_shape(tensors, "model.layers.0.mlp.gate_proj.weight")[0],
        tie_word_embeddings=bool(cfg.get("tie_word_embeddings", "lm_head.weight" not in tensors)),
    )
    if not ours:
        for key in ("max_position_embeddings", "rope_theta", "rms_norm_eps"):
            if key in cfg:
                llm[key] = cfg[key]
        llm["rope_scaling"] = _rope_scaling(cfg.get("rope_scaling"))

    # progressive dropout, when the release states it in its own terms
    layers = cfg.get("llm_compress_layer_list")
    ratios = cfg.get("llm_image_token_ratio_list")
    if not ours and cfg.get("llm_compress_type") == "uniform0_attention" and layers and ratios:
        drop.update(
            enabled=bool(cfg.get("mm_llm_compress", False)),
            uniform_layer=int(layers[0]),
            text_layer=int(layers[1]),
            uniform_keep=float(ratios[1]),
            text_keep=float(ratios[2]),
        )
    return validate_config(data, ModelConfig, "config.json (converted)")


def _rope_scaling(value: Any) -> dict[str, Any] | None:
    """A released ``rope_scaling`` (transformers 4 ``type`` or 5 ``rope_type``) -> ours."""
    if not value:
        return None
    kind = value.get("rope_type", value.get("type"))
    if kind in (None, "default"):
        return None
    if kind not in ("yarn", "linear"):
        raise FormatError(f"config.json: rope_scaling type {kind!r} is not yarn or linear")
    out = {"type": kind, "factor": float(value.get("factor", 1.0))}
    if kind == "yarn" and value.get("original_max_position_embeddings"):
        out["original_max_position_embeddings"] = int(value["original_max_position_embeddings"])
    return out


_TOKENIZER_FILES = re.compile(
    r"^(tokenizer.*|vocab\.json|merges\.txt|special_tokens_map\.json|added_tokens\.json|chat_template.*)$"
)


def read_released_tokenizer(src: Path):
    """The release's tokenizer with ``<video>`` added. Loaded from a copy of the tokenizer files
    alone: next to the release's config.json (custom model type) transformers would try to
    build that config first."""
    import shutil
    import tempfile

    from longvid.training.tokenizer import load_tokenizer

    files = [p for p in src.iterdir() if p.is_file() and _TOKENIZER_FILES.match(p.name)]
    if not files:
        raise NotFoundError(f"{src}: no tokenizer files (tokenizer.json, vocab.json, ...)")
    with tempfile.TemporaryDirectory() as tmp:
        for f in files:
            shutil.copy(f, Path(tmp) / f.name)
        return load_tokenizer(tmp)


# ------------------------------------------------------------------------------- the conversion
def expected_tensors(cfg, tokenizer) -> dict[str, tuple[int, ...]]:
    """Our state-dict names and shapes for ``cfg`` (built on the meta device: no memory)."""
    import torch

    from longvid.training.model.hico import HiCoModel

    with torch.device("meta"):
        model = HiCoModel(cfg, tokenizer, load_weights=False)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def convert_videochat_flash(src: str | Path, out: str | Path) -> Path:
    """Convert the release in ``src`` into a HiCo model directory ``out``; returns ``out``."""
    import os

    import yaml
    from safetensors.torch import save_file

    from longvid.training.model.hico import (
        CONFIG_FILE,
        LLM_DIR,
        TOKENIZER_DIR,
        WEIGHTS_FILE,
        qwen2_config,
    )

    src, out = Path(src), Path(out)
    config = read_released_config(src)
    released = read_released_weights(src)
    cfg = model_config_from_release(config, released)
    tokenizer = read_released_tokenizer(src)
    if len(tokenizer) > cfg.llm.vocab_size:
        raise FormatError(
            f"{src}: tokenizer has {len(tokenizer)} tokens (with <video>), the embedding only "
            f"{cfg.llm.vocab_size} rows"
        )
    expected = expected_tensors(cfg, tokenizer)
    weights: dict[str, Any] = {}
    ignored = []
    for name, tensor in released.items():
        target = released_to_ours(name)
        if target is None:
            ignored.append(name)
            continue
        if target not in expected:
            raise FormatError(f"{src}: {name} maps to {target}, which the model does not have")
        if tuple(tensor.shape) != expected[target]:
            raise FormatError(
                f"{src}: {name} has shape {tuple(tensor.shape)}, expected {expected[target]}"
            )
        weights[target] = tensor.contiguous()
    missing = sorted(set(expected) - set(weights))
    if cfg.llm.tie_word_embeddings:  # the tied output head is the embedding, stored once
        missing = [m for m in missing if m != "llm.lm_head.weight"]
        weights.pop("llm.lm_head.weight", None)
    if missing:
        raise FormatError(f"{src}: {len(missing)} tensors missing, e.g. {missing[:3]}")
    if ignored:
        log.info("%s: %d released tensors not used: %s", src, len(ignored), ignored[:5])

    out.mkdir(parents=True, exist_ok=True)
    header = f"# HiCo model config converted from the VideoChat-Flash release {src.name}\n"
    dump = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    (out / CONFIG_FILE).write_text(header + dump)
    qwen2_config(cfg.llm, cfg.llm.vocab_size, tokenizer).save_pretrained(str(out / LLM_DIR))
    tokenizer.save_pretrained(str(out / TOKENIZER_DIR))
    tmp = out / (WEIGHTS_FILE + ".tmp")
    save_file(weights, str(tmp))
    os.replace(tmp, out / WEIGHTS_FILE)  # weights appear whole or not at all
    log.info("%s -> %s: %d tensors", src, out, len(weights))
    return out


# ------------------------------------------------------------------------------------- the CLI
def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "convert",
        help="convert a released checkpoint into a longvid model directory",
        description="Convert a released model (VideoChat-Flash layout) into the directory that "
        "`longvid infer --checkpoint` and a train config's `init:` load. Tensors are carried "
        "unchanged; sizes are read from them.",
    )
    p.add_argument("format", choices=["videochat-flash"], help="layout of SRC")
    p.add_argument(
        "src", help="released checkpoint directory (config.json, safetensors, tokenizer)"
    )
    p.add_argument("out", help="output model directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out = convert_videochat_flash(Path(args.src).resolve(), Path(args.out).resolve())
    print(out)
    return 0
