"""Embedding evaluation video files with the corpus's own open_clip model, for leakage.

The model is rebuilt from the lineage the embed stage writes into every ``KEY.json``
(``embedding``: model name or custom config, checkpoint, init seed), so an evaluation clip and a
corpus sample are embedded by the same network. Each evaluation video is cut into windows of
``window_s`` seconds (plus the whole video); a window's embedding is the normalised mean of the
image embeddings of ``frames_per_window`` frames at the midpoints of equal parts, which is how
the embed stage pools a short sample.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from longvid import storage
from longvid.dedup.config import DedupConfig
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


FINGERPRINT_SIZE = (64, 36)  # the build's decode-pass frame size (detect.width/height)


def eval_frame_hashes(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Perceptual hashes and mean colours (``[E]`` uint64, ``[E, 3]`` uint8) of every frame of
    an evaluation video, decoded at the size the build's decode pass hashes."""
    from longvid.dedup.fingerprint import frame_hashes
    from longvid.media.decode import iter_frames

    hashes, colours, batch = [], [], []
    for frame in iter_frames(path, size=FINGERPRINT_SIZE, threads=1):
        batch.append(frame.image)
        if len(batch) == 256:
            h, c = frame_hashes(np.stack(batch))
            hashes.append(h)
            colours.append(c)
            batch.clear()
    if batch:
        h, c = frame_hashes(np.stack(batch))
        hashes.append(h)
        colours.append(c)
    if not hashes:
        return np.zeros(0, np.uint64), np.zeros((0, 3), np.uint8)
    return np.concatenate(hashes), np.concatenate(colours)


def embedding_leaks(videos: list[str], lineage: dict[str, Any] | None,
                    batches: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray]],
                    threshold: float, window_s: float, frames_per_window: int, device: str,
                    max_keys: int, search: DedupConfig) -> dict[str, Any]:
    """For each evaluation video: every sample whose embedding has at least ``threshold``
    cosine with one of its windows, found by the duplicate search's cluster index
    (:func:`longvid.dedup.semantic.near_pairs`), and the best of them. ``batches``: the corpus
    a batch at a time, ``(keys [b], record ids [b], embeddings [b, D])`` of the rows that have
    one; each batch is searched against the (small) evaluation side, so no corpus-wide array is
    held. The evaluation videos are embedded once, when the first batch comes."""
    from longvid.dedup.semantic import near_pairs, unit_rows

    out: dict[str, Any] = {"videos": len(videos), "checked": False, "threshold": threshold}
    skipped = "the corpus has no embeddings (run the build's embed stage)"
    if lineage is None:
        out["skipped"] = skipped
        return out
    done: list[tuple[str, int]] = []
    failed: list[dict[str, str]] = []
    windows_of: list[int] = []
    evals: np.ndarray | None = None  # [W, D] unit rows of every window
    embedded = False
    best: dict[int, dict[str, tuple[float, str]]] = {}  # eval video → key → (cosine, record)
    for keys, records, embs in batches:
        if not len(keys):
            continue
        if not embedded:
            embedded = True
            emb = EvalEmbedder(lineage, window_s, frames_per_window, device)
            vecs = []
            for v in videos:
                try:
                    with storage.local_copy(v) as local:
                        spans, e = emb.embed(str(local))
                except LongvidError as exc:
                    failed.append({"video": v, "error": str(exc)})
                    continue
                done.append((v, len(spans)))
                windows_of += [len(done) - 1] * len(spans)
                vecs.append(e)
            evals = unit_rows(np.concatenate(vecs)) if vecs else None
        if evals is None:
            break
        n = len(keys)
        x = np.concatenate([unit_rows(embs), evals])  # [b+W, D]
        side = np.r_[np.zeros(n, np.int64), np.ones(len(x) - n, np.int64)]
        i, j, cos, _ = near_pairs(x, np.zeros(len(x), np.int64), side, threshold, search)
        for row, w, c in zip(i.tolist(), j.tolist(), cos.tolist(), strict=True):
            hits = best.setdefault(windows_of[w - n], {})
            key = str(keys[row])
            if key not in hits or c > hits[key][0]:
                hits[key] = (c, str(records[row]))
    if not embedded:
        out["skipped"] = skipped
        return out
    results, leaked = [], set()
    for k, (v, nwin) in enumerate(done):
        hits = sorted(best.get(k, {}).items(), key=lambda kv: (-kv[1][0], kv[0]))
        leaked.update(key for key, _ in hits)
        top = hits[0] if hits else None
        results.append({
            "video": v, "windows": nwin,
            "best_key": top[0] if top else None,
            "best_record": top[1][1] if top else None,
            "best_cosine": round(float(top[1][0]), 6) if top else None,
            "matches": [{"key": key, "record_id": rec, "cosine": round(float(c), 6)}
                        for key, (c, rec) in hits[:max_keys]],
            "samples": len(hits),
        })
    out.update(checked=True, results=results, failed=failed, samples=len(leaked),
               leaked_keys=sorted(leaked))
    return out
