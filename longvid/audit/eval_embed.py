"""Embedding evaluation video files with the corpus's own open_clip model, for leakage.

The model is rebuilt from the lineage the embed stage writes into every ``KEY.json``
(``embedding``: model name or custom config, checkpoint, init seed), so an evaluation clip and a
corpus sample are embedded by the same network. Each evaluation video is cut into windows of
``window_s`` seconds (plus the whole video); a window's embedding is the normalised mean of the
image embeddings of ``frames_per_window`` frames at the midpoints of equal parts, which is how
the embed stage pools a short sample.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from longvid import storage
from longvid.errors import ConfigError, LongvidError


def embed_config(lineage: dict[str, Any], device: str) -> Any:
    """The EmbedConfig that rebuilds the model described by a ``KEY.json`` embedding lineage."""
    from longvid.annotate.config import EmbedConfig

    model = lineage.get("model")
    if not model:
        raise ConfigError("the corpus's embedding lineage names no model")
    return EmbedConfig(
        model=model,
        model_cfg=lineage.get("custom_config") if model == "custom" else None,
        pretrained=lineage.get("pretrained"),
        init_seed=int(lineage.get("init_seed") or 0),
        device=device,
        dtype="float32",
    )


def windows(duration: float, window_s: float) -> list[tuple[float, float]]:
    """Consecutive windows covering ``[0, duration]`` (the last may be shorter), then the whole
    video when there is more than one window."""
    out = []
    start = 0.0
    while start < duration - 1e-6:
        out.append((start, min(duration, start + window_s)))
        start += window_s
    if len(out) > 1:
        out.append((0.0, duration))
    return out or [(0.0, duration)]


def list_videos(uri: str, exts: Sequence[str]) -> list[str]:
    """Video files under a folder (recursively), or the file itself."""
    suffixes = tuple(f".{e.lower().lstrip('.')}" for e in exts)
    if storage.is_remote(uri) and not uri.lower().endswith(suffixes):
        return [u for u in storage.list_files(uri) if u.lower().endswith(suffixes)]
    if not storage.is_remote(uri) and Path(uri).is_dir():
        return sorted(str(p) for p in Path(uri).rglob("*")
                      if p.is_file() and p.name.lower().endswith(suffixes))
    return [uri]


def is_video_input(uri: str, exts: Sequence[str]) -> bool:
    """Whether ``--against`` points at video files (a folder, or a file with a video
    extension) rather than at a list of ids."""
    suffixes = tuple(f".{e.lower().lstrip('.')}" for e in exts)
    if uri.lower().endswith(suffixes):
        return True
    if storage.is_remote(uri):
        return uri.endswith("/")
    return Path(uri).is_dir()


class EvalEmbedder:
    """``embed(path) -> (windows [(start, end)], embeddings [W, D])`` for one video file."""

    def __init__(self, lineage: dict[str, Any], window_s: float, frames_per_window: int,
                 device: str = "cpu"):
        from longvid.annotate.embed import ClipEmbedder

        self.embedder = ClipEmbedder(embed_config(lineage, device))
        self.window_s = window_s
        self.frames = frames_per_window

    def embed(self, path: str) -> tuple[list[tuple[float, float]], np.ndarray]:
        from longvid.annotate.embed import pool
        from longvid.media.decode import decode_at
        from longvid.media.probe import probe

        info = probe(path)
        spans = windows(info.duration, self.window_s)
        times = []
        for a, b in spans:
            times += [a + (i + 0.5) * (b - a) / self.frames for i in range(self.frames)]
        # short side at the model's image size: preprocessing is then a centre crop
        side = self.embedder.short_side
        scale = min(1.0, side / max(1, min(info.width, info.height)))
        size = (max(2, round(info.width * scale)), max(2, round(info.height * scale)))
        frames = decode_at(path, times, size=size, keyframes=info.keyframes, threads=1)
        embs = self.embedder.encode_frames(frames)
        pooled = [pool(embs[i * self.frames:(i + 1) * self.frames]) for i in range(len(spans))]
        return spans, np.stack(pooled)


def embedding_leaks(videos: list[str], lineage: dict[str, Any] | None,
                    corpus_keys: list[str], corpus_records: list[str],
                    corpus_embs: np.ndarray | None, threshold: float, window_s: float,
                    frames_per_window: int, device: str, max_keys: int) -> dict[str, Any]:
    """For each evaluation video: its best-matching sample, and every sample at or above the
    threshold. ``corpus_embs``: ``[N, D]``, rows in the order of ``corpus_keys``."""
    from longvid.audit.duplicates import unit_rows

    out: dict[str, Any] = {"videos": len(videos), "checked": False, "threshold": threshold}
    if corpus_embs is None or not len(corpus_keys) or lineage is None:
        out["skipped"] = "the corpus has no embeddings (run the build's embed stage)"
        return out
    emb = EvalEmbedder(lineage, window_s, frames_per_window, device)
    x = unit_rows(corpus_embs)
    results, failed, leaked = [], [], set()
    for v in videos:
        try:
            with storage.local_copy(v) as local:
                spans, e = emb.embed(str(local))
        except LongvidError as exc:
            failed.append({"video": v, "error": str(exc)})
            continue
        sims = unit_rows(e) @ x.T  # [W, N]
        best = sims.max(axis=0)  # best window per sample
        hits = np.nonzero(best >= threshold)[0]
        top = int(np.argmax(best))
        leaked.update(corpus_keys[i] for i in hits)
        order = hits[np.argsort(-best[hits])]
        results.append({
            "video": v,
            "windows": len(spans),
            "best_key": corpus_keys[top],
            "best_record": corpus_records[top],
            "best_cosine": round(float(best[top]), 6),
            "matches": [{"key": corpus_keys[i], "record_id": corpus_records[i],
                         "cosine": round(float(best[i]), 6)} for i in order[:max_keys]],
            "samples": int(len(hits)),
        })
    out.update(checked=True, results=results, failed=failed, samples=len(leaked),
               leaked_keys=sorted(leaked))
    return out
