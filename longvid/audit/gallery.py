"""The report's sample gallery: what the corpus looks like, one small picture strip per sample.

Per source and duration bucket, a seeded random pick of samples (the lowest SHA-256 of
``seed:key``: the same picks every run, found in one pass over the rows); each shows a strip
of frames at the centres of equal parts of its clip (small JPEG files under ``gallery/`` next
to the report), its caption, events and QA. Also: the largest duplicate groups side by side
with their similarity, the longest and shortest samples, and one example per reject reason.
Clips are read from the shards by byte range (``samples.parquet``'s member offsets).
"""

from __future__ import annotations

import hashlib
import heapq
import io
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from longvid import storage
from longvid.errors import LongvidError

GALLERY_DIR = "gallery"


def pick_key(seed: int, key: str) -> int:
    """A sample's place in the seeded random order (first 64 bits of SHA-256 of seed:key)."""
    return int.from_bytes(hashlib.sha256(f"{seed}:{key}".encode()).digest()[:8], "big")


def picks(rows: Sequence[dict[str, Any]], per_group: int, seed: int
          ) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """``(source, bucket) → rows`` first in the seeded order, in one pass with a bounded heap
    per group (a max-heap of the ``per_group`` smallest, by negated keys)."""
    heaps: dict[tuple[str, str], list[tuple[int, int]]] = defaultdict(list)
    for i, r in enumerate(rows):
        h = heaps[(str(r.get("source")), str(r.get("bucket")))]
        item = (-pick_key(seed, r["key"]), i)
        if len(h) < per_group:
            heapq.heappush(h, item)
        elif item > h[0]:
            heapq.heapreplace(h, item)
    return {g: [rows[i] for _, i in sorted(h, reverse=True)] for g, h in sorted(heaps.items())}


def extremes(rows: Sequence[dict[str, Any]], n: int) -> tuple[list[dict], list[dict]]:
    """The ``n`` longest and ``n`` shortest samples (ties by key)."""
    dur = lambda r: float(r.get("duration") or 0)  # noqa: E731
    longest = heapq.nlargest(n, rows, key=lambda r: (dur(r), r["key"]))
    shortest = heapq.nsmallest(n, rows, key=lambda r: (dur(r), r["key"]))
    return longest, shortest


class StripWriter:
    """Writes a strip of ``frames`` JPEG frames of a sample's clip into ``out/gallery/``."""

    def __init__(self, root: str, out: str, frames: int, height: int, quality: int):
        self.root, self.out = root, out
        self.frames, self.height, self.quality = frames, height, quality

    def __call__(self, row: dict[str, Any], frames: int | None = None) -> list[str]:
        """Relative paths of the written frames ([] when the clip cannot be read)."""
        from PIL import Image

        from longvid.media.decode import decode_at
        from longvid.shards import read_member

        n = frames or self.frames
        width, height = int(row.get("width") or 0), int(row.get("height") or 0)
        if not width or not height:
            return []
        size = (max(2, round(width * self.height / height / 2) * 2), self.height)
        dur = float(row.get("duration") or 0)
        times = [(i + 0.5) * dur / n for i in range(n)]
        try:
            clip = read_member(self.root, row, "mp4")
            images = decode_at(clip, times, size=size, threads=1)
        except (LongvidError, KeyError, ValueError):
            return []
        paths = []
        for i, img in enumerate(images):
            rel = f"{GALLERY_DIR}/{row['key']}_{i}.jpg"
            buf = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(img)).save(buf, "JPEG", quality=self.quality)
            storage.write_bytes(storage.join(self.out, rel), buf.getvalue())
            paths.append(rel)
        return paths


def _meta(root: str, row: dict[str, Any]) -> dict[str, Any]:
    from longvid.shards import read_member

    try:
        return json.loads(read_member(root, row, "json"))
    except (LongvidError, KeyError, ValueError):
        return {}


def entry(root: str, row: dict[str, Any], strip: Callable[..., list[str]], max_items: int
          ) -> dict[str, Any]:
    """One gallery card: ids, span, caption, events and QA from KEY.json, the frame strip."""
    meta = _meta(root, row)
    events = [{"start": e.get("start"), "end": e.get("end"), "text": e.get("text")}
              for e in (meta.get("events") or [])[:max_items]]
    qa = [{"question": q.get("question"), "answer": q.get("answer")}
          for q in (meta.get("qa") or [])[:max_items]]
    return {"key": row["key"], "source": row.get("source"), "record_id": row.get("record_id"),
            "bucket": row.get("bucket"), "duration": row.get("duration"),
            "caption": row.get("caption"), "events": events, "qa": qa, "frames": strip(row)}


def build_gallery(root: str, out: str, rows: Sequence[dict[str, Any]],
                  dup_groups: Sequence[dict[str, Any]], rejects: Sequence[dict[str, Any]],
                  cfg: Any) -> dict[str, Any]:
    """The gallery section of the report (``cfg``: ``AuditConfig.gallery``); writes the
    frames under ``out/gallery/``."""
    strip = StripWriter(root, out, cfg.frames, cfg.height, cfg.jpeg_quality)
    groups = [{"source": s, "bucket": b,
               "samples": [entry(root, r, strip, cfg.max_items) for r in chosen]}
              for (s, b), chosen in picks(rows, cfg.per_group, cfg.seed).items()]
    by_key = {r["key"]: r for r in rows} if dup_groups else {}
    dups = []
    for g in dup_groups[: cfg.duplicate_groups]:
        members = [(g["kept"], None, "kept")] + [
            (m["key"], m["similarity"], m["signal"]) for m in g["members"][:3]]
        dups.append({"kept": g["kept"], "samples": [
            {"key": k, "similarity": sim, "signal": sig,
             "frames": strip(by_key[k], 2) if k in by_key else []} for k, sim, sig in members]})
    longest, shortest = extremes(rows, cfg.extremes)
    examples: dict[str, dict[str, Any]] = {}
    for r in rejects:
        reason = str(r.get("reason"))
        if reason not in examples:
            examples[reason] = {"reason": reason, "stage": r.get("stage"),
                                "record_id": r.get("record_id"), "locator": r.get("locator"),
                                "detail": r.get("detail")}
    return {
        "seed": cfg.seed, "per_group": cfg.per_group,
        "groups": groups,
        "duplicates": dups,
        "longest": [entry(root, r, strip, cfg.max_items) for r in longest],
        "shortest": [entry(root, r, strip, cfg.max_items) for r in shortest],
        "rejects": [examples[k] for k in sorted(examples)],
    }
