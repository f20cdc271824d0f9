"""64-bit digests of Arrow rows, computed a column at a time with numpy (no Python object per row).

The planner hashes every manifest row to notice a record that changed between two builds, and
every record id to place records in generations. Digests are not cryptographic: they catch
accidental edits (a caption fixed, a URI moved), which is what a build needs to refuse.

A nested column (list of structs: spans, texts) is hashed from its flattened leaves: each leaf
value is mixed with its position in its list and its field number, then summed per row, so two
rows have the same digest only when every value sits at the same place.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_NULL = np.uint64(0x6A09E667F3BCC909)  # the digest of a null value


def mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser over a uint64 array (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = x.astype(np.uint64, copy=True)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
    return x


def _leaf(arr: pa.Array) -> np.ndarray:
    """uint64 [len(arr)]: one digest per value of a primitive or string array."""
    t = arr.type
    if pa.types.is_dictionary(t):
        arr = arr.dictionary_decode()
        t = arr.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t):
        values = arr.fill_null("").to_numpy(zero_copy_only=False)
        # siphash with pandas' fixed key: the same strings give the same digests in any process
        out = pd.util.hash_array(values.astype(object), categorize=False)
    elif pa.types.is_floating(t):
        out = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.float64).view(np.uint64)
    elif pa.types.is_integer(t) or pa.types.is_boolean(t):
        out = arr.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64).view(np.uint64)
    elif pa.types.is_null(t):
        out = np.zeros(len(arr), np.uint64)
    else:  # dates, decimals...: their text is exact enough for a change detector
        return _leaf(pc.cast(arr, pa.string()))
    out = mix(out)
    if arr.null_count:
        out[~arr.is_valid().to_numpy(zero_copy_only=False)] = _NULL
    return out


def column_digest(arr: pa.Array) -> np.ndarray:
    """uint64 [len(arr)]: one digest per row of ``arr`` (any nesting of lists and structs)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    t = arr.type
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        lengths = pc.list_value_length(arr).fill_null(-1).to_numpy().astype(np.int64)
        child = arr.flatten()
        out = np.zeros(n, np.uint64)
        if len(child):
            parents = pc.list_parent_indices(arr).to_numpy().astype(np.int64)
            starts = np.concatenate([[0], np.cumsum(np.maximum(lengths, 0))[:-1]])
            pos = np.arange(len(child), dtype=np.int64) - starts[parents]
            with np.errstate(over="ignore"):
                mixed = mix(column_digest(child) ^ mix(pos.astype(np.uint64) + _GOLDEN))
            nonempty = np.flatnonzero(lengths > 0)
            # rows' values are contiguous (parents sorted): sum each row's run
            out[nonempty] = np.add.reduceat(mixed, starts[nonempty])
        with np.errstate(over="ignore"):
            return mix(out + mix(lengths.view(np.uint64) + np.uint64(1)))
    if pa.types.is_struct(t):
        out = np.zeros(n, np.uint64)
        fields = arr.flatten()  # honours the array's offset and the struct's nulls
        with np.errstate(over="ignore"):
            for i, f in enumerate(fields):
                out += mix(column_digest(f) + np.uint64(i + 1) * _GOLDEN)
            out = mix(out)
        if arr.null_count:
            out[~arr.is_valid().to_numpy(zero_copy_only=False)] = _NULL
        return out
    return _leaf(arr)


def row_digests(batch: pa.RecordBatch | pa.Table, columns: list[str] | None = None) -> np.ndarray:
    """uint64 [rows]: a digest of each row over ``columns`` (all by default), independent of
    the order of the columns in the file."""
    names = sorted(columns if columns is not None else batch.schema.names)
    out = np.zeros(batch.num_rows, np.uint64)
    with np.errstate(over="ignore"):
        for name in names:
            salt = mix(np.frombuffer(name.encode().ljust(8, b"\0")[:8], np.uint64).copy())
            out += mix(column_digest(batch.column(name)) ^ salt)
    return mix(out)


def string_digests(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """uint64 [len(arr)]: a digest per string (record ids)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    return _leaf(arr)
