"""The audit's streaming scan of the sample table (longvid.audit.scan): one file and a dataset
folder of per-unit parts give the same aggregates; problem lists are capped, counts are not."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longvid.audit.checks import verdicts
from longvid.audit.scan import duplicate_keys, key_difference, key_overlap, scan_samples
from longvid.errors import NotFoundError
from longvid.schema import MEMBER


def _rows(n: int, start: int = 0) -> list[dict]:
    return [{"key": f"k{i:04d}", "shard": "shards/s0.tar", "source": ("a", "b", None)[i % 3],
             "record_id": f"r{i // 2}", "bucket": "long" if i % 4 == 0 else "short",
             "duration": None if i == 5 else 10.0 + i, "fps": 30.0 if i % 2 else 29.97,
             "width": None if i == 7 else 640, "height": 360,
             "caption": None if i % 5 == 0 else "a  few words\there" if i % 2 else "",
             "members": [{"ext": "mp4", "offset": 0, "size": 1000 + i},
                         {"ext": "json", "offset": 0, "size": 7}]}
            for i in range(start, start + n)]


SCHEMA = pa.schema([("key", pa.string()), ("shard", pa.string()), ("source", pa.string()),
                    ("record_id", pa.string()), ("bucket", pa.string()),
                    ("duration", pa.float64()), ("fps", pa.float64()), ("width", pa.int32()),
                    ("height", pa.int32()), ("caption", pa.string()),
                    ("members", pa.list_(MEMBER))])


def test_a_dataset_folder_scans_like_one_file(tmp_path):
    rows = _rows(40)
    pq.write_table(pa.Table.from_pylist(rows, SCHEMA), tmp_path / "one.parquet")
    folder = tmp_path / "samples.parquet"
    folder.mkdir()
    for u in range(4):  # four unit parts, batches of 3 rows: aggregates cross batch borders
        pq.write_table(pa.Table.from_pylist(rows[u * 10:(u + 1) * 10], SCHEMA),
                       folder / f"u{u}.parquet")
    one, parts = scan_samples(str(tmp_path / "one.parquet")), scan_samples(str(folder), 3)
    assert parts.batches == 16 and one.rows == parts.rows == 40
    for s in (one, parts):
        src = {name: i for i, name in enumerate(s.sources)}
        assert set(src) == {"a", "b", "None"}
        assert s.cells[src["a"], :, 0].sum() == 14  # i % 3 == 0
        assert s.cells[..., 1].sum() == pytest.approx(sum(10.0 + i for i in range(40) if i != 5))
        assert s.cells[..., 2].sum() == sum(1007 + i for i in range(40))
        assert s.videos.num_rows == len({(r["source"], r["record_id"]) for r in rows})
        assert int(np.isnan(s.duration).sum()) == 1
        assert int(np.isnan(s.short_side).sum()) == 1  # row 7: no width
        words = [len(r["caption"].split()) if r["caption"] else np.nan for r in rows]
        np.testing.assert_array_equal(s.caption_words, words)
        assert s.resolution == Counter({"640x360": 39, "Nonex360": 1})
    np.testing.assert_array_equal(one.duration, parts.duration)
    assert one.keys.to_pylist() == parts.keys.to_pylist() == [r["key"] for r in rows]


def test_a_missing_table_is_named(tmp_path):
    with pytest.raises(NotFoundError, match="nothing.parquet"):
        scan_samples(str(tmp_path / "nothing.parquet"))


def test_duplicate_keys_are_counted_all_and_listed_up_to_the_cap():
    keys = pa.array(["x", "a", "b", "a", "c", "b", "b", "d", "c"])
    assert duplicate_keys(keys, 2) == (3, [("a", 2), ("b", 3)])
    assert duplicate_keys(pa.array(["u", "v"]), 5) == (0, [])
    listed = [{"shard": None, "key": "a", "reason": "duplicate_key", "message": "m"}]
    checks = {c["name"]: c for c in verdicts(listed, with_leakage=False, max_listed=1,
                                             unlisted=Counter({"duplicate_key": 2}))}
    keys_check = next(c for c in checks.values() if "duplicate_key" in c["reasons"])
    assert keys_check["count"] == 3 and len(keys_check["problems"]) == 1
    assert not keys_check["passed"]


def test_key_differences_by_arrow_sets():
    a, b = pa.array(["k3", "k1", "k2", "k5", "k4"]), pa.array(["k2", "k9", "k1"])
    assert key_difference(a, b, 2) == (3, ["k3", "k4"])
    assert key_difference(b, a, 5) == (1, ["k9"])
    assert key_overlap(a, b) == 2
