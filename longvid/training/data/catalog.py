"""The catalog: every sample of one or more built corpora, as columns, with a fingerprint.

Rows come from each corpus's ``samples.parquet`` and are sorted by (key, corpus), so the order
in which a build wrote its rows does not change the epoch order. The fingerprint hashes what
decides the content of every sample (keys, shards and their checksums, byte ranges, durations):
a rebuilt or edited corpus gets a new fingerprint, and a resume against it is refused.

The columns live in the catalog cache (:mod:`~longvid.training.data.catalog_cache`): compiled
once per corpus set, then memory-mapped, so DataLoader workers and the ranks of a node share one
copy of the pages and a process holds no Python object per sample. Strings (keys, captions) are
decoded only when a row is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from longvid.errors import FormatError
from longvid.training.data.catalog_cache import COLUMNS, CacheFiles, open_or_compile
from longvid.training.data.columns import CodedColumn, StringColumn

__all__ = ["COLUMNS", "Catalog", "load_catalog"]


@dataclass
class Catalog:
    """All samples of the stage's corpora. Columns are aligned: index ``i`` is one sample.

    ``keys``/``captions`` are :class:`StringColumn` and ``sources``/``buckets``/``shards``
    :class:`CodedColumn` views (``col[i]`` a str, ``col[idx]`` an object array);
    ``corpus`` and ``durations`` are memory-mapped numpy arrays.
    """

    roots: tuple[str, ...]
    corpus: np.ndarray  # small unsigned int [N]: index into roots
    keys: StringColumn
    sources: CodedColumn
    buckets: CodedColumn
    durations: np.ndarray  # float64 [N]
    shards: CodedColumn
    captions: StringColumn
    member_offsets: np.ndarray  # int64 [N+1]: row i's members are [off[i], off[i+1])
    member_ext: CodedColumn
    member_offset: np.ndarray  # int64 [M]: byte offset of each member's data in its shard
    member_size: np.ndarray  # int64 [M]
    fingerprint: str = ""
    corpus_fingerprints: tuple[str, ...] = ()
    cache_path: str = ""  # the cache folder the columns are mapped from

    def __len__(self) -> int:
        return len(self.durations)

    def describe(self) -> str:
        return f"{len(self)} samples in {', '.join(self.roots)}"

    def row(self, i: int) -> dict[str, Any]:
        """One sample's loader columns of samples.parquet (``COLUMNS``), plus ``corpus`` (its
        index in ``roots``) and ``root``."""
        i = int(i)
        a, b = int(self.member_offsets[i]), int(self.member_offsets[i + 1])
        members = [
            {"ext": self.member_ext[j], "offset": int(self.member_offset[j]),
             "size": int(self.member_size[j])}
            for j in range(a, b)
        ]
        corpus = int(self.corpus[i])
        return {
            "key": self.keys[i],
            "shard": self.shards[i],
            "source": self.sources[i],
            "bucket": self.buckets[i],
            "duration": float(self.durations[i]),
            "caption": self.captions[i],
            "members": members,
            "corpus": corpus,
            "root": self.roots[corpus],
        }


def _from_cache(roots: tuple[str, ...], cache: CacheFiles) -> Catalog:
    a, meta = cache.arrays, cache.meta
    return Catalog(
        roots=roots,
        corpus=a["corpus"],
        keys=StringColumn(a["key.off"], a["key.data"]),
        sources=CodedColumn(a["source"], meta["sources"]),
        buckets=CodedColumn(a["bucket"], meta["buckets"]),
        durations=a["duration"],
        shards=CodedColumn(a["shard"], meta["shards"]),
        captions=StringColumn(a["caption.off"], a["caption.data"], a["caption.valid"]),
        member_offsets=a["members.off"],
        member_ext=CodedColumn(a["member.ext"], meta["exts"]),
        member_offset=a["member.offset"],
        member_size=a["member.size"],
        fingerprint=meta["fingerprint"],
        corpus_fingerprints=tuple(meta["corpus_fingerprints"]),
        cache_path=str(cache.path),
    )


def load_catalog(
    roots: list[str] | tuple[str, ...], cache_dir: str | Path | None = None
) -> Catalog:
    """The catalog of every corpus root, from its cache under ``cache_dir`` (default
    ``$LONGVID_CACHE_DIR/catalog`` or ``~/.cache/longvid/catalog``), compiling the cache first
    when it is missing.

    Raises NotFoundError / FormatError naming the root when a corpus is missing or malformed.
    """
    if not roots:
        raise FormatError("no corpora given: the stage's corpora list is empty")
    roots = tuple(roots)
    return _from_cache(roots, open_or_compile(roots, cache_dir))
