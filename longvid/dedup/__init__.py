"""Duplicates and copies in a corpus, with no Ray and no models: pure functions on columns.

- :mod:`~longvid.dedup.semantic`: SemDeDup-style near duplicates (k-means, pairs inside clusters)
- :mod:`~longvid.dedup.fingerprint`: a perceptual fingerprint (DCT hash of a few frames)
- :mod:`~longvid.dedup.copies`: fingerprint copies by banded hashing
- :mod:`~longvid.dedup.exact`: equal content hashes
- :mod:`~longvid.dedup.groups`: groups from every signal, the kept rule, the duplicates table
- :mod:`~longvid.dedup.read`: the columns of a samples dataset, streamed in batches
- :mod:`~longvid.dedup.partition`: the steps of the partitioned search, one Parquet file at a
  time (run as Ray tasks by :mod:`longvid.pipelines.dedup_partitioned`)
"""

from longvid.dedup.config import DedupConfig
from longvid.dedup.groups import DUPLICATES_SCHEMA, Pairs
from longvid.dedup.search import DedupResult, Samples, find_duplicates

__all__ = ["DUPLICATES_SCHEMA", "DedupConfig", "DedupResult", "Pairs", "Samples",
           "find_duplicates"]
