"""Needles (questions + images) and the haystack (a video at ``fps``, encoded once, cached)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from longvid.errors import FormatError, NotFoundError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HopQuestion:
    """A question about one hop's image, with its options, and its answer (an option letter)."""

    question: str
    answer: str


@dataclass(frozen=True)
class Needle:
    """One needle: ``images`` (one per hop; single-hop has one), the final question text with
    its options and its answer (an option letter), and for multi-hop optionally one question
    per hop (``hops``, in image order), each scored on the same haystack."""

    name: str
    images: tuple[Path, ...]
    question: str
    answer: str
    hops: tuple[HopQuestion, ...] = ()


def load_needles(path: str | Path, limit: int | None = None) -> list[Needle]:
    """Read the needle JSON (a list of objects, or ``{"needles": [...]}``)."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{p}: needle file not found")
    try:
        data: Any = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise FormatError(f"{p}: not valid JSON ({exc})") from None
    if isinstance(data, dict):
        data = data.get("needles")
    if not isinstance(data, list) or not data:
        raise FormatError(f"{p}: expected a non-empty list of needles")
    out = []
    for i, item in enumerate(data[:limit] if limit else data):
        where = f"{p}: needle {i}"
        if not isinstance(item, dict):
            raise FormatError(f"{where}: not an object")
        images = item.get("images") or ([item["image"]] if "image" in item else [])
        if not images or not all(isinstance(x, str) for x in images):
            raise FormatError(f"{where}: needs 'image' (single-hop) or 'images' (multi-hop)")
        for key in ("question", "answer"):
            if not isinstance(item.get(key), str) or not item[key].strip():
                raise FormatError(f"{where}: '{key}' missing or empty")
        hops = _hop_questions(item.get("hops"), len(images), where)
        paths = tuple((p.parent / x).resolve() for x in images)
        for img in paths:
            if not img.is_file():
                raise NotFoundError(f"{where}: image {img} not found")
        name = str(item.get("id", Path(images[0]).stem if len(images) == 1 else f"needle{i}"))
        out.append(Needle(name, paths, item["question"].strip(), item["answer"].strip(), hops))
    return out


def _hop_questions(raw: Any, n_images: int, where: str) -> tuple[HopQuestion, ...]:
    """``hops``: absent, or one ``{question, answer}`` per image of a multi-hop needle."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) != n_images or n_images < 2:
        raise FormatError(
            f"{where}: 'hops' must list one {{question, answer}} per image of a multi-hop "
            f"needle ({n_images} image(s))"
        )
    out = []
    for k, hop in enumerate(raw, 1):
        ok = isinstance(hop, dict) and all(
            isinstance(hop.get(key), str) and hop[key].strip() for key in ("question", "answer")
        )
        if not ok:
            raise FormatError(f"{where}: hop {k} needs a non-empty 'question' and 'answer'")
        out.append(HopQuestion(hop["question"].strip(), hop["answer"].strip()))
    return tuple(out)


def read_image(path: Path, size: int) -> np.ndarray:
    """uint8 [1, size, size, 3] RGB."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB").resize((size, size), Image.BICUBIC)
    return np.array(rgb)[None]  # a writable copy


@torch.no_grad()
def encode_needle(model, path: Path) -> Tensor:
    """A needle image as the released evaluation inserts it: the picture repeated into one clip
    (4 frames, 64 tokens with the real model) -> [tokens, D]."""
    frame = model.preprocess(read_image(path, model.cfg.encoder.img_size))
    clip = frame.repeat(model.cfg.encoder.clip_len, 1, 1, 1)
    return model.encode_video(clip.to(_dtype(model)))


def _dtype(model) -> torch.dtype:
    return model.projector.fc1.weight.dtype


def _cache_key(model_dir: Path, video: Path, fps: float, n_frames: int) -> str:
    """Changes when the video, the model weights, the rate or the length change."""
    parts = []
    for f in (video, model_dir / "model.safetensors"):
        st = f.stat()
        parts.append(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    parts.append(f"{fps}:{n_frames}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


@torch.no_grad()
def encode_haystack(
    model,
    model_dir: str | Path,
    video: str | Path,
    fps: float,
    n_frames: int,
    cache_dir: str | Path,
    chunk_frames: int = 256,
) -> Tensor:
    """The haystack's visual embeddings [clips * tokens_per_clip, D] (on CPU) for ``n_frames``
    frames at ``fps`` (the video loops when it is shorter), from the cache when present."""
    from longvid.training.infer import read_frames, video_duration

    video = Path(video)
    if not video.is_file():
        raise NotFoundError(f"{video}: haystack video not found")
    cache = Path(cache_dir) / f"haystack-{_cache_key(Path(model_dir), video, fps, n_frames)}.pt"
    if cache.is_file():
        log.info("haystack from cache %s", cache)
        return torch.load(cache, weights_only=True)
    duration = video_duration(video)
    available = max(1, int(duration * fps))
    if available < n_frames:
        log.warning(
            "%s: %d frames at %.2f fps, %d needed: the video loops", video, available, fps, n_frames
        )
    clip = model.cfg.encoder.clip_len
    chunk = max(clip, chunk_frames - chunk_frames % clip)  # whole clips per chunk
    times = (np.arange(n_frames) % available + 0.5) / fps
    parts = []
    for start in range(0, n_frames, chunk):
        raw = read_frames(video, times[start : start + chunk], model.cfg.encoder.img_size)
        parts.append(model.encode_video(model.preprocess(raw).to(_dtype(model))).cpu())
        log.info("haystack: %d / %d frames encoded", min(start + chunk, n_frames), n_frames)
    emb = torch.cat(parts)
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(".tmp")
    torch.save(emb, tmp)
    tmp.replace(cache)
    return emb
