"""Planning a build from its manifest, on the driver, without holding the manifest.

The driver reads the manifest batch by batch and keeps three numbers per row (numpy arrays, no
Python object per record): a digest of the record id, a digest of the whole row, and the declared
seconds. From them it makes *units*, each a run of records of about ``units.max_unit_seconds`` of
declared video, that travel to workers as ``(unit id, manifest URI, row ranges)``; a worker reads
its own rows.

Units stay the same when the manifest grows. Every build that meets records no earlier build
planned writes a *generation*, ``plan/gen-NNNNN/part-MMMMM.parquet`` (parts of at most
``units.plan_part_rows`` rows, then ``plan/gen-NNNNN/done.json`` listing them, written last):
those records' id digests, row digests, declared seconds and ids, in the order they were packed.
So no plan file grows with the corpus; a generation without ``done.json`` was cut short before
any of its units ran and is planned again. Builds before parts wrote one file,
``plan/gen-NNNNN.parquet``, still read. A generation's units are a pure function of its records,
so a later build re-derives the committed units exactly and packs only the new records into new
units (a new generation). A record that an earlier generation holds but
whose row changed, or that left the manifest, is refused by name: its units were built from it.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from longvid import storage
from longvid.errors import ConfigError, FormatError, NotFoundError
from longvid.pipelines.config import UnitsConfig
from longvid.pipelines.row_digest import row_digests, string_digests

PLAN_DIR = "plan"
GEN_SCHEMA = pa.schema(
    [
        ("record_hash", pa.uint64()),  # digest of record_id
        ("row_digest", pa.uint64()),  # digest of the whole manifest row
        ("seconds", pa.float32()),  # declared seconds used for packing (unknown → default)
        ("record_id", pa.string()),  # for error messages only
    ]
)
_GEN_FILE = re.compile(r"/gen-(\d{5})\.parquet$")  # one file per generation (older builds)
_GEN_DONE = re.compile(r"/gen-(\d{5})/done\.json$")  # a generation written in parts
GEN_PART_ROWS = 1_000_000  # default of units.plan_part_rows: rows per generation part file
SCAN_BATCH_ROWS = 4096  # manifest rows per batch (HowTo100M rows hold ~80 texts each)
# A worker reads whole row groups: a manifest with bigger ones is copied in groups of this size
READ_GROUP_ROWS = 2048


@dataclass
class ManifestScan:
    """What the driver keeps of the manifest: uint64/float32 arrays, one entry per row."""

    uri: str
    num_rows: int
    num_bytes: int
    record_hash: np.ndarray  # uint64 [N]
    row_digest: np.ndarray  # uint64 [N]
    seconds: np.ndarray  # float32 [N]; declared_duration, NaN when unknown

    @property
    def fingerprint(self) -> str:
        """Order-independent digest of the manifest's rows (and their count)."""
        with np.errstate(over="ignore"):
            total = int(self.row_digest.sum(dtype=np.uint64))
        return f"{self.num_rows:x}-{total:016x}"


def _open_parquet(uri: str) -> pq.ParquetFile:
    try:
        if storage.is_remote(uri):
            return pq.ParquetFile(storage.open_seekable(uri))
        return pq.ParquetFile(uri)
    except FileNotFoundError:
        raise NotFoundError(f"{uri}: not found") from None
    except (pa.ArrowInvalid, OSError) as exc:
        raise FormatError(f"{uri}: not a readable Parquet file: {exc}") from None


def max_row_group_rows(uri: str) -> int:
    md = _open_parquet(uri).metadata
    return max((md.row_group(i).num_rows for i in range(md.num_row_groups)), default=0)


def scan_manifest(uri: str, batch_rows: int = SCAN_BATCH_ROWS, *,
                  rechunk_to: str | None = None) -> ManifestScan:
    """Stream the manifest once: ids, row digests and declared seconds, batch by batch.

    ``rechunk_to`` (a local path): also write the rows there, in the same order, in row groups
    of ``READ_GROUP_ROWS`` rows, so that a worker reading its unit's rows reads little more
    than them (a manifest written in one 1M-row group would be read whole by every unit)."""
    pf = _open_parquet(uri)
    n = pf.metadata.num_rows
    rec = np.empty(n, np.uint64)
    dig = np.empty(n, np.uint64)
    sec = np.empty(n, np.float32)
    at = 0
    writer = (pq.ParquetWriter(rechunk_to, pf.schema_arrow, compression="zstd")
              if rechunk_to else None)
    try:
        for batch in pf.iter_batches(batch_size=batch_rows):
            k = batch.num_rows
            rec[at : at + k] = string_digests(batch.column("record_id"))
            dig[at : at + k] = row_digests(batch)
            dur = batch.column("declared_duration").to_numpy(zero_copy_only=False)
            sec[at : at + k] = np.asarray(dur, dtype=np.float64)
            if writer is not None:
                writer.write_batch(batch, row_group_size=READ_GROUP_ROWS)
            at += k
    finally:
        if writer is not None:
            writer.close()
    size = storage.size(uri)
    return ManifestScan(uri, n, size, rec, dig, sec)


def worker_manifest(root: str, uri: str, work_dir: str | None = None) -> tuple[str, ManifestScan]:
    """Scan the manifest and return the URI the workers read their rows from: the manifest
    itself when its row groups are small, else a copy in small row groups under
    ``plan/manifest-<fingerprint>.parquet`` (written once per manifest content)."""
    if max_row_group_rows(uri) <= READ_GROUP_ROWS:
        return uri, scan_manifest(uri)
    with tempfile.TemporaryDirectory(prefix="longvid-plan-", dir=work_dir) as tmp:
        local = os.path.join(tmp, "manifest.parquet")
        scan = scan_manifest(uri, rechunk_to=local)
        copy = storage.join(root, PLAN_DIR, f"manifest-{scan.fingerprint}.parquet")
        if not storage.exists(copy):
            storage.upload_file(local, copy)
    for other in storage.list_files(storage.join(root, PLAN_DIR), ".parquet"):
        if "/manifest-" in other and other != copy:  # a copy of an earlier manifest version
            storage.delete(other)
    return copy, scan


def read_rows(uri: str, runs: list[tuple[int, int]]) -> list[dict[str, Any]]:
    """The manifest rows ``[start, stop)`` of each run, as dicts (what a worker does for its
    unit): only the row groups that hold them are read."""
    pf = _open_parquet(uri)
    md = pf.metadata
    starts = np.cumsum([0] + [md.row_group(i).num_rows for i in range(md.num_row_groups)])
    wanted = sorted(
        {
            g
            for a, b in runs
            for g in range(
                int(np.searchsorted(starts, a, "right") - 1),
                int(np.searchsorted(starts, b - 1, "right")),
            )
        }
    )
    pieces = []
    for g in wanted:
        table = pf.read_row_group(g)
        lo, hi = int(starts[g]), int(starts[g + 1])
        for a, b in runs:
            s, e = max(a, lo), min(b, hi)
            if s < e:
                pieces.append((s, table.slice(s - lo, e - s)))
    pieces.sort(key=lambda p: p[0])
    return [row for _s, t in pieces for row in t.to_pylist()]


def _ids_of_rows(uri: str, rows: np.ndarray) -> list[str]:
    """Record ids of a few manifest rows (error messages)."""
    return [r["record_id"] for r in read_rows(uri, [(int(i), int(i) + 1) for i in rows])]


# --- generations ---------------------------------------------------------------------------


def gen_uri(root: str, gen: int) -> str:
    """The single-file generation of builds before generation parts."""
    return storage.join(root, PLAN_DIR, f"gen-{gen:05d}.parquet")


def gen_dir(root: str, gen: int) -> str:
    return storage.join(root, PLAN_DIR, f"gen-{gen:05d}")


def gen_part_uri(root: str, gen: int, part: int) -> str:
    return storage.join(gen_dir(root, gen), f"part-{part:05d}.parquet")


def _generation_files(root: str) -> list[list[str]]:
    """The files of every complete generation at ``root``, in order: ``[gen-N.parquet]`` or the
    parts that ``gen-N/done.json`` lists. FormatError when they are not numbered 0..n-1."""
    try:
        files = storage.list_files(storage.join(root, PLAN_DIR))
    except NotFoundError:
        return []
    gens: dict[int, list[str]] = {}
    for f in files:
        if m := _GEN_FILE.search(f):
            gens[int(m.group(1))] = [f]
        elif m := _GEN_DONE.search(f):
            g = int(m.group(1))
            done = json.loads(storage.read_bytes(f))
            gens[g] = [gen_part_uri(root, g, p) for p in range(int(done["parts"]))]
    if sorted(gens) != list(range(len(gens))):
        raise FormatError(f"{root}/{PLAN_DIR}: generation files are not numbered 0..n-1")
    return [gens[g] for g in range(len(gens))]


def _read_part(uri: str, columns: list[str]) -> pa.Table:
    return pq.read_table(pa.BufferReader(storage.read_bytes(uri)), columns=columns)


def read_generations(root: str) -> list[pa.Table]:
    """Every generation at ``root``, in order (without the record_id column), read part by part:
    only the three numeric columns of one part at a time besides what is kept."""
    cols = ["record_hash", "row_digest", "seconds"]
    out = []
    for parts in _generation_files(root):
        tables = [_read_part(p, cols) for p in parts]
        out.append(pa.concat_tables(tables) if tables else GEN_SCHEMA.empty_table().select(cols))
    return out


def _gen_record_ids(root: str, gen: int, positions: np.ndarray) -> list[str]:
    """Record ids at ``positions`` of generation ``gen`` (error messages): reads only the parts
    that hold them."""
    want = {int(p) for p in positions}
    found: dict[int, str] = {}
    at = 0
    for part in _generation_files(root)[gen]:
        ids = _read_part(part, ["record_id"]).column(0)
        for p in [p for p in want if at <= p < at + len(ids)]:
            found[p] = ids[p - at].as_py()
        at += len(ids)
        if len(found) == len(want):
            break
    return [found[int(p)] for p in positions]


# --- units ---------------------------------------------------------------------------------


@dataclass
class Unit:
    """One work unit: a few hundred records at most, never one object per record."""

    unit_id: str
    generation: int
    runs: list[tuple[int, int]]  # manifest row ranges [start, stop)
    records: int
    seconds: float  # declared (unknown counted as units.unknown_seconds)


def pack_offsets(seconds: np.ndarray, cfg: UnitsConfig) -> np.ndarray:
    """Start offsets of the units packed from ``seconds`` in order: a unit closes before a record
    that would take it past ``max_unit_seconds`` or ``videos_per_unit`` (a long video is a unit
    alone). Ends with len(seconds)."""
    starts = [0]
    total, count = 0.0, 0
    limit = cfg.max_unit_seconds
    chunk = 65536  # Python floats for one chunk at a time, not one per record at once
    for lo in range(0, len(seconds), chunk):
        for i, s in enumerate(seconds[lo : lo + chunk].tolist(), lo):
            if count and (count >= cfg.videos_per_unit
                          or (limit is not None and total + s > limit)):
                starts.append(i)
                total, count = 0.0, 0
            total += s
            count += 1
    if len(seconds):
        starts.append(len(seconds))
    return np.asarray(starts if len(seconds) else [0], np.int64)


def unit_id_of(record_hashes: np.ndarray) -> str:
    """Names the unit's shards, parts and commit marker: a digest of its records' id digests."""
    return "u" + hashlib.sha256(np.sort(record_hashes).tobytes()).hexdigest()[:15]


def _runs(rows: np.ndarray) -> list[tuple[int, int]]:
    rows = np.sort(rows)
    if not len(rows):
        return []
    breaks = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [len(rows)]])
    return [(int(rows[a]), int(rows[b - 1]) + 1) for a, b in zip(starts, ends, strict=True)]


@dataclass
class Plan:
    manifest: ManifestScan
    units: list[Unit]
    generations: int  # including a new one, when there is one
    new_generation: pa.Table | None = field(default=None, repr=False)  # to write before running
    new_rows: np.ndarray | None = field(default=None, repr=False)  # manifest rows of new records

    all_new: bool = False  # every manifest row is new (then new_rows is not materialised)

    @property
    def new_records(self) -> int:
        if self.new_rows is None:
            return 0
        return self.manifest.num_rows if self.all_new else int(self.new_rows.size)

    @property
    def records(self) -> int:
        return self.manifest.num_rows


def _packing_seconds(seconds: np.ndarray, cfg: UnitsConfig) -> np.ndarray:
    s = seconds.astype(np.float32).copy()
    s[~np.isfinite(s) | (s < 0)] = cfg.unknown_seconds
    return s


def _check_unique(scan: ManifestScan) -> None:
    sorted_h = np.sort(scan.record_hash)
    dup = sorted_h[1:][sorted_h[1:] == sorted_h[:-1]][:1]
    del sorted_h
    if dup.size:
        rows = np.flatnonzero(scan.record_hash == dup[0])[:2]
        ids = _ids_of_rows(scan.uri, rows)
        raise FormatError(
            f"{scan.uri}: rows {rows[0]} and {rows[1]} have the same record id "
            f"({ids[0]!r}, {ids[1]!r}); record ids must be unique in a manifest"
        )


def make_plan(root: str | None, scan: ManifestScan, cfg: UnitsConfig) -> Plan:
    """Units of every earlier generation (from ``root``'s plan files), then the new records'."""
    gens = read_generations(root) if root is not None else []
    _check_unique(scan)
    # only an append build needs the hashes sorted (to find the earlier generations' records)
    order = np.argsort(scan.record_hash, kind="stable") if gens else None
    sorted_h = scan.record_hash[order] if gens else None
    planned = np.zeros(scan.num_rows, bool)
    units: list[Unit] = []
    for g, table in enumerate(gens):
        hashes = table.column("record_hash").to_numpy()
        pos = np.searchsorted(sorted_h, hashes)
        pos_c = np.minimum(pos, max(len(sorted_h) - 1, 0))
        found = (pos < len(sorted_h)) & (sorted_h[pos_c] == hashes) if len(sorted_h) else (
            np.zeros(len(hashes), bool))
        if not found.all():
            missing = np.flatnonzero(~found)
            ids = _gen_record_ids(root, g, missing[:3])  # type: ignore[arg-type]
            raise ConfigError(
                f"{scan.uri}: record {ids[0]!r} was built by an earlier run at {root} (plan "
                f"generation {g}) but is no longer in the manifest ({missing.size} such "
                "record(s)); removing records from a built manifest is refused — use a new "
                "output root, or --restart"
            )
        rows = order[pos]
        changed = np.flatnonzero(scan.row_digest[rows] != table.column("row_digest").to_numpy())
        if changed.size:
            ids = _ids_of_rows(scan.uri, rows[changed[:1]])
            raise ConfigError(
                f"{scan.uri}: record {ids[0]!r} (row {int(rows[changed[0]])}) differs from the "
                f"row an earlier run at {root} built ({changed.size} changed record(s)); a "
                "built record cannot change — use a new output root, or --restart"
            )
        planned[rows] = True
        units += _units_of(g, hashes, table.column("seconds").to_numpy(), rows, cfg)
    del order, sorted_h
    every = not planned.any()  # a first build: no copies of the scan's arrays
    new_rows = None if every else np.flatnonzero(~planned)
    new_table = None
    if scan.num_rows and (every or new_rows.size):  # type: ignore[union-attr]
        g = len(gens)

        def pick(a: np.ndarray) -> np.ndarray:
            return a if every else a[new_rows]

        secs = _packing_seconds(pick(scan.seconds), cfg)
        units += _units_of(g, pick(scan.record_hash), secs, new_rows, cfg)
        new_table = pa.table(
            {
                "record_hash": pa.array(pick(scan.record_hash), pa.uint64()),
                "row_digest": pa.array(pick(scan.row_digest), pa.uint64()),
                "seconds": pa.array(secs, pa.float32()),
            }
        )
    if every and scan.num_rows:
        new_rows = np.arange(0)  # marks "all rows" below without an array of them
    return Plan(scan, units, len(gens) + (new_table is not None), new_table,
                new_rows if new_table is not None else None, all_new=every)


def _units_of(gen: int, hashes: np.ndarray, seconds: np.ndarray, rows: np.ndarray | None,
              cfg: UnitsConfig) -> list[Unit]:
    """Units packed from one generation's records; ``rows`` are their manifest rows (None: the
    records are the manifest's rows in order)."""
    offsets = pack_offsets(seconds, cfg)
    return [
        Unit(unit_id_of(hashes[a:b]), gen,
             [(int(a), int(b))] if rows is None else _runs(rows[a:b]),
             int(b - a), float(seconds[a:b].sum()))
        for a, b in zip(offsets[:-1], offsets[1:], strict=True)
    ]


def write_new_generation(root: str, plan: Plan, part_rows: int = GEN_PART_ROWS) -> None:
    """Publish the new generation (before any of its units runs): parts of at most
    ``part_rows`` rows, written as the record ids are read again from the manifest (one column,
    batch by batch), then ``done.json``."""
    if plan.new_generation is None or plan.new_rows is None:
        return
    if part_rows < 1:
        raise ValueError(f"part_rows must be >= 1, got {part_rows}")
    scan, new_rows, gen = plan.manifest, plan.new_rows, plan.generations - 1
    numbers = plan.new_generation
    pending: list[pa.Array] = []  # record ids not yet in a part
    held = written = parts = 0

    def flush(rows: int) -> None:
        nonlocal pending, held, written, parts
        ids = pa.chunked_array(pending, pa.string()).combine_chunks() if pending else \
            pa.array([], pa.string())
        table = numbers.slice(written, rows).append_column("record_id", ids.slice(0, rows))
        buf = io.BytesIO()
        pq.write_table(table.cast(GEN_SCHEMA), buf, compression="zstd")
        storage.write_bytes(gen_part_uri(root, gen, parts), buf.getvalue())
        pending = [ids.slice(rows)] if len(ids) > rows else []
        held -= rows
        written += rows
        parts += 1

    pf = _open_parquet(scan.uri)
    at = 0
    for batch in pf.iter_batches(batch_size=65536, columns=["record_id"]):
        lo, hi = at, at + batch.num_rows
        if plan.all_new:
            ids = batch.column(0)
        else:
            sel = new_rows[(new_rows >= lo) & (new_rows < hi)] - lo
            ids = batch.column(0).take(pa.array(sel))
        at = hi
        pending.append(ids.cast(pa.string()))
        held += len(ids)
        while held >= part_rows:
            flush(part_rows)
    if held or not parts:
        flush(held)
    if written != numbers.num_rows:
        raise FormatError(f"{scan.uri}: the manifest changed while the build planned it "
                          f"({written} record ids for {numbers.num_rows} planned records)")
    done = {"parts": parts, "rows": written}
    storage.write_bytes(storage.join(gen_dir(root, gen), "done.json"), json.dumps(done).encode())
