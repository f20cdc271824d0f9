"""Everything a built corpus root holds besides the shard bytes, read once by the audit driver.

A root written by ``longvid build`` has ``index.json``, ``samples.parquet``, ``rejects.parquet``,
``summary.json``, ``ledger/*.json`` and, when the build ingested its sources itself,
``ingest/`` (manifest, rejects and summary of the ingest). Only the first two are required; the
rest make the accounting and run sections richer and are reported as absent when missing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from longvid import storage
from longvid.audit.scan import SampleScan, iter_batches, samples_exist, scan_samples
from longvid.errors import FormatError, NotFoundError
from longvid.shards import ShardIndex, ledger, read_index, read_table
from longvid.shards.manifest import SAMPLES_NAME

REJECTS_NAME = "rejects.parquet"
SUMMARY_NAME = "summary.json"
INGEST_DIR = "ingest"


@dataclass
class Corpus:
    """The small tables of one built corpus, and where the big ones are: the sample table and
    the ingest manifest are never read whole here, only streamed (:mod:`longvid.audit.scan`,
    :meth:`manifest_batches`); the probed videos are an Arrow table of three columns."""

    root: str
    index: ShardIndex
    rejects: list[dict[str, Any]]
    summary: dict[str, Any] | None = None
    ingest_summary: dict[str, Any] | None = None
    manifest_uri: str | None = None  # ingest/manifest.parquet when the build ingested itself
    manifest_rows: int | None = None  # its row count (Parquet metadata)
    ledger_videos: pa.Table = field(default_factory=lambda: _videos_table([]))
    shard_files: list[str] | None = None  # every file under shards/ (relative urls)

    @property
    def samples_uri(self) -> str:
        return storage.join(self.root, SAMPLES_NAME)

    @cached_property
    def scan(self) -> SampleScan:
        """The streaming aggregates of ``samples.parquet`` (:mod:`longvid.audit.scan`), read on
        first use."""
        return scan_samples(self.samples_uri)

    def manifest_batches(self, columns: list[str]) -> Iterator[pa.RecordBatch]:
        """The ingest manifest a batch at a time (nothing when there is none)."""
        if self.manifest_uri is None:
            return iter(())
        return iter_batches(self.manifest_uri, columns)


VIDEO_COLUMNS = ["record_id", "duration", "fps", "declared_mismatch"]


def _videos_table(tables: list[pa.Table]) -> pa.Table:
    schema = ledger.VIDEOS_SCHEMA
    empty = pa.table({c: pa.array([], schema.field(c).type) for c in VIDEO_COLUMNS})
    if not tables:
        return empty
    return pa.concat_tables([t.select(VIDEO_COLUMNS).cast(empty.schema) for t in tables])


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


def _unit_videos(root: str) -> pa.Table:
    """What the build's probe measured, per record: the ``record_id``, ``duration``, ``fps``
    and ``declared_mismatch`` columns of the ``videos.parquet/<unit_id>.parquet`` parts (one
    LIST, four columns read)."""
    try:
        parts = storage.list_files(storage.join(root, ledger.VIDEOS_PARTS), ".parquet")
    except NotFoundError:
        return _videos_table([])
    tables = []
    for part in parts:
        if part.endswith("/" + ledger.EMPTY_PART):
            continue
        t = pa.Table.from_batches(list(iter_batches(part, VIDEO_COLUMNS)))
        if t.num_rows:
            tables.append(t)
    return _videos_table(tables)


def _row_count(uri: str) -> int | None:
    try:
        if storage.is_remote(uri):
            return pq.ParquetFile(pa.BufferReader(storage.read_bytes(uri))).metadata.num_rows
        return pq.ParquetFile(uri[len("file://"):] if uri.startswith("file://") else uri
                              ).metadata.num_rows
    except NotFoundError:
        return None
    except (pa.ArrowInvalid, OSError) as exc:
        if not storage.exists(uri):
            return None
        raise FormatError(f"{uri}: not a readable Parquet file: {exc}") from None


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
    manifest = storage.join(root, INGEST_DIR, "manifest.parquet")
    corpus.manifest_rows = _row_count(manifest)
    corpus.manifest_uri = manifest if corpus.manifest_rows is not None else None
    corpus.ledger_videos = _unit_videos(root)
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
