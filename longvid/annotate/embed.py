"""open_clip embeddings: frames → image embeddings, captions → text embeddings, and pooling.

The model is an open_clip name (``ViT-B-32`` …) with a *local* checkpoint file, or ``custom``: a
model built from an open_clip model config dict (``embed_dim``, ``vision_cfg``, ``text_cfg``), which
is how the tests and the demo get a tiny random model without downloading anything. Nothing here
fetches weights: a checkpoint that is not a local file is an error.

Frames arrive as ``[N, H, W, 3]`` uint8 RGB (decoded with the short side at the model's image size,
so preprocessing is a centre crop and a normalisation, done on tensors in one go).
Embeddings are L2-normalised float32.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from longvid.annotate.config import EmbedConfig
from longvid.errors import ConfigError, NotFoundError

OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def resolve_device(device: str) -> str:
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _dtype(name: str, device: str):
    import torch

    if device == "cpu":
        return torch.float32  # half precision on CPU is slow and not always supported
    return {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[name]


def build_clip(cfg: EmbedConfig) -> tuple[Any, Any, tuple[int, int], dict[str, Any]]:
    """(model, tokenizer, (image height, width), preprocess info) on the CPU, in eval mode."""
    import open_clip
    import torch
    from open_clip.model import CLIP

    pretrained = cfg.pretrained
    if pretrained is not None and not Path(pretrained).is_file():
        raise NotFoundError(
            f"{pretrained}: open_clip checkpoint not found (embed.pretrained must be a local file)"
        )
    if cfg.model == "custom" and not cfg.model_cfg:
        raise ConfigError("annotate.embed: model 'custom' needs model_cfg")
    if cfg.model != "custom" and cfg.model not in open_clip.list_models():
        raise ConfigError(f"annotate.embed.model: {cfg.model!r} is not an open_clip model name")
    # random weights come from init_seed (without touching the caller's generator), so a
    # model without a checkpoint is still the same model in every worker
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.init_seed)
        if cfg.model == "custom":
            try:
                model = CLIP(**cfg.model_cfg)
            except TypeError as exc:
                raise ConfigError(f"annotate.embed.model_cfg: {exc}") from None
        else:
            model = open_clip.create_model(cfg.model, pretrained=None)
    if pretrained is not None:
        open_clip.load_checkpoint(model, pretrained)
    if cfg.model == "custom":
        context = int(cfg.model_cfg.get("text_cfg", {}).get("context_length", 77))
        tokenizer = open_clip.tokenizer.SimpleTokenizer(context_length=context)
    else:
        tokenizer = open_clip.get_tokenizer(cfg.model)
    size = model.visual.image_size
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    pre = getattr(model.visual, "preprocess_cfg", None) or {}
    info = {"mean": tuple(pre.get("mean", OPENAI_MEAN)), "std": tuple(pre.get("std", OPENAI_STD))}
    model.eval()
    return model, tokenizer, hw, info


class ClipEmbedder:
    """Batched open_clip image and text embeddings.

    ``encode_frames(frames [N, H, W, 3] uint8) -> [N, D]`` and ``encode_texts(list[str]) ->
    [M, D]``, both float32, rows of unit length.
    """

    def __init__(self, cfg: EmbedConfig):
        import torch

        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        model, tokenizer, hw, info = build_clip(cfg)
        self.dtype = _dtype(cfg.dtype, self.device)
        self.model = model.to(self.device, self.dtype)
        self.tokenizer = tokenizer
        self.image_hw = hw
        self.mean = torch.tensor(info["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(info["std"], device=self.device).view(1, 3, 1, 1)
        self.dim = int(self.encode_texts(["x"]).shape[1])

    @property
    def short_side(self) -> int:
        """Decode frames with this short side: preprocessing is then only a centre crop."""
        return min(self.image_hw)

    def preprocess(self, frames: np.ndarray):
        """``[N, H, W, 3]`` uint8 → ``[N, 3, h, w]`` normalised, on the model's device.
        Resizes (short side to the image size, antialiased) only when needed, then centre-crops."""
        import torch
        import torch.nn.functional as F

        x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        h, w = x.shape[-2:]
        th, tw = self.image_hw
        scale = max(th / h, tw / w)
        if abs(scale - 1.0) > 1e-6:
            size = (max(th, round(h * scale)), max(tw, round(w * scale)))
            x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
            h, w = size
        top, left = (h - th) // 2, (w - tw) // 2
        x = x[:, :, top : top + th, left : left + tw]
        return ((x - self.mean) / self.std).to(self.dtype)

    def encode_frames(self, frames: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """``[N, H, W, 3]`` uint8, or a list of such arrays whose sizes may differ (the videos of
        several units) → ``[N in all, D]``.

        Every forward pass holds exactly ``batch_size`` images (the last one padded with zeros),
        so a frame's embedding does not depend on which frames share its pass: one video at a
        time, one unit, or many units batched together give the same bits (the kernels a
        backend picks may depend on the batch's size, not on its other rows)."""
        import torch

        groups = [frames] if isinstance(frames, np.ndarray) else list(frames)
        where = [(g, r) for g, arr in enumerate(groups) for r in range(len(arr))]
        size = self.cfg.batch_size
        out = []
        with torch.inference_mode():
            for i in range(0, len(where), size):
                chunk = where[i : i + size]
                parts = []
                for g, rows in itertools.groupby(chunk, key=lambda gr: gr[0]):
                    r = [row for _, row in rows]
                    parts.append(self.preprocess(groups[g][r[0] : r[-1] + 1]))
                x = torch.cat(parts)  # [n, 3, h, w]
                n = x.shape[0]
                x = torch.cat([x, x.new_zeros((size - n, *x.shape[1:]))])  # [batch_size, 3, h, w]
                out.append(self.model.encode_image(x, normalize=True)[:n].float().cpu().numpy())
        if not out:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """``[M, D]``; as for frames, every forward pass holds ``batch_size`` texts (padded with
        empty ones), so a text's embedding does not depend on the others."""
        import torch

        size = self.cfg.batch_size
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), size):
                chunk = list(texts[i : i + size])
                n = len(chunk)
                ids = self.tokenizer(chunk + [""] * (size - n)).to(self.device)  # [size, ctx]
                out.append(self.model.encode_text(ids, normalize=True)[:n].float().cpu().numpy())
        if not out:
            return np.zeros((0, getattr(self, "dim", 0)), dtype=np.float32)
        return np.concatenate(out).astype(np.float32, copy=False)

    def lineage(self) -> dict[str, Any]:
        return {
            "model": self.cfg.model,
            "pretrained": self.cfg.pretrained,
            "init_seed": None if self.cfg.pretrained else self.cfg.init_seed,
            "custom_config": self.cfg.model_cfg if self.cfg.model == "custom" else None,
            "image_size": list(self.image_hw),
            "dim": self.dim,
            "dtype": str(self.dtype).replace("torch.", ""),
        }


def pool(embs: np.ndarray) -> np.ndarray:
    """Mean of unit vectors ``[N, D]``, re-normalised → ``[D]`` (zeros for N = 0)."""
    if len(embs) == 0:
        return np.zeros(embs.shape[1:], dtype=np.float32)
    m = embs.mean(axis=0)
    n = float(np.linalg.norm(m))
    return (m / n if n > 0 else m).astype(np.float32)


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    na, nb = float(np.linalg.norm(a)), float(np.linalg.norm(b))
    if na == 0 or nb == 0:
        return 0.0
    return float(np.dot(a, b) / (na * nb))
