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


class Picker:
    """The seeded random pick, fed a batch at a time: per ``(source, bucket)`` a heap of the
    ``per_group`` rows first in the seeded order (a max-heap of the smallest, by negated
    keys). Only rows that enter a heap become dicts."""

    def __init__(self, per_group: int, seed: int):
        self.per_group, self.seed = per_group, seed
        self.heaps: dict[tuple[str, str], list[tuple[int, str, Any]]] = defaultdict(list)

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        for r in rows:
            self._offer(str(r.get("source")), str(r.get("bucket")), str(r["key"]), r)

    def add_batch(self, batch: Any) -> None:
        """A pyarrow RecordBatch with at least ``key``, ``source``, ``bucket``."""
        keys = batch.column("key").to_pylist()
        sources = batch.column("source").to_pylist()
        buckets = batch.column("bucket").to_pylist()
        entered = []
        for i, k in enumerate(keys):
            if self._offer(str(sources[i]), str(buckets[i]), str(k), i):
                entered.append(i)
        if entered:
            # the row dicts of this batch's survivors only
            rows = dict(zip(entered, batch.take(entered).to_pylist(), strict=True))
            for h in self.heaps.values():
                for j, (neg, key, ref) in enumerate(h):
                    if isinstance(ref, int):
                        h[j] = (neg, key, rows[ref])

    def _offer(self, source: str, bucket: str, key: str, ref: Any) -> bool:
        if self.per_group <= 0:
            return False
        h = self.heaps[(source, bucket)]
        item = (-pick_key(self.seed, key), key, ref)
        if len(h) < self.per_group:
            heapq.heappush(h, item)
            return True
        if item[:2] > h[0][:2]:
            heapq.heapreplace(h, item)
            return True
        return False

    def result(self) -> dict[tuple[str, str], list[dict[str, Any]]]:
        return {g: [r for _, _, r in sorted(h, key=lambda x: x[:2], reverse=True)]
                for g, h in sorted(self.heaps.items()) if h}


def picks(rows: Sequence[dict[str, Any]], per_group: int, seed: int
          ) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """``(source, bucket) → rows`` first in the seeded order (:class:`Picker` over a list)."""
    p = Picker(per_group, seed)
    p.add(rows)
    return p.result()


class Extremes:
    """The ``n`` longest and ``n`` shortest samples (ties by key), fed a batch at a time: each
    batch's own top ``n`` by an Arrow sort, merged with the ones so far."""

    def __init__(self, n: int):
        self.n = n
        self.longest: list[dict[str, Any]] = []
        self.shortest: list[dict[str, Any]] = []

    @staticmethod
    def _order(r: dict[str, Any]) -> tuple[float, str]:
        return float(r.get("duration") or 0), str(r["key"])

    def add(self, rows: Sequence[dict[str, Any]]) -> None:
        self.longest = heapq.nlargest(self.n, [*self.longest, *rows], key=self._order)
        self.shortest = heapq.nsmallest(self.n, [*self.shortest, *rows], key=self._order)

    def add_batch(self, batch: Any) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if self.n <= 0 or batch.num_rows == 0:
            return
        dur = batch.column("duration")
        dur = pc.fill_null(pc.cast(dur, pa.float64()), 0.0) if not pa.types.is_null(
            dur.type) else pa.array(np.zeros(batch.num_rows))
        t = pa.table({"d": dur, "k": pc.cast(batch.column("key"), pa.string())})
        for order, keep in (("descending", "longest"), ("ascending", "shortest")):
            idx = pc.sort_indices(t, sort_keys=[("d", order), ("k", order)])[: self.n]
            rows = batch.take(idx).to_pylist()
            if keep == "longest":
                self.longest = heapq.nlargest(self.n, [*self.longest, *rows], key=self._order)
            else:
                self.shortest = heapq.nsmallest(self.n, [*self.shortest, *rows],
                                                key=self._order)

    def result(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        return self.longest, self.shortest


def extremes(rows: Sequence[dict[str, Any]], n: int) -> tuple[list[dict], list[dict]]:
    """The ``n`` longest and ``n`` shortest samples (ties by key)."""
    e = Extremes(n)
    e.add(rows)
    return e.result()


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


def build_gallery(root: str, out: str, picked: dict[tuple[str, str], list[dict[str, Any]]],
                  longest: Sequence[dict[str, Any]], shortest: Sequence[dict[str, Any]],
                  dup_groups: Sequence[dict[str, Any]], dup_rows: dict[str, dict[str, Any]],
                  reject_examples: Sequence[dict[str, Any]], cfg: Any) -> dict[str, Any]:
    """The gallery section of the report (``cfg``: ``AuditConfig.gallery``) from what the
    streaming pass chose (``picked``, ``longest``, ``shortest``; ``dup_rows``: the rows of the
    listed duplicate groups' members); writes the frames under ``out/gallery/``."""
    strip = StripWriter(root, out, cfg.frames, cfg.height, cfg.jpeg_quality)
    groups = [{"source": s, "bucket": b,
               "samples": [entry(root, r, strip, cfg.max_items) for r in chosen]}
              for (s, b), chosen in sorted(picked.items())]
    dups = []
    for g in dup_groups[: cfg.duplicate_groups]:
        members = [(g["kept"], None, "kept")] + [
            (m["key"], m["similarity"], m["signal"]) for m in g["members"][:3]]
        dups.append({"kept": g["kept"], "samples": [
            {"key": k, "similarity": sim, "signal": sig,
             "frames": strip(dup_rows[k], 2) if k in dup_rows else []}
            for k, sim, sig in members]})
    return {
        "seed": cfg.seed, "per_group": cfg.per_group,
        "groups": groups,
        "duplicates": dups,
        "longest": [entry(root, r, strip, cfg.max_items) for r in longest],
        "shortest": [entry(root, r, strip, cfg.max_items) for r in shortest],
        "rejects": list(reject_examples),
    }


def gallery_keys(dup_groups: Sequence[dict[str, Any]], cfg: Any) -> set[str]:
    """The sample keys whose rows the duplicate cards need."""
    out: set[str] = set()
    for g in dup_groups[: cfg.duplicate_groups]:
        out.add(g["kept"])
        out.update(m["key"] for m in g["members"][:3])
    return out
