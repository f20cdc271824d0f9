"""``samples.parquet``: one row per sample in the shards, with where its bytes are.

The ``members`` column holds, for every member of the sample, its extension and the offset and
size of its data in the shard, so a reader can fetch one member (or the whole sample) with a
single ranged read. ``shard`` is the shard's url relative to the corpus root, as in the index.
Annotations that do not have a column of their own go into ``extra`` as a JSON string.

A build writes it as a Parquet dataset: a folder ``samples.parquet/`` of per-unit parts. Query it
with pandas (``pd.read_parquet(ROOT + "/samples.parquet")``), ``pyarrow.dataset.dataset``,
DuckDB (``read_parquet('ROOT/samples.parquet/*.parquet')``) or :func:`read_table`.
"""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from longvid import storage
from longvid.errors import FormatError, NotFoundError
from longvid.schema import MEMBER
from longvid.shards.tarwriter import MemberLocation
from longvid.storage.local import local_path

BUCKETS = ("short", "long")
SAMPLES_NAME = "samples.parquet"  # a file, or (as a build writes it) a folder of parts


def samples_uri(root: str) -> str:
    """Where a corpus's sample table is: ``ROOT/samples.parquet``, a Parquet dataset folder of
    per-unit parts in a build (``pyarrow.dataset.dataset(samples_uri(root))`` reads it)."""
    return storage.join(root, SAMPLES_NAME)


SAMPLES_SCHEMA = pa.schema(
    [
        pa.field("key", pa.string(), nullable=False),  # the sample key, unique in a corpus
        pa.field("shard", pa.string(), nullable=False),  # shard url relative to the root
        ("source", pa.string()),
        ("video_id", pa.string()),
        ("record_id", pa.string()),  # "<source>:<video_id>", joins with the manifest
        ("bucket", pa.string()),  # one of BUCKETS: the curriculum's duration bucket
        ("span_start", pa.float64()),  # seconds in the source video
        ("span_end", pa.float64()),
        ("duration", pa.float64()),  # seconds of the clip as written
        ("fps", pa.float64()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("num_frames", pa.int64()),
        ("caption", pa.string()),  # the main text, also in KEY.txt
        pa.field("members", pa.list_(MEMBER), nullable=False),  # data offset/size per member
        ("extra", pa.string()),  # JSON object: annotations without a column of their own
        ("embedding", pa.list_(pa.float16())),  # the video embedding (embed stage), or null
        # perceptual fingerprint (longvid.dedup.fingerprint.to_bytes: 4 frame hashes, colours)
        ("fingerprint", pa.binary(44)),
    ]
)


def _json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _normalise_row(i: int, row: Mapping[str, Any], schema: pa.Schema) -> dict[str, Any]:
    unknown = set(row) - set(schema.names)
    if unknown:
        raise ValueError(f"row {i}: unknown column(s) {sorted(unknown)}")
    out: dict[str, Any] = {}
    for f in schema:
        value = row.get(f.name)
        if value is None and not f.nullable:
            raise ValueError(f"row {i} (key {row.get('key')!r}): column {f.name!r} is required")
        if pa.types.is_string(f.type) and isinstance(value, Mapping | list):
            value = _json_text(value)  # JSON columns such as "extra" may be given as objects
        if f.name == "members" and value is not None:
            value = [m.as_dict() if isinstance(m, MemberLocation) else m for m in value]
        out[f.name] = value
    return out


def to_table(rows: Iterable[Mapping[str, Any]] | pa.Table, schema: pa.Schema) -> pa.Table:
    """Rows (dicts) or a table → a table with exactly ``schema``. Unknown columns, missing
    required values and wrong types are ValueErrors naming the row and the column."""
    if isinstance(rows, pa.Table):
        missing = [n for n in schema.names if n not in rows.column_names]
        unknown = [n for n in rows.column_names if n not in schema.names]
        if unknown:
            raise ValueError(f"unknown column(s) {unknown}")
        for name in missing:
            if not schema.field(name).nullable:
                raise ValueError(f"column {name!r} is required")
            rows = rows.append_column(name, pa.nulls(rows.num_rows, schema.field(name).type))
        try:
            table = rows.select(schema.names).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise ValueError(f"table does not fit the schema: {exc}") from None
    else:
        normal = [_normalise_row(i, r, schema) for i, r in enumerate(rows)]
        try:
            table = pa.Table.from_pylist(normal, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"rows do not fit the schema: {exc}") from None
    for f in schema:
        if not f.nullable and table.column(f.name).null_count:
            raise ValueError(f"column {f.name!r} is required but has nulls")
    return table


def check_samples(table: pa.Table) -> None:
    """Corpus rules the schema cannot state: unique keys, known buckets."""
    keys = table.column("key").to_pylist()
    if len(set(keys)) != len(keys):
        seen: set[str] = set()
        dup = next(k for k in keys if k in seen or seen.add(k))
        raise ValueError(f"duplicate sample key {dup!r}")
    for bucket in set(table.column("bucket").to_pylist()) - {None}:
        if bucket not in BUCKETS:
            raise ValueError(f"bucket {bucket!r} is not one of {BUCKETS}")


def write_table(
    uri: str, rows: Sequence[Mapping[str, Any]] | pa.Table, schema: pa.Schema = SAMPLES_SCHEMA
) -> None:
    """Write rows as Parquet at ``uri``, atomically (temp + rename / completed upload)."""
    table = to_table(rows, schema)
    if schema.equals(SAMPLES_SCHEMA):
        check_samples(table)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    _remove_dataset_folder(uri)  # the table replaces a dataset folder of the same name
    with storage.open_write(uri) as f:
        f.write(buf.getvalue())


def _read_one(uri: str, columns: list[str] | None) -> pa.Table:
    data = storage.read_bytes(uri)
    try:
        return pq.read_table(pa.BufferReader(data), columns=columns)
    except (pa.ArrowInvalid, OSError) as exc:
        raise FormatError(f"{uri}: not a readable Parquet file: {exc}") from None


def dataset_parts(uri: str) -> list[str] | None:
    """The ``*.parquet`` parts of a Parquet dataset folder at ``uri`` (sorted), or None when
    ``uri`` is a single file. NotFoundError when neither exists."""
    if not storage.is_remote(uri) and not os.path.isdir(local_path(uri)):
        return None
    if storage.is_remote(uri) and storage.exists(uri):
        return None
    parts = storage.list_files(uri, ".parquet")
    if not parts and storage.is_remote(uri):
        raise NotFoundError(f"{uri}: not found")
    return parts


def _remove_dataset_folder(uri: str) -> None:
    try:
        parts = dataset_parts(uri)
    except NotFoundError:
        return
    if parts is None:
        return
    for part in parts:
        storage.delete(part)
    if not storage.is_remote(uri):
        shutil.rmtree(local_path(uri), ignore_errors=True)


def read_table(uri: str, *, columns: list[str] | None = None, threads: int = 8) -> pa.Table:
    """Read a Parquet table: one file, or a dataset folder of parts (what a build writes as
    ``samples.parquet/``), in part-name order. NotFoundError when missing; FormatError when not
    Parquet. ``pyarrow.dataset.dataset(path)``, DuckDB and pandas read the same folders."""
    parts = dataset_parts(uri)
    if parts is None:
        return _read_one(uri, columns)
    if not parts:
        raise FormatError(f"{uri}: a dataset folder without parts")
    with ThreadPoolExecutor(max_workers=threads) as pool:
        tables = list(pool.map(lambda p: _read_one(p, columns), parts))
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise FormatError(f"{uri}: parts with different schemas: {exc}") from None


def rows_by_shard(table: pa.Table) -> dict[str, list[dict[str, Any]]]:
    """Samples rows grouped by shard url, in table order (what verification expects)."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in table.select(["key", "shard", "members"]).to_pylist():
        groups.setdefault(row["shard"], []).append(row)
    return groups


def parse_extra(value: Any) -> dict[str, Any]:
    """The ``extra`` column of a samples row as a dict (JSON text, a dict, or empty)."""
    if isinstance(value, dict):
        return value
    if not value:
        return {}
    try:
        out = json.loads(value)
    except (TypeError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}
