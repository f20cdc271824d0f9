"""The report's duplicates: the duplicates table of :mod:`longvid.dedup` over the accepted
samples (the same search the build's filter runs), grouped by the sample kept, and the ones the
build already removed (reject rows ``filter:*_duplicate``, grouped by the kept sample).

Signals: *exact* (equal clip bytes, SHA-256), *embedding* (cosine at least the threshold, same
bucket, other video) and *fingerprint* (perceptual copies, other video); each group says which
signals joined each member.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from longvid.dedup import Samples
from longvid.dedup.fingerprint import FRAMES, from_hex

_KEPT = (re.compile(r"those of (\S+?)[\s(]"), re.compile(r"with (\S+?) \("),
         re.compile(r"a copy of (\S+?) \("))


def corpus_samples(rows: Sequence[dict[str, Any]], extras: Sequence[dict[str, Any]],
                   facts: dict[str, dict[str, Any]]) -> Samples:
    """The dedup columns of the accepted samples: hashes and embeddings from samples.parquet or,
    when it lacks them, from what the shard pass read (KEY.mp4's SHA-256, KEY.emb.npy)."""
    n = len(rows)
    keys = np.asarray([r["key"] for r in rows], dtype=object)
    records = np.asarray([str(r.get("record_id")) for r in rows], dtype=object)
    buckets = np.asarray([str(r.get("bucket")) for r in rows], dtype=object)
    hashes = np.asarray([facts.get(r["key"], {}).get("clip_sha256")
                         or (e.get("scores") or {}).get("clip_sha256")
                         for r, e in zip(rows, extras, strict=True)], dtype=object)
    vecs = [e.get("embedding") or facts.get(r["key"], {}).get("embedding")
            for r, e in zip(rows, extras, strict=True)]
    dim = Counter(len(v) for v in vecs if v).most_common(1)
    emb = None
    if dim:
        emb = np.zeros((n, dim[0][0]), np.float32)
        for i, v in enumerate(vecs):
            if v and len(v) == dim[0][0]:
                emb[i] = v
    fp_h = np.zeros((n, FRAMES), np.uint64)
    fp_c = np.zeros((n, FRAMES, 3), np.uint8)
    valid = np.zeros(n, bool)
    for i, e in enumerate(extras):
        fp = from_hex(e.get("fingerprint"))
        if fp is not None:
            fp_h[i], fp_c[i], valid[i] = fp[0], fp[1], True
    has_fp = bool(valid.any())
    return Samples(keys, records, buckets, content_hashes=hashes, embeddings=emb,
                   fp_hashes=fp_h if has_fp else None, fp_colours=fp_c if has_fp else None,
                   fp_valid=valid if has_fp else None)


def groups(table: pa.Table, limit: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """(the first ``limit`` groups, largest first, each ``{kept, kept_record, signals,
    members: [{key, record_id, similarity, cosine, hamming, signal}]}``; duplicates per
    signal)."""
    by_kept: dict[str, list[dict[str, Any]]] = defaultdict(list)
    kept_record: dict[str, str] = {}
    per_signal: Counter = Counter()
    for d in table.to_pylist():
        by_kept[d["kept_key"]].append({k: d[k] for k in ("key", "record_id", "similarity",
                                                         "cosine", "hamming", "signal")})
        kept_record[d["kept_key"]] = d["kept_record_id"]
        for s in d["signal"].split("+"):
            per_signal[s] += 1
    ordered = sorted(by_kept.items(), key=lambda kv: (-len(kv[1]), kv[0]))[:limit]
    out = []
    for kept, members in ordered:
        for m in members:
            for f in ("similarity", "cosine"):
                if m[f] is not None:
                    m[f] = round(float(m[f]), 6)
        out.append({"kept": kept, "kept_record": kept_record[kept],
                    "signals": sorted({s for m in members for s in m["signal"].split("+")}),
                    "members": members})
    return out, dict(sorted(per_signal.items()))


def removed_by_build(rejects: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The build's duplicate rejects grouped by the kept sample (named in the detail)."""
    found: dict[tuple[str, str | None], list[str]] = defaultdict(list)
    for r in rejects:
        reason = str(r.get("reason") or "")
        if not reason.endswith("_duplicate"):
            continue
        loc = str(r.get("locator") or "")
        key = loc.rsplit("#", 1)[1] if "#" in loc else loc
        kept = None
        for pattern in _KEPT:
            m = pattern.search(str(r.get("detail") or "") + " ")
            if m:
                kept = m.group(1)
                break
        found[(reason.removeprefix("filter:"), kept)].append(key)
    return [{"kind": kind, "kept": kept, "removed": sorted(keys)}
            for (kind, kept), keys in sorted(found.items(), key=lambda kv: str(kv[0]))]
