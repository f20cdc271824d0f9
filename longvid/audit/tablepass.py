"""One streaming pass over the sample table for what the shard tasks, the accounting, the
licence and annotation sections and the gallery need, a batch at a time (no row list on the
driver). What it keeps is bounded by the shards, the records, the sources and the gallery's
sizes, never by a Python object per sample:

- which Parquet parts hold each shard's rows (a shard task reads its own rows from them);
- the clip sizes that more than one clip has (only those clips can be byte-equal, so only
  those need a hash when the table carries none), as a numpy array;
- per record: samples and seconds (an Arrow table re-aggregated as batches arrive);
- per (source, licence in ``extra``): samples and seconds; rows with a caption / embedding;
- the gallery's seeded picks and the longest and shortest samples (bounded heaps);
- rows whose shard the index does not list: counted, the first few kept.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from longvid.audit.gallery import Extremes, Picker
from longvid.audit.scan import BATCH_ROWS, iter_part_batches
from longvid.shards.manifest import parse_extra

PASS_COLUMNS = ["key", "shard", "source", "bucket", "record_id", "video_id", "duration",
                "width", "height", "caption", "extra", "members", "embedding"]
ROW_COLUMNS = ["key", "shard", "source", "bucket", "record_id", "video_id", "duration", "width",
               "height", "caption", "members"]  # what a gallery card or a listed row shows


@dataclass
class TablePass:
    rows: int = 0
    shard_parts: dict[str, list[str]] = field(default_factory=dict)
    shared_sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    want_embeddings: bool = False  # some row lists KEY.emb.npy but carries no vector
    hashed: int = 0  # rows whose extra carries clip_sha256
    with_caption: int = 0
    with_embedding: int = 0
    licences: dict[tuple[str, str | None], list[float]] = field(default_factory=dict)
    records: pa.Table | None = None  # record_id, source (first seen), samples, seconds
    not_in_index: int = 0
    not_in_index_rows: list[dict[str, Any]] = field(default_factory=list)
    picks: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    longest: list[dict[str, Any]] = field(default_factory=list)
    shortest: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def _str_list(col: pa.Array) -> list[str]:
    return pc.fill_null(pc.cast(col, pa.string()), "None").to_pylist() \
        if not pa.types.is_null(col.type) else ["None"] * len(col)


def _mp4_sizes(members: pa.Array) -> np.ndarray:
    """``[n]`` int64: each row's mp4 member size, -1 without one."""
    n = len(members)
    out = np.full(n, -1, np.int64)
    if pa.types.is_null(members.type) or n == 0:
        return out
    flat = pc.list_flatten(members)
    if len(flat) == 0:
        return out
    parents = pc.list_parent_indices(members).to_numpy(zero_copy_only=False)
    is_mp4 = pc.fill_null(pc.equal(pc.struct_field(flat, "ext"), "mp4"), False).to_numpy(
        zero_copy_only=False)
    sizes = pc.struct_field(flat, "size").to_numpy(zero_copy_only=False)
    # the first mp4 member of a row, as _clip_size did: later ones written first, first wins
    out[parents[is_mp4][::-1]] = sizes[is_mp4][::-1]
    return out


def _has_member(members: pa.Array, ext: str) -> np.ndarray:
    n = len(members)
    if pa.types.is_null(members.type) or n == 0:
        return np.zeros(n, bool)
    flat = pc.list_flatten(members)
    if len(flat) == 0:
        return np.zeros(n, bool)
    parents = pc.list_parent_indices(members).to_numpy(zero_copy_only=False)
    hit = pc.fill_null(pc.equal(pc.struct_field(flat, "ext"), ext), False).to_numpy(
        zero_copy_only=False)
    return np.bincount(parents[hit], minlength=n) > 0


def table_pass(uri: str, index_urls: set[str], gallery: Any | None, max_listed: int,
               batch_rows: int = BATCH_ROWS) -> TablePass:
    """One pass over the sample table at ``uri``; ``gallery`` (``AuditConfig.gallery``, None
    when off) sizes the picks and extremes; ``max_listed`` caps the rows kept as examples."""
    started = time.monotonic()
    out = TablePass()
    parts: dict[str, dict[str, None]] = defaultdict(dict)  # shard → parts, in order met
    sizes: list[np.ndarray] = []
    licences: dict[tuple[str, str | None], list[float]] = {}
    pending: list[pa.Table] = []
    records = None
    picker = Picker(gallery.per_group, gallery.seed) if gallery is not None else None
    extremes = Extremes(gallery.extremes) if gallery is not None else None
    index_set = pa.array(sorted(index_urls), pa.string())
    for part, b in iter_part_batches(uri, PASS_COLUMNS, batch_rows):
        n = b.num_rows
        out.rows += n
        shard = pc.cast(b.column("shard"), pa.string()) if not pa.types.is_null(
            b.column("shard").type) else pa.nulls(n, pa.string())
        for s in pc.unique(shard).to_pylist():
            parts[str(s)][part] = None
        outside = pc.invert(pc.fill_null(pc.is_in(shard, value_set=index_set), False))
        n_out = int(pc.sum(outside).as_py() or 0)
        if n_out:
            out.not_in_index += n_out
            room = max_listed - len(out.not_in_index_rows)
            if room > 0:
                out.not_in_index_rows += b.filter(outside).select(["key", "shard"]).slice(
                    0, room).to_pylist()
        members = b.column("members")
        sizes.append(_mp4_sizes(members))
        has_emb_member = _has_member(members, "emb.npy")
        emb_col = b.column("embedding")
        has_vec = ~np.asarray(emb_col.is_null().to_numpy(zero_copy_only=False)) \
            if not pa.types.is_null(emb_col.type) else np.zeros(n, bool)
        extras = [parse_extra(e) for e in b.column("extra").to_pylist()] \
            if not pa.types.is_null(b.column("extra").type) else [{}] * n
        sources = _str_list(b.column("source"))
        dur = pc.fill_null(pc.cast(b.column("duration"), pa.float64()), 0.0).to_numpy(
            zero_copy_only=False) if not pa.types.is_null(b.column("duration").type) \
            else np.zeros(n)
        for i, e in enumerate(extras):
            vec = has_vec[i] or bool(e.get("embedding"))
            out.with_embedding += bool(has_emb_member[i] or vec)
            if has_emb_member[i] and not vec:
                out.want_embeddings = True
            if (e.get("scores") or {}).get("clip_sha256"):
                out.hashed += 1
            lic = e.get("licence") or None
            cell = licences.setdefault((sources[i], lic), [0, 0.0])
            cell[0] += 1
            cell[1] += float(dur[i])
        cap = b.column("caption")
        if not pa.types.is_null(cap.type):
            out.with_caption += int(pc.sum(pc.fill_null(
                pc.greater(pc.utf8_length(cap), 0), False)).as_py() or 0)
        pending.append(pa.table({
            "record_id": pc.fill_null(pc.cast(b.column("record_id"), pa.string()), "None")
            if not pa.types.is_null(b.column("record_id").type) else pa.array(["None"] * n),
            "source": pa.array(sources, pa.string()),
            "samples": pa.array(np.ones(n, np.int64)),
            "seconds": pa.array(dur, pa.float64())}))
        if sum(t.num_rows for t in pending) > 4 * batch_rows:
            records = _per_record(records, pending)
            pending = []
        if picker is not None:
            picker.add_batch(b.select(ROW_COLUMNS))
            extremes.add_batch(b.select(ROW_COLUMNS))
    out.records = _per_record(records, pending)
    out.shard_parts = {s: list(p) for s, p in parts.items()}
    all_sizes = np.concatenate(sizes) if sizes else np.zeros(0, np.int64)
    all_sizes = all_sizes[all_sizes >= 0]
    values, counts = np.unique(all_sizes, return_counts=True)
    out.shared_sizes = values[counts > 1]
    out.licences = licences
    if picker is not None:
        out.picks = picker.result()
        out.longest, out.shortest = extremes.result()
    out.seconds = time.monotonic() - started
    return out


def _per_record(records: pa.Table | None, pending: list[pa.Table]) -> pa.Table:
    tables = ([records] if records is not None else []) + pending
    if not tables:
        return pa.table({"record_id": pa.array([], pa.string()),
                         "source": pa.array([], pa.string()),
                         "samples": pa.array([], pa.int64()),
                         "seconds": pa.array([], pa.float64())})
    # ordered aggregation: "first" keeps the source of the first row met, as before
    agg = pa.concat_tables(tables).group_by("record_id", use_threads=False).aggregate(
        [("source", "first"), ("samples", "sum"), ("seconds", "sum")])
    return agg.rename_columns({"source_first": "source", "samples_sum": "samples",
                               "seconds_sum": "seconds"}).select(
        ["record_id", "source", "samples", "seconds"])


def licence_cells(tp: TablePass, from_shards: Counter, seconds_from_shards: Counter
                  ) -> dict[tuple[str, str], list[float]]:
    """(source, licence) → [samples, seconds]: the table's ``extra.licence`` where present,
    else what the shard tasks read in KEY.json (``from_shards``, keyed (source, licence)), the
    rest ``unknown``."""
    out: dict[tuple[str, str], list[float]] = {}
    missing: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
    for (src, lic), (n, sec) in tp.licences.items():
        if lic is None:
            missing[src][0] += n
            missing[src][1] += sec
            continue
        cell = out.setdefault((src, str(lic)), [0, 0.0])
        cell[0] += n
        cell[1] += sec
    for (src, lic), n in sorted(from_shards.items()):
        cell = out.setdefault((src, lic), [0, 0.0])
        cell[0] += n
        cell[1] += seconds_from_shards[(src, lic)]
        missing[src][0] -= n
        missing[src][1] -= seconds_from_shards[(src, lic)]
    for src, (n, sec) in missing.items():
        if n > 0:
            cell = out.setdefault((src, "unknown"), [0, 0.0])
            cell[0] += n
            cell[1] += max(sec, 0.0)
    return out
