"""The build's commit log: what a unit writes, in which order, and how a rerun reads it back.

Layout under the output root::

    build.json                        what this build is (format, content hash of the config)
    plan/gen-NNNNN.parquet            the records each build generation packed (see plan.py)
    shards/<unit_id>-NNNNN.tar        the unit's WebDataset shards
    samples.parquet/<unit_id>.parquet the unit's sample rows   } Parquet datasets: a folder of
    rejects.parquet/<unit_id>.parquet the unit's reject rows   } parts, read by pyarrow.dataset,
    videos.parquet/<unit_id>.parquet  per-video probe results  } DuckDB, pandas, Ray read_parquet
    ledger/<unit_id>.json             the commit marker: shards (sizes, checksums), counts, stats

A worker publishes the shards and parts first (each atomically), the marker last: the marker is
the commit. A rerun LISTs ``ledger/`` (one request per 1,000 units on S3) and runs the units
without a marker; it never reads a marker or touches a shard to decide. Files of a unit with no
marker are leftovers of an interrupted attempt; a retry rewrites them with the same bytes, and
finalize removes any that no marker lists.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from longvid import storage
from longvid.errors import ConfigError, NotFoundError, StorageError

log = logging.getLogger(__name__)

BUILD_FILE = "build.json"
LEDGER_DIR = "ledger"
SHARDS_DIR = "shards"
PLAN_DIR = "plan"
BUILD_FORMAT = "longvid-build-v2"
# the per-unit Parquet datasets (folders of parts named <unit_id>.parquet)
SAMPLES_PARTS = "samples.parquet"
REJECTS_PARTS = "rejects.parquet"
VIDEOS_PARTS = "videos.parquet"
PART_TABLES = (SAMPLES_PARTS, REJECTS_PARTS, VIDEOS_PARTS)
INGEST_REJECTS_PART = "ingest.parquet"  # rejects.parquet/ingest.parquet: carried over at finalize
CORPUS_REJECTS_PART = "corpus-filter.parquet"  # rejects of the corpus-wide filter
EMPTY_PART = "empty.parquet"  # the zero-row part of a dataset that has no other part
PARTS_INDEX = "parts.json"  # written by finalize: every part, with its row count
# what finalize writes; removed (with the rest) by --restart
FINAL_FILES = ("index.json", "summary.json", PARTS_INDEX)


# videos.parquet: what the probe and the decode pass measured, per record (the audit reads it)
VIDEOS_SCHEMA = pa.schema(
    [
        ("record_id", pa.string()),
        ("accepted", pa.bool_()),
        ("samples", pa.int64()),
        ("duration", pa.float64()),
        ("fps", pa.float64()),
        ("num_frames", pa.int64()),
        ("cuts", pa.list_(pa.float64())),
        ("declared_mismatch", pa.list_(pa.string())),
    ]
)


@dataclass
class CommitMarker:
    """One committed unit. Small: no per-sample rows (those are in the unit's parts)."""

    unit_id: str
    shards: list[dict[str, Any]]  # index entries (url, nsamples, filesize, sha256), in order
    parts: dict[str, str]  # dataset folder → part url relative to the root (absent: no rows)
    counts: dict[str, int]  # records, samples, rejects
    stats: dict[str, Any] = field(default_factory=dict)  # by_source, stage_seconds, node_id...
    generation: int = 0

    def to_json(self) -> bytes:
        return (json.dumps(asdict(self), sort_keys=True, ensure_ascii=False) + "\n").encode()

    @classmethod
    def from_json(cls, data: bytes, where: str) -> CommitMarker:
        try:
            d = json.loads(data)
            return cls(
                **{k: d[k] for k in ("unit_id", "shards", "parts", "counts")},
                stats=d.get("stats", {}),
                generation=int(d.get("generation", 0)),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"{where}: not a commit marker ({exc})") from None


def marker_uri(root: str, unit_id: str) -> str:
    return storage.join(root, LEDGER_DIR, f"{unit_id}.json")


def part_url(table: str, unit_id: str) -> str:
    """A unit's part of a dataset, relative to the root."""
    return f"{table}/{unit_id}.parquet"


def commit(root: str, marker: CommitMarker) -> None:
    """Write the unit's marker (atomically). Call only after its shards and parts are published."""
    storage.write_bytes(marker_uri(root, marker.unit_id), marker.to_json())


def read_marker(root: str, unit_id: str) -> CommitMarker | None:
    try:
        data = storage.read_bytes(marker_uri(root, unit_id))
    except NotFoundError:
        return None
    return CommitMarker.from_json(data, marker_uri(root, unit_id))


def _list(root: str, sub: str, suffix: str | None = None) -> list[str]:
    try:
        return storage.list_files(storage.join(root, sub), suffix)
    except NotFoundError:
        return []


def committed_ids(root: str) -> set[str]:
    """The units with a marker: one paginated LIST, no GET."""
    return {u.rsplit("/", 1)[-1][: -len(".json")] for u in _list(root, LEDGER_DIR, ".json")}


def read_markers(root: str, unit_ids: Iterable[str], threads: int = 16) -> dict[str, CommitMarker]:
    """The markers of ``unit_ids`` (GETs in parallel; finalize's job, not the resume's). An
    unreadable marker (cannot happen with atomic writes, but a disk can lie) is logged and left
    out, so its unit is redone."""

    def one(uid: str) -> tuple[str, CommitMarker | None]:
        try:
            return uid, read_marker(root, uid)
        except ValueError as exc:
            log.warning("ignoring %s", exc)
            return uid, None

    with ThreadPoolExecutor(max_workers=threads) as pool:
        return {uid: m for uid, m in pool.map(one, sorted(unit_ids)) if m is not None}


def _hidden_local_files(root: str, sub: str) -> list[str]:
    """Dot-prefixed files (temp files of interrupted atomic writes) under a local folder."""
    if storage.is_remote(root):
        return []
    base = Path(root) / sub
    found: list[str] = []
    if base.is_dir():
        for dirpath, _dirs, files in os.walk(base):
            found += [os.path.join(dirpath, f) for f in files if f.startswith(".")]
    return sorted(found)


def _unit_of(name: str) -> str:
    """The unit id a shard or part file name starts with."""
    base = name.rsplit("/", 1)[-1]
    return base.split("-", 1)[0].split(".", 1)[0]


def sweep(root: str, markers: dict[str, CommitMarker], planned: set[str]) -> tuple[list[str], list[str]]:
    """Reconcile the files with the markers, with one LIST per folder (sizes come with it).

    Returns ``(removed, damaged)``: files that no marker of a planned unit lists (leftovers of an
    interrupted attempt, temp files) are deleted; a planned unit whose marker lists a shard that
    is gone or has another size loses its marker (``damaged``) so that it is run again."""
    keep = {uid: m for uid, m in markers.items() if uid in planned}
    shard_sizes = storage.list_sizes(storage.join(root, SHARDS_DIR))
    base = storage.join(root, "")
    damaged = []
    for uid, m in sorted(keep.items()):
        for s in m.shards:
            if shard_sizes.get(storage.join(root, s["url"])) != int(s["filesize"]):
                damaged.append(uid)
                break
    for uid in damaged:
        storage.delete(marker_uri(root, uid))
        del keep[uid]
    listed = {storage.join(root, s["url"]) for m in keep.values() for s in m.shards}
    listed |= {storage.join(root, p) for m in keep.values() for p in m.parts.values()}
    removed = [u for u in shard_sizes if u not in listed]
    for table in PART_TABLES:
        for uri in _list(root, table, ".parquet"):
            name = uri[len(base):] if uri.startswith(base) else uri
            if name.split("/")[-1] in (INGEST_REJECTS_PART, CORPUS_REJECTS_PART, EMPTY_PART):
                continue
            if uri not in listed:
                removed.append(uri)
    removed += [marker_uri(root, uid) for uid in markers if uid not in planned]
    for sub in (SHARDS_DIR, LEDGER_DIR, *PART_TABLES):
        removed += _hidden_local_files(root, sub)
    for uri in removed:
        storage.delete(uri)
    return removed, damaged


def read_build_file(root: str) -> dict[str, Any] | None:
    try:
        return json.loads(storage.read_bytes(storage.join(root, BUILD_FILE)))
    except NotFoundError:
        return None


def check_or_start(root: str, identity: dict[str, Any], restart: bool) -> bool:
    """Compare this build's identity with the one recorded at ``root``.

    Returns True when the build resumes (or appends to) an earlier one. A different config is
    refused (ConfigError naming what changed) unless ``restart``, which wipes the earlier build
    first. The manifest may grow (plan.py checks its records); it is not part of the identity.
    """
    if restart:
        wipe(root)
    old = read_build_file(root)
    if old is not None:
        if old.get("format") != BUILD_FORMAT:
            raise ConfigError(
                f"{root}: holds a build in format {old.get('format')!r}, not {BUILD_FORMAT!r}; "
                "use a new output root, or --restart"
            )
        changed = [k for k in identity if old.get(k) != identity[k]]
        if changed:
            raise ConfigError(
                f"{root}: holds a build with a different {', '.join(changed)} "
                f"({', '.join(f'{k}: {old.get(k)!r} → {identity[k]!r}' for k in changed)}); "
                "use a new output root, or --restart to delete it and build again"
            )
        return True
    if _list(root, LEDGER_DIR, ".json"):
        raise ConfigError(f"{root}: has commit markers but no {BUILD_FILE}; use --restart")
    data = json.dumps({"format": BUILD_FORMAT, **identity}, indent=1, sort_keys=True) + "\n"
    storage.write_bytes(storage.join(root, BUILD_FILE), data.encode())
    return False


def wipe(root: str) -> None:
    """Remove everything a build writes under ``root`` (not the ingest output)."""
    for sub in (LEDGER_DIR, SHARDS_DIR, PLAN_DIR, *PART_TABLES):
        try:
            files = _list(root, sub)
        except StorageError:  # an older layout's single file of that name
            storage.delete(storage.join(root, sub))
            continue
        for uri in files + _hidden_local_files(root, sub):
            storage.delete(uri)
    for name in (*FINAL_FILES, BUILD_FILE):
        storage.delete(storage.join(root, name))
