"""longvid.shards: WebDataset shards and the records that describe them.

- :mod:`~longvid.shards.tarwriter`: deterministic tar shards (``ShardWriter``,
  ``ShardSequenceWriter``), published atomically.
- :mod:`~longvid.shards.index`: the wids-style ``index.json``.
- :mod:`~longvid.shards.manifest`: ``samples.parquet`` (one row per sample, with byte offsets).
- :mod:`~longvid.shards.reader`: ranged reads of one member or sample; streaming shard reads.
- :mod:`~longvid.shards.verify`: size, checksum and per-member offset checks.
"""

from longvid.shards.index import ShardIndex, read_index, write_index
from longvid.shards.manifest import SAMPLES_SCHEMA, read_table, write_table
from longvid.shards.reader import iter_shard, read_member, read_sample
from longvid.shards.tarformat import ShardError
from longvid.shards.tarwriter import (
    MemberLocation,
    Placement,
    ShardInfo,
    ShardSequenceWriter,
    ShardWriter,
)
from longvid.shards.verify import Problem, verify_corpus, verify_shard

__all__ = [
    "SAMPLES_SCHEMA",
    "MemberLocation",
    "Placement",
    "Problem",
    "ShardError",
    "ShardIndex",
    "ShardInfo",
    "ShardSequenceWriter",
    "ShardWriter",
    "iter_shard",
    "read_index",
    "read_member",
    "read_sample",
    "read_table",
    "verify_corpus",
    "verify_shard",
    "write_index",
    "write_table",
]
