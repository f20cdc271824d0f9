"""Corpus-wide duplicates: exact (same clip bytes) and near (video embeddings too similar).

Both need the whole corpus, so they run when the build finishes, over the rows of every
committed unit. Rows are visited in key order and the first of a group is kept, so the result
does not depend on how the work was split. A duplicate leaves ``samples.parquet`` and becomes a
reject row (stage ``filter``, reason ``filter:exact_duplicate`` / ``filter:near_duplicate``, the
kept key and the cosine in the detail); its bytes stay in their shard, which readers driven by
``samples.parquet`` (the loader, the exporter) never touch.

Near duplicates compare samples of the same bucket from different source videos only: a short
clip and the long sample it lies in are related by construction, not duplicates.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from longvid.annotate.config import FiltersConfig


@dataclass(frozen=True)
class Duplicate:
    key: str  # the sample that goes
    kept: str  # the sample it duplicates (kept)
    kind: str  # "exact_duplicate" | "near_duplicate"
    value: float  # 1.0 for exact, the cosine for near

    def reject_row(self, row: dict[str, Any], threshold: float | None) -> dict[str, Any]:
        if self.kind == "exact_duplicate":
            detail = f"sample {self.key}: clip bytes equal those of {self.kept} (SHA-256)"
        else:
            detail = (f"sample {self.key}: video embedding cosine {self.value:.6f} with "
                      f"{self.kept} (must be below {threshold})")
        return {"source": row.get("source"), "record_id": row.get("record_id"),
                "locator": f"{row.get('record_id')}#{self.key}", "stage": "filter",
                "reason": f"filter:{self.kind}", "detail": detail}


def _extra(row: dict[str, Any]) -> dict[str, Any]:
    extra = row.get("extra")
    if isinstance(extra, str):
        try:
            extra = json.loads(extra)
        except ValueError:
            return {}
    return extra if isinstance(extra, dict) else {}


def exact_duplicates(keys: Sequence[str], hashes: Sequence[str | None]) -> list[Duplicate]:
    """Same content hash → all but the first (in key order) are duplicates."""
    first: dict[str, str] = {}
    out = []
    for key, h in sorted(zip(keys, hashes, strict=True)):
        if not h:
            continue
        if h in first:
            out.append(Duplicate(key, first[h], "exact_duplicate", 1.0))
        else:
            first[h] = key
    return out


def near_duplicates(keys: Sequence[str], groups: Sequence[str], videos: Sequence[str],
                    embs: np.ndarray, threshold: float, block: int = 4096) -> list[Duplicate]:
    """Greedy in key order: a sample whose cosine with an already kept sample of the same group
    (bucket) and another video is at least ``threshold`` is a duplicate of the most similar one.

    ``embs``: ``[N, D]`` unit vectors (rows with no embedding are zero and never match).
    Cost: O(N × kept) dot products, done a block of kept rows at a time.
    """
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    codes = {v: n for n, v in enumerate(dict.fromkeys(videos))}
    video_code = np.asarray([codes[v] for v in videos], dtype=np.int64)
    out: list[Duplicate] = []
    kept_by_group: dict[str, list[int]] = {}
    for i in order:
        e = embs[i]
        kept = kept_by_group.setdefault(groups[i], [])
        best, best_j = -2.0, -1
        for s in range(0, len(kept), block):
            idx = np.asarray(kept[s : s + block])
            sims = embs[idx] @ e
            sims[video_code[idx] == video_code[i]] = -2.0  # same source video: related
            k = int(np.argmax(sims))
            if sims[k] > best:
                best, best_j = float(sims[k]), int(idx[k])
        if best_j >= 0 and best >= threshold and np.any(e):
            out.append(Duplicate(keys[i], keys[best_j], "near_duplicate", round(best, 6)))
        else:
            kept.append(i)
    return out


def corpus_duplicates(rows: Sequence[dict[str, Any]], cfg: FiltersConfig) -> list[Duplicate]:
    """The duplicates among samples.parquet rows (``extra`` holds ``scores.clip_sha256`` and
    ``embedding`` when the filter and embed stages ran). Exact ones first; near duplicates are
    looked for among the rest."""
    keys = [r["key"] for r in rows]
    extras = [_extra(r) for r in rows]
    out: list[Duplicate] = []
    if cfg.exact_duplicates:
        out = exact_duplicates(keys, [(x.get("scores") or {}).get("clip_sha256") for x in extras])
    if cfg.near_duplicate_cosine is not None:
        gone = {d.key for d in out}
        rest = [i for i, k in enumerate(keys) if k not in gone and extras[i].get("embedding")]
        if rest:
            embs = np.asarray([extras[i]["embedding"] for i in rest], dtype=np.float32)
            norms = np.linalg.norm(embs, axis=1, keepdims=True)
            embs = np.divide(embs, norms, out=np.zeros_like(embs), where=norms > 0)
            out += near_duplicates([keys[i] for i in rest],
                                   [str(rows[i].get("bucket")) for i in rest],
                                   [str(rows[i].get("record_id")) for i in rest],
                                   embs, cfg.near_duplicate_cosine)
    return out


def apply_duplicates(rows: list[dict[str, Any]], cfg: FiltersConfig
                     ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows kept, reject rows). A video all of whose samples are duplicates becomes one
    record-level reject row (as any rejected video is), else one row per duplicate sample."""
    dups = {d.key: d for d in corpus_duplicates(rows, cfg)}
    if not dups:
        return list(rows), []
    kept = [r for r in rows if r["key"] not in dups]
    left = {r.get("record_id") for r in kept}
    rejects: list[dict[str, Any]] = []
    folded: set[Any] = set()
    for r in sorted(rows, key=lambda r: r["key"]):
        if r["key"] not in dups:
            continue
        d, rid = dups[r["key"]], r.get("record_id")
        if rid in left:
            rejects.append(d.reject_row(r, cfg.near_duplicate_cosine))
        elif rid not in folded:
            folded.add(rid)
            n = sum(1 for x in rows if x.get("record_id") == rid)
            row = d.reject_row(r, cfg.near_duplicate_cosine)
            row["locator"] = _extra(r).get("locator") or str(rid)
            row["detail"] = f"{rid}: all {n} samples are duplicates; first: {row['detail']}"
            rejects.append(row)
    return kept, rejects


def corpus_filter(cfg: Any) -> Callable[[list[dict[str, Any]]], tuple[list, list]] | None:
    """The build's corpus-wide filter for a build config: None unless the ``filter`` stage runs
    and a duplicate filter is on."""
    f = cfg.annotate.filters
    if "filter" not in cfg.stages or not (f.exact_duplicates or f.near_duplicate_cosine):
        return None
    return lambda rows: apply_duplicates(rows, f)
