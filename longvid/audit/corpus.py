"""Everything a built corpus root holds besides the shard bytes, read once by the audit driver.

A root written by ``longvid build`` has ``index.json``, ``samples.parquet``, ``rejects.parquet``,
``summary.json``, ``ledger/*.json`` and, when the build ingested its sources itself,
``ingest/`` (manifest, rejects and summary of the ingest). Only the first two are required; the
rest make the accounting and run sections richer and are reported as absent when missing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pyarrow as pa

from longvid import storage
from longvid.audit.scan import SampleScan, iter_batches, samples_exist, scan_samples
from longvid.dedup.fingerprint import from_bytes, to_hex
from longvid.errors import FormatError, NotFoundError
from longvid.shards import SAMPLES_SCHEMA, ShardIndex, ledger, read_index, read_table
from longvid.shards.manifest import SAMPLES_NAME, parse_extra

REJECTS_NAME = "rejects.parquet"
SUMMARY_NAME = "summary.json"
INGEST_DIR = "ingest"


@dataclass
class Corpus:
    """The tables of one built corpus (``samples`` and ``rejects`` as lists of row dicts)."""

    root: str
    index: ShardIndex
    rejects: list[dict[str, Any]]
    summary: dict[str, Any] | None = None
    ingest_summary: dict[str, Any] | None = None
    manifest: list[dict[str, Any]] | None = None  # ingest/manifest.parquet rows (no texts)
    ledger_records: dict[str, str] = field(default_factory=dict)  # record id → unit id
    ledger_videos: list[dict[str, Any]] = field(default_factory=list)  # per probed video
    shard_files: list[str] | None = None  # every file under shards/ (relative urls)

    @cached_property
    def samples(self) -> list[dict[str, Any]]:
        """Every sample row as a dict, read on first use. Only the parts of the audit that
        still need rows (the shard work lists, duplicates, gallery, accounting, leakage) read
        this; the aggregates come from :attr:`scan`."""
        uri = storage.join(self.root, SAMPLES_NAME)
        batches = list(iter_batches(uri, SAMPLES_SCHEMA.names))
        return pa.Table.from_batches(batches).to_pylist() if batches else []

    @cached_property
    def scan(self) -> SampleScan:
        """The streaming aggregates of ``samples.parquet`` (:mod:`longvid.audit.scan`), read on
        first use."""
        return scan_samples(storage.join(self.root, SAMPLES_NAME))

    @cached_property
    def extras(self) -> list[dict[str, Any]]:
        """The ``extra`` JSON of each sample row, parsed once (``{}`` when absent or
        unreadable)."""
        return [_with_embedding(parse_extra(r.get("extra")), r) for r in self.samples]


def _with_embedding(extra: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """A build keeps the video embedding in its own column; the audit's checks look for it in
    ``extra`` as older corpora have it."""
    fp = from_bytes(row.get("fingerprint"))  # likewise the fingerprint (its own column)
    if fp is not None:
        extra = {**extra, "fingerprint": to_hex(fp)}
    emb = row.get("embedding")
    if emb is None or extra.get("embedding") is not None:
        return extra
    return {**extra, "embedding": [float(x) for x in emb]}


def _json(uri: str) -> dict[str, Any] | None:
    try:
        data = storage.read_bytes(uri)
    except NotFoundError:
        return None
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"{uri}: not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise FormatError(f"{uri}: expected a JSON object")
    return doc


def _rows(uri: str, columns: list[str] | None = None) -> list[dict[str, Any]] | None:
    try:
        table = read_table(uri)
    except NotFoundError:
        return None
    if columns is not None:
        table = table.select([c for c in columns if c in table.column_names])
    return table.to_pylist()


MANIFEST_COLUMNS = [
    "record_id", "source", "video_id", "declared_duration", "declared_fps", "declared_width",
    "declared_height", "licence", "locator", "raw",
]


def _unit_videos(root: str) -> list[tuple[str, list[dict[str, Any]]]]:
    """Per committed unit: its id and the probe results of its videos (the build's
    ``videos.parquet/<unit_id>.parquet`` parts)."""
    try:
        parts = storage.list_files(storage.join(root, ledger.VIDEOS_PARTS), ".parquet")
    except NotFoundError:
        return []
    out = []
    for part in parts:
        unit_id = part.rsplit("/", 1)[-1][: -len(".parquet")]
        if part.endswith("/" + ledger.EMPTY_PART):
            continue
        out.append((unit_id, read_table(part).to_pylist()))
    return out


def load_corpus(root: str) -> Corpus:
    """Read the tables of the corpus at ``root`` (folder or ``s3://`` prefix).

    Raises NotFoundError naming the root when ``index.json`` or ``samples.parquet`` is missing
    (it is not a built corpus), FormatError when one of the files does not parse.
    """
    try:
        index = read_index(root)
    except NotFoundError:
        raise NotFoundError(
            f"{root}: no index.json there; not a corpus written by `longvid build`"
        ) from None
    samples_uri = storage.join(root, SAMPLES_NAME)
    if not samples_exist(samples_uri):  # a file or a dataset folder; its rows are read lazily
        raise NotFoundError(f"{samples_uri}: missing; not a finished `longvid build` output")
    rejects = _rows(storage.join(root, REJECTS_NAME)) or []
    corpus = Corpus(root=root, index=index, rejects=rejects)
    corpus.summary = _json(storage.join(root, SUMMARY_NAME))
    corpus.ingest_summary = _json(storage.join(root, INGEST_DIR, "ingest_summary.json"))
    corpus.manifest = _rows(storage.join(root, INGEST_DIR, "manifest.parquet"), MANIFEST_COLUMNS)
    for unit_id, videos in _unit_videos(root):
        for v in videos:
            corpus.ledger_records[v["record_id"]] = unit_id
        corpus.ledger_videos.extend(videos)
    base = storage.join(root, ledger.SHARDS_DIR)
    try:
        files = storage.list_files(base)
    except NotFoundError:
        files = []
    prefix = base.rstrip("/") + "/"
    corpus.shard_files = sorted(
        f"{ledger.SHARDS_DIR}/{f[len(prefix):]}" for f in files if f.startswith(prefix)
    )
    return corpus
