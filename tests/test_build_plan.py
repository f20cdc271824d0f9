"""Planning without Ray: streaming manifest scan, row digests, stable units across generations,
changed or removed records refused by name, worker row reads, and the driver's memory on a
200k-row manifest (a subprocess, so that its peak RSS is its own)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from longvid.errors import ConfigError
from longvid.pipelines.config import UnitsConfig
from longvid.pipelines.plan import (
    READ_GROUP_ROWS,
    make_plan,
    max_row_group_rows,
    read_rows,
    scan_manifest,
    worker_manifest,
    write_new_generation,
)
from longvid.pipelines.row_digest import row_digests
from tests.fixtures.manifests import write_synthetic_manifest

UNITS = UnitsConfig(videos_per_unit=50, max_unit_seconds=600.0)


def grown(tmp_path: Path, base: Path, extra: int, name: str = "grown.parquet") -> Path:
    """``base`` plus ``extra`` new rows appended (as a re-ingest of a grown release would)."""
    more = write_synthetic_manifest(tmp_path / f"more-{extra}.parquet", extra,
                                    start=pq.read_metadata(base).num_rows)
    out = tmp_path / name
    pq.write_table(pa.concat_tables([pq.read_table(base), pq.read_table(more)]), out)
    return out


def test_units_cover_every_row_once_within_limits_and_workers_read_their_rows(tmp_path):
    path = write_synthetic_manifest(tmp_path / "m.parquet", 3000)
    scan = scan_manifest(str(path))
    plan = make_plan(None, scan, UNITS)
    rows = np.concatenate([np.arange(a, b) for u in plan.units for a, b in u.runs])
    assert sorted(rows.tolist()) == list(range(3000))
    assert all(u.records <= 50 and (u.seconds <= 600 or u.records == 1) for u in plan.units)
    assert len({u.unit_id for u in plan.units}) == len(plan.units)
    table = pq.read_table(path, columns=["record_id"]).column(0).to_pylist()
    unit = plan.units[7]
    got = [r["record_id"] for r in read_rows(str(path), unit.runs)]
    assert got == [table[i] for a, b in unit.runs for i in range(a, b)]
    # the same manifest gives the same plan
    again = make_plan(None, scan_manifest(str(path)), UNITS)
    assert [(u.unit_id, u.runs) for u in again.units] == [(u.unit_id, u.runs) for u in plan.units]


def test_a_manifest_in_big_row_groups_is_copied_in_small_ones_for_the_workers(tmp_path):
    path = write_synthetic_manifest(tmp_path / "m.parquet", 9000)  # one 9000-row group
    assert max_row_group_rows(str(path)) == 9000
    root = str(tmp_path / "out")
    rows_uri, scan = worker_manifest(root, str(path))
    assert rows_uri == f"{root}/plan/manifest-{scan.fingerprint}.parquet"
    assert max_row_group_rows(rows_uri) <= READ_GROUP_ROWS
    assert pq.read_table(rows_uri).equals(pq.read_table(path))
    assert worker_manifest(root, str(path))[0] == rows_uri  # written once per content
    small = tmp_path / "small.parquet"
    pq.write_table(pq.read_table(path), small, row_group_size=1000)
    assert worker_manifest(root, str(small))[0] == str(small)  # read as it is


def test_row_digests_see_nested_edits_and_ignore_column_order(tmp_path):
    path = write_synthetic_manifest(tmp_path / "m.parquet", 200, kind="howto100m")
    table = pq.read_table(path)
    base = row_digests(table)
    assert len(set(base.tolist())) == 200
    rows = table.to_pylist()
    rows[5]["texts"][40]["text"] += "!"  # one ASR segment of one video
    rows[9]["texts"][3], rows[9]["texts"][4] = rows[9]["texts"][4], rows[9]["texts"][3]
    edited = row_digests(pa.Table.from_pylist(rows, schema=table.schema))
    assert np.flatnonzero(edited != base).tolist() == [5, 9]
    reordered = table.select(list(reversed(table.column_names)))
    assert (row_digests(reordered) == base).all()


def test_a_grown_manifest_keeps_its_units_and_adds_a_generation(tmp_path):
    root = str(tmp_path / "out")
    base = write_synthetic_manifest(tmp_path / "m.parquet", 2000)
    first = make_plan(root, scan_manifest(str(base)), UNITS)
    write_new_generation(root, first)
    assert first.generations == 1 and first.new_records == 2000
    big = grown(tmp_path, base, 700)
    # a re-ingest may write the rows in another order: units must not care
    shuffled = tmp_path / "shuffled.parquet"
    t = pq.read_table(big)
    pq.write_table(t.take(np.random.default_rng(1).permutation(t.num_rows)), shuffled,
                   row_group_size=500)
    second = make_plan(root, scan_manifest(str(shuffled)), UNITS)
    old_ids = [u.unit_id for u in first.units]
    assert [u.unit_id for u in second.units[: len(old_ids)]] == old_ids
    assert second.generations == 2 and second.new_records == 700
    assert {u.generation for u in second.units[len(old_ids):]} == {1}
    # the old units still read the same records, wherever the rows went
    ids_first = [r["record_id"] for r in read_rows(str(base), first.units[3].runs)]
    ids_second = [r["record_id"] for r in read_rows(str(shuffled), second.units[3].runs)]
    assert sorted(ids_first) == sorted(ids_second)
    write_new_generation(root, second)
    third = make_plan(root, scan_manifest(str(shuffled)), UNITS)
    assert third.new_records == 0 and [u.unit_id for u in third.units] == [
        u.unit_id for u in second.units]


def test_changed_or_removed_record_is_refused_by_name(tmp_path):
    root = str(tmp_path / "out")
    base = write_synthetic_manifest(tmp_path / "m.parquet", 500)
    plan = make_plan(root, scan_manifest(str(base)), UNITS)
    write_new_generation(root, plan)
    rows = pq.read_table(base).to_pylist()
    victim = rows[123]["record_id"]
    rows[123]["texts"][0]["text"] = "a corrected caption"
    changed = tmp_path / "changed.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(base)), changed)
    with pytest.raises(ConfigError, match=f"record '{victim}'.*differs"):
        make_plan(root, scan_manifest(str(changed)), UNITS)
    removed = tmp_path / "removed.parquet"
    gone = rows.pop(400)["record_id"]
    rows[123] = pq.read_table(base).slice(123, 1).to_pylist()[0]
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(base)), removed)
    with pytest.raises(ConfigError, match=f"record '{gone}'.*no longer in the manifest"):
        make_plan(root, scan_manifest(str(removed)), UNITS)


def test_duplicate_record_ids_are_refused_naming_the_rows(tmp_path):
    base = write_synthetic_manifest(tmp_path / "m.parquet", 50)
    t = pq.read_table(base)
    dup = tmp_path / "dup.parquet"
    pq.write_table(pa.concat_tables([t, t.slice(10, 1)]), dup)
    with pytest.raises(Exception, match="rows 10 and 50 have the same record id"):
        make_plan(None, scan_manifest(str(dup)), UNITS)


# The dry run of a 200k-row WebVid-like manifest: the driver keeps ~20 bytes per row, so its
# peak (VmHWM: its own, not the parent's carried over by fork + exec as ru_maxrss would be)
# stays near the interpreter's own with pyarrow, pandas and pydantic loaded. A planner holding
# the rows as Python objects needed 454 MB for 100k rows.
RSS_BOUND_MB = 450


def test_planning_200k_rows_stays_under_the_rss_bound_and_starts_no_ray(tmp_path):
    path = write_synthetic_manifest(tmp_path / "m.parquet", 200_000)
    code = (
        "import json, sys\n"
        "from longvid.cli import main\n"
        f"rc = main(['build', '--manifest', {str(path)!r}, '--out', {str(tmp_path / 'out')!r}, "
        "'--dry-run'])\n"
        "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')][0]\n"
        "print(json.dumps({'rc': rc, 'ray': 'ray' in sys.modules, "
        "'rss_mb': int(hwm.split()[1]) / 1024}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    got = json.loads(lines[-1])
    assert got["rc"] == 0 and got["ray"] is False
    assert got["rss_mb"] < RSS_BOUND_MB, got
    assert "records 200000" in proc.stdout and "pending" in proc.stdout
    assert not (tmp_path / "out").exists()  # a dry run writes nothing


def test_generations_are_written_in_bounded_parts_and_an_append_still_works(tmp_path):
    root = str(tmp_path / "out")
    base = write_synthetic_manifest(tmp_path / "m.parquet", 2000)
    first = make_plan(root, scan_manifest(str(base)), UNITS)
    write_new_generation(root, first, part_rows=300)
    gen0 = tmp_path / "out" / "plan" / "gen-00000"
    parts = sorted(p.name for p in gen0.glob("part-*.parquet"))
    assert parts == [f"part-{i:05d}.parquet" for i in range(7)]  # 6 x 300 + 200
    sizes = [pq.read_metadata(gen0 / p).num_rows for p in parts]
    assert sizes == [300] * 6 + [200]
    assert json.loads((gen0 / "done.json").read_text()) == {"parts": 7, "rows": 2000}
    # the parts hold the records in packing order, ids included
    ids = pa.concat_tables([pq.read_table(gen0 / p) for p in parts]).column("record_id")
    assert ids.to_pylist() == pq.read_table(base, columns=["record_id"]).column(0).to_pylist()
    # an append build: the old units are kept, the new records make generation 1, in parts too
    big = grown(tmp_path, base, 700)
    second = make_plan(root, scan_manifest(str(big)), UNITS)
    assert [u.unit_id for u in second.units[: len(first.units)]] == [u.unit_id for u in
                                                                      first.units]
    assert second.generations == 2 and second.new_records == 700
    write_new_generation(root, second, part_rows=300)
    gen1 = tmp_path / "out" / "plan" / "gen-00001"
    assert [pq.read_metadata(p).num_rows for p in sorted(gen1.glob("part-*"))] == [300, 300, 100]
    third = make_plan(root, scan_manifest(str(big)), UNITS)
    assert third.new_records == 0
    assert [u.unit_id for u in third.units] == [u.unit_id for u in second.units]
    # a removed record of a later part is still named
    rows = pq.read_table(big).to_pylist()
    gone = rows.pop(1650)["record_id"]
    removed = tmp_path / "removed.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(big)), removed)
    with pytest.raises(ConfigError, match=f"record '{gone}'.*no longer in the manifest"):
        make_plan(root, scan_manifest(str(removed)), UNITS)


def test_a_generation_cut_short_is_planned_again_and_old_single_files_still_read(tmp_path):
    root = tmp_path / "out"
    base = write_synthetic_manifest(tmp_path / "m.parquet", 900)
    first = make_plan(str(root), scan_manifest(str(base)), UNITS)
    write_new_generation(str(root), first, part_rows=400)
    # as a build before generation parts wrote it: one file plan/gen-00000.parquet
    gen0 = root / "plan" / "gen-00000"
    single = pa.concat_tables([pq.read_table(p) for p in sorted(gen0.glob("part-*"))])
    pq.write_table(single, root / "plan" / "gen-00000.parquet")
    for p in gen0.iterdir():
        p.unlink()
    gen0.rmdir()
    big = grown(tmp_path, base, 500)
    second = make_plan(str(root), scan_manifest(str(big)), UNITS)
    assert [u.unit_id for u in second.units[: len(first.units)]] == [u.unit_id for u in
                                                                      first.units]
    assert second.new_records == 500
    write_new_generation(str(root), second, part_rows=400)
    # a crash before done.json: that generation does not count, the next plan makes it again
    (root / "plan" / "gen-00001" / "done.json").unlink()
    again = make_plan(str(root), scan_manifest(str(big)), UNITS)
    assert again.generations == 2 and again.new_records == 500
    assert [u.unit_id for u in again.units] == [u.unit_id for u in second.units]
    write_new_generation(str(root), again, part_rows=400)
    assert make_plan(str(root), scan_manifest(str(big)), UNITS).new_records == 0
