"""``longvid audit`` on real builds: the report's numbers against the tables and shards they came
from, corrupted shards failing with the shard and the reason, leakage by id and by embedding,
duplicates, comparison, an s3:// root, and the HTML page in headless Chromium.

Corpora: ``built_corpus`` (the sample corpus built with the demo config, every annotation stage
on tiny random models) and ``reference_build`` (the build tests' inputs: every kind of bad
input, no annotation). Audits run in this process on one local Ray per module.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import webdataset as wds

from longvid import storage
from longvid.audit.compare import compare, figures, load_baseline
from longvid.audit.config import AuditConfig
from longvid.audit.corpus import load_corpus
from longvid.audit.shardcheck import picked_for_decode
from longvid.cli import main as longvid_main
from longvid.config import load_config
from longvid.media.ffmpeg import run_ffmpeg
from longvid.pipelines.audit import run_audit
from longvid.shards import ShardWriter, iter_shard, read_index, read_member, write_index
from longvid.shards.manifest import SAMPLES_SCHEMA, write_table

pytestmark = pytest.mark.slow

PCTS = (0, 5, 25, 50, 75, 95, 100)


@pytest.fixture(scope="module")
def audit_ray(s3_server):
    """One local Ray for this module's audits (started after the S3 variables are set, so its
    workers reach the test server)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield
    ray.shutdown()


def audit(root, out, *overrides: str, **kw) -> dict:
    cfg = load_config(None, AuditConfig, list(overrides))
    return run_audit(str(root), str(out), cfg, **kw).report


def checks(report: dict) -> dict[str, dict]:
    return {c["name"]: c for c in report["checks"]}


def problems(report: dict) -> list[dict]:
    return [p for c in report["checks"] for p in c["problems"]]


def copy_corpus(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("ingest"))
    if (src / "ingest").exists():
        shutil.copytree(src / "ingest", dst / "ingest")
    return dst


def shard_paths(root: Path) -> list[str]:
    return [str(root / s["url"]) for s in json.loads((root / "index.json").read_text())["shardlist"]]


@pytest.fixture(scope="module")
def clean_report(audit_ray, built_corpus, tmp_path_factory):
    """The deep audit of the annotated sample corpus (every clip decoded)."""
    out = tmp_path_factory.mktemp("audit_clean")
    report = audit(built_corpus, out, "checks.decode_fraction=1.0")
    return report, out


def test_report_numbers_match_the_tables_they_came_from(clean_report, built_corpus):
    r, out = clean_report
    assert r["verdict"] == "pass", [p["message"] for p in problems(r)][:5]
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(r))
    s = pd.read_parquet(built_corpus / "samples.parquet")
    index = json.loads((built_corpus / "index.json").read_text())["shardlist"]
    t = r["totals"]
    assert t["samples"] == len(s) > 50
    assert t["hours"] == pytest.approx(s.duration.sum() / 3600, abs=1e-6)
    assert t["shards"] == len(index)
    assert t["bytes"] == sum(e["filesize"] for e in index) == sum(
        (built_corpus / e["url"]).stat().st_size for e in index)
    assert t["videos"] == s.record_id.nunique()
    for src, g in s.groupby("source"):
        row = t["by_source"][src]
        assert row["samples"] == len(g)
        assert row["hours"] == pytest.approx(g.duration.sum() / 3600, abs=1e-6)
        assert row["short"] == int((g.bucket == "short").sum())
        assert row["long"] == int((g.bucket == "long").sum())
        assert row["videos"] == g.record_id.nunique()
        assert row["member_bytes"] == sum(m["size"] for ms in g.members for m in ms)
    assert set(t["by_source"]) == set(s.source)
    for bucket, g in s.groupby("bucket"):
        assert t["by_bucket"][bucket]["samples"] == len(g)
        assert t["by_bucket"][bucket]["hours"] == pytest.approx(g.duration.sum() / 3600, abs=1e-6)

    d = r["distributions"]
    for name, values in (("duration", s.duration), ("fps", s.fps),
                         ("duration_long", s.duration[s.bucket == "long"]),
                         ("short_side", np.minimum(s.width, s.height)),
                         ("caption_words", s.caption.map(lambda c: len(c.split())))):
        h = d[name]
        assert h["count"] == len(values) and sum(h["counts"]) == len(values), name
        for p in PCTS:
            assert h["percentiles"][f"p{p}"] == pytest.approx(np.percentile(values, p), abs=1e-6)
        assert h["mean"] == pytest.approx(np.mean(values), abs=1e-6)
    assert {x["name"]: x["count"] for x in d["resolution"]} == dict(
        Counter(f"{w}x{h}" for w, h in zip(s.width, s.height, strict=True)))

    # annotations, read back independently with the stock webdataset reader
    metas = {x["__key__"]: json.loads(x["json"]) for x in wds.WebDataset(
        shard_paths(built_corpus), shardshuffle=False)}
    assert set(metas) == set(s.key)
    long_events = [len(metas[k]["events"]) for k in s.key[s.bucket == "long"]]
    assert d["events_per_long_sample"]["count"] == len(long_events) > 0
    assert d["events_per_long_sample"]["mean"] == pytest.approx(np.mean(long_events), abs=1e-6)
    tasks = Counter(q["task"] for m in metas.values() for q in m.get("qa") or [])
    assert {x["name"]: x["count"] for x in d["qa_by_task"]} == dict(tasks)
    assert len(tasks) >= 5  # the five long-video task types plus short captions
    vt = [json.loads(e)["scores"]["video_text_cosine"] for e in s.extra]
    assert d["video_text_score"]["count"] == len(vt)
    assert d["video_text_score"]["mean"] == pytest.approx(np.mean(vt), abs=1e-6)
    motion = [m["scores"]["motion_mean"] for m in metas.values()]
    assert d["motion"]["mean"] == pytest.approx(np.mean(motion), abs=1e-6)
    assert r["annotations"]["annotated"]
    assert r["annotations"]["with"]["embedding"] == len(s)

    # licences: each source's licence from the ingest manifest, shares of hours
    manifest = pd.read_parquet(built_corpus / "ingest" / "manifest.parquet")
    lic_of = dict(zip(manifest.record_id, manifest.licence, strict=True))
    hours_by_lic = s.assign(lic=s.record_id.map(lic_of)).groupby("lic").duration.sum()
    got = {x["licence"]: x for x in r["licences"]["by_licence"]}
    assert set(got) == set(hours_by_lic.index)
    for lic, sec in hours_by_lic.items():
        assert got[lic]["hours"] == pytest.approx(sec / 3600, abs=1e-6)
        assert got[lic]["share_of_hours"] == pytest.approx(sec / s.duration.sum(), abs=1e-6)

    # accounting: ingest summary and manifest; every record accepted or rejected
    ingest = json.loads((built_corpus / "ingest" / "ingest_summary.json").read_text())
    for x in ingest["sources"]:
        row = r["accounting"]["ingest"]["by_source"][x["source"]]
        assert (row["inputs"], row["accepted"], row["rejected"], row["rows"]) == (
            x["inputs"], x["accepted"], x["rejected"], x["rows"])
    build = r["accounting"]["build"]
    assert build["totals"]["records"] == len(manifest)
    rejects = pd.read_parquet(built_corpus / "rejects.parquet")
    record_rejects = rejects[~rejects.locator.str.contains("#")]
    assert build["totals"]["rejected"] == len(record_rejects)
    assert build["totals"]["accepted"] == len(manifest) - len(record_rejects)
    assert build["totals"]["lost"] == build["totals"]["doubled"] == 0
    assert all(x["ok"] for x in r["accounting"]["summary_agreement"])

    # the build's run summary, as summary.json has it
    summary = json.loads((built_corpus / "summary.json").read_text())
    assert {x["stage"]: x["task_seconds"] for x in r["run"]["stages"]} == pytest.approx(
        summary["stage_seconds"])
    assert r["run"]["wall_seconds"] == summary["run"]["wall_seconds"]
    assert r["run"]["audit"]["clips_decoded"] == len(s)  # decode_fraction 1.0
    assert r["run"]["audit"]["bytes_read"] == t["bytes"]


def test_rejects_and_declared_metadata_of_bad_inputs(audit_ray, reference_build, build_inputs,
                                                     tmp_path):
    r = audit(reference_build, tmp_path)
    assert r["verdict"] == "pass", [p["message"] for p in problems(r)][:5]
    acc = r["accounting"]
    got = {(x["stage"], x["reason"]): x for x in acc["rejects"]["by_reason"]}
    assert {k: v["count"] for k, v in got.items()} == dict(Counter(build_inputs.bad.values()))
    for (stage, reason), x in got.items():
        ids = {rid for rid, sr in build_inputs.bad.items() if sr == (stage, reason)}
        assert {e["record_id"] for e in x["examples"]} == ids
        assert all(e["detail"] for e in x["examples"])
    build = acc["build"]
    assert build["totals"]["records"] == len(build_inputs.records)
    assert build["totals"]["accepted"] == len(build_inputs.good)
    assert build["totals"]["rejected"] == len(build_inputs.bad)
    per_source = Counter(rec["source"] for rec in build_inputs.records)
    assert {k: v["records"] for k, v in build["by_source"].items()} == dict(per_source)
    assert not acc["ingest"]["available"]  # built from a manifest made elsewhere
    # WebVid's scraped duration says 17 s; the probe measured the real 6 s
    dv = acc["declared_vs_probed"]
    rows = [x for x in dv["rows"] if x["record_id"] == "webvid:stock"]
    assert len(rows) == 1 and rows[0]["field"] == "duration"
    assert rows[0]["declared"] == 17.0 and rows[0]["probed"] == pytest.approx(6.0, abs=0.05)
    assert dv["by_source"]["webvid"]["duration"] == 1
    assert dv["mismatches"] == 1
    # no annotation stages ran: the report says so instead of drawing empty figures
    assert not r["annotations"]["annotated"]
    for name in ("events_per_long_sample", "video_text_score", "qa_per_sample"):
        assert r["distributions"][name]["count"] == 0
    assert "embedding duplicates not checked: no embeddings in the corpus" in r["duplicates"][
        "notes"]
    html = (tmp_path / "index.html").read_text()
    assert "No annotation stages ran" in html
    assert "webvid:stock" in html and "span_out_of_range" in html


def _first_member(root: Path, ext: str) -> tuple[dict, Path]:
    rows = pd.read_parquet(root / "samples.parquet").to_dict("records")
    row = next(r for r in rows if any(m["ext"] == ext for m in r["members"]))
    return row, root / row["shard"]


def truncate(root: Path) -> tuple[str, str | None]:
    row, path = _first_member(root, "mp4")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 6 // 10])
    return row["shard"], None


def flip_clip_bytes(root: Path) -> tuple[str, str | None]:
    row, path = _first_member(root, "mp4")
    m = next(m for m in row["members"] if m["ext"] == "mp4")
    data = bytearray(path.read_bytes())
    mid = m["offset"] + m["size"] // 2
    data[mid : mid + 64] = bytes(b ^ 0xFF for b in data[mid : mid + 64])
    path.write_bytes(bytes(data))
    return row["shard"], None


def flip_json_bytes(root: Path) -> tuple[str, str | None]:
    row, path = _first_member(root, "json")
    m = next(m for m in row["members"] if m["ext"] == "json")
    data = bytearray(path.read_bytes())
    data[m["offset"] : m["offset"] + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))
    return row["shard"], row["key"]


def delete_member(root: Path) -> tuple[str, str | None]:
    """Rewrite the shard with the same writer the build uses, without one sample's clip."""
    row, path = _first_member(root, "mp4")
    samples = list(iter_shard(str(path)))
    path.unlink()
    with ShardWriter(str(path), url=row["shard"]) as w:
        for key, members in samples:
            if key == row["key"]:
                members = {k: v for k, v in members.items() if k != "mp4"}
            w.add(key, members)
    return row["shard"], row["key"]


def delete_shard(root: Path) -> tuple[str, str | None]:
    row, path = _first_member(root, "mp4")
    path.unlink()
    return row["shard"], None


def stray_shard(root: Path) -> tuple[str, str | None]:
    (root / "shards" / "leftover-00000.tar").write_bytes(b"\0" * 1024)
    return "shards/leftover-00000.tar", None


@pytest.mark.parametrize("corrupt, failed, reasons", [
    (truncate, {"shard_size_checksum", "shard_structure"},
     {"size_mismatch", "checksum_mismatch", "truncated"}),
    (flip_clip_bytes, {"shard_size_checksum"}, {"checksum_mismatch"}),
    (flip_json_bytes, {"shard_size_checksum", "members_decodable"},
     {"checksum_mismatch", "bad_json"}),
    (delete_member, {"shard_size_checksum", "members_present"},
     {"size_mismatch", "checksum_mismatch", "missing_member", "offset_mismatch"}),
    (delete_shard, {"shards_exist"}, {"missing_shard"}),
    (stray_shard, {"rows_match_shards"}, {"orphan_shard"}),
])
def test_a_damaged_corpus_fails_naming_the_shard_and_the_reason(
        audit_ray, built_corpus, tmp_path, corrupt, failed, reasons):
    root = copy_corpus(built_corpus, tmp_path / "corpus")
    shard, key = corrupt(root)
    r = audit(root, tmp_path / "report", "checks.decode_fraction=0.0")
    assert r["verdict"] == "fail"
    assert set(r["failed_checks"]) == failed
    mine = [p for p in problems(r) if p["shard"] == shard]
    assert reasons <= {p["reason"] for p in mine}
    assert {p["reason"] for p in problems(r)} <= reasons  # nothing else is blamed
    for p in mine:
        assert shard in p["message"]
    if key is not None:
        assert any(p["key"] == key for p in mine if p["reason"] in ("bad_json", "missing_member"))
    html = (tmp_path / "report" / "index.html").read_text()
    assert "FAIL" in html and shard in html


def test_cli_exit_status_and_the_report_path_last(audit_ray, built_corpus, tmp_path, capsys):
    root = copy_corpus(built_corpus, tmp_path / "corpus")
    out = tmp_path / "report"
    assert longvid_main(["audit", str(root), "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(out / "index.html")
    assert "verdict: PASS" in lines[-3]
    # the default decodes the clips whose hash of (seed, key) falls in the first 10%
    keys = pd.read_parquet(root / "samples.parquet").key
    picked = sum(picked_for_decode(k, 0.1, 0) for k in keys)
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["audit"]["clips_decoded"] == picked < len(keys)
    assert longvid_main(["audit", str(root), "--deep", "--out", str(out)]) == 0
    capsys.readouterr()
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["audit"]["clips_decoded"] == len(keys)
    shard, _ = truncate(root)
    assert longvid_main(["audit", str(root), "report.bins=5", "--out", str(out)]) == 1
    text = capsys.readouterr().out
    assert text.strip().splitlines()[-1] == str(out / "index.html")
    assert "[FAIL] Shards are complete, well-formed tars" in text and shard in text
    assert len(json.loads((out / "report.json").read_text())["distributions"]["duration"][
        "counts"]) == 5
    assert longvid_main(["audit", str(tmp_path / "nowhere"), "--out", str(out)]) == 1
    assert "not a corpus written by `longvid build`" in capsys.readouterr().err
    assert longvid_main(["audit", str(root), "checks.nope=1", "--out", str(out)]) == 2


def test_a_clip_that_does_not_decode_is_named(audit_ray, built_corpus, tmp_path):
    """The tar and the index agree (the shard is rewritten and re-indexed), only the clip's
    bytes are not a video any more: only decoding finds it."""
    root = copy_corpus(built_corpus, tmp_path / "corpus")
    rows = pd.read_parquet(root / "samples.parquet").to_dict("records")
    row = next(r for r in rows if r["bucket"] == "short")
    path = root / row["shard"]
    samples = list(iter_shard(str(path)))
    path.unlink()
    with ShardWriter(str(path), url=row["shard"]) as w:
        for key, members in samples:
            if key == row["key"]:
                members = {**members, "mp4": bytes(len(members["mp4"]))}  # zeros, same size
            w.add(key, members)
        info = w.close()
    index = read_index(str(root))
    write_index(str(root), [info if s.url == info.url else s for s in index.shards],
                name=index.name)
    r = audit(root, tmp_path / "report", "checks.decode_fraction=1.0")
    assert r["failed_checks"] == ["members_decodable"]
    (p,) = problems(r)
    assert (p["shard"], p["key"], p["reason"]) == (row["shard"], row["key"], "undecodable")
    assert f"{root / row['shard']}: {row['key']}.mp4" in p["message"]


def _add_duplicates(root: Path, lineage: dict) -> tuple[str, str, str]:
    """Two copies of a short sample from 'other videos', written with the build's own shard,
    index and table writers: one byte-identical clip, one re-encoded whose embedding comes
    from the corpus's model (as the embed stage would compute it)."""
    from longvid.audit.eval_embed import EvalEmbedder

    rows = pd.read_parquet(root / "samples.parquet").to_dict("records")
    src = next(r for r in rows if r["bucket"] == "short" and r["duration"] >= 3
               and _structured_frames(r) == 4)
    members = {m["ext"]: read_member(str(root), src, m["ext"]) for m in src["members"]}
    clip = root / "orig.mp4"
    clip.write_bytes(members["mp4"])
    reenc = root / "reenc.mp4"
    run_ffmpeg(["-y", "-i", str(clip), "-c:v", "libx264", "-crf", "30", "-pix_fmt", "yuv420p",
                "-an", str(reenc)], uri=str(clip), reason="reencode")
    _, emb = EvalEmbedder(lineage, window_s=1e9, frames_per_window=4).embed(str(reenc))
    reenc_fp = _fingerprint_of(reenc)
    new = []
    index = read_index(str(root))
    url = "shards/zz-copies-00000.tar"
    with ShardWriter(str(root / url), url=url) as w:
        for vid, mp4, vec in (("copy", members["mp4"], None), ("reenc", reenc.read_bytes(),
                                                               emb[0])):
            key = f"generic_{vid}_000000000_{int(round(src['duration'] * 1000)):09d}"
            meta = json.loads(members["json"])
            meta.update(key=key, video_id=vid, record_id=f"generic:{vid}", source="generic")
            m = {**members, "json": json.dumps(meta).encode(), "mp4": mp4}
            if vec is not None:
                m.pop("emb.npy", None)
            locs = w.add(key, m)
            extra = json.loads(src["extra"])
            if vec is not None:
                extra["embedding"] = [float(x) for x in vec]
                extra["scores"]["clip_sha256"] = None
                extra["fingerprint"] = reenc_fp  # what the build's decode pass computes
            new.append({**src, "fingerprint": None,  # an older corpus's place: extra
                        "key": key, "shard": url, "video_id": vid, "source": "generic",
                        "record_id": f"generic:{vid}", "members": [x.as_dict() for x in locs],
                        "extra": json.dumps(extra)})
        info = w.close()
    write_index(str(root), [*index.shards, info], name=index.name)
    write_table(str(root / "samples.parquet"), rows + new, SAMPLES_SCHEMA)
    clip.unlink()
    reenc.unlink()
    return src["key"], new[0]["key"], new[1]["key"]


def _fingerprint_of(path: Path) -> dict[str, str]:
    """The perceptual fingerprint of a whole clip, as the build's decode pass computes it."""
    from longvid.dedup.fingerprint import clip_fingerprint, frame_hashes, to_hex
    from longvid.media.decode import iter_frames

    frames = list(iter_frames(str(path), size=(64, 36), threads=1))
    h, c = frame_hashes(np.stack([f.image for f in frames]))
    times = np.asarray([f.time for f in frames])
    fp = clip_fingerprint(times, h, c, 0.0, float(times[-1]) + 1e-3)
    assert fp is not None
    return to_hex(fp)


def test_exact_and_near_duplicates_are_found(audit_ray, built_corpus, tmp_path):
    root = copy_corpus(built_corpus, tmp_path / "corpus")
    row = pd.read_parquet(root / "samples.parquet").iloc[0].to_dict()
    lineage = json.loads(read_member(str(root), row, "json"))["embedding"]
    orig, copy, reenc = _add_duplicates(root, lineage)
    # the tiny random model puts unrelated clips at cosine ~0.95-0.99: only near-identical
    # pictures clear 0.999 with it (a real open_clip model separates them at ~0.9)
    r = audit(root, tmp_path / "report", "duplicates.near_cosine=0.999")
    d = r["duplicates"]
    (g,) = [g for g in d["list"] if orig in {g["kept"], *(m["key"] for m in g["members"])}]
    members = {m["key"]: m for m in g["members"]}
    assert {g["kept"], *members} == {orig, copy, reenc}
    assert g["kept"] == min(orig, copy, reenc)  # the first key stays
    byte_twin = copy if g["kept"] == orig else orig
    assert "exact" in members[byte_twin]["signal"].split("+")
    # the sample corpus's fine patterns average out at the decode pass's 64x36, so a crf-30
    # re-encode of them is found by its embedding (fingerprints of re-encodes: test_dedup_video)
    assert "embedding" in members[reenc]["signal"].split("+")
    assert members[reenc]["cosine"] >= 0.999
    assert d["by_signal"]["exact"] >= 1 and d["checked"]["exact_pairs"] >= 1
    # the duplicates table next to the report holds the same rows
    table = pd.read_parquet(tmp_path / "report" / "duplicates.parquet")
    assert set(table.key[table.kept_key == g["kept"]]) == set(members)
    # the integrity checks hold (the copies are well-formed samples), but the samples table
    # no longer agrees with the build's summary, and the audit says so
    assert r["failed_checks"] == ["accounting"]
    assert {p["reason"] for p in problems(r)} == {"summary_mismatch"}


def _timings_dropped(report: dict) -> dict:
    """The report without what measures this run's speed."""
    out = json.loads(json.dumps(report))
    for k in ("wall_seconds", "shard_pass_seconds", "mb_per_second", "task_seconds",
              "duplicates_seconds", "leakage_seconds", "gallery_seconds", "scan_seconds",
              "report_seconds", "part_seconds"):
        out["run"]["audit"].pop(k, None)
    return out


def test_a_corpus_audited_twice_gives_the_same_report(clean_report, audit_ray, built_corpus,
                                                      tmp_path):
    r1, out1 = clean_report
    r2 = audit(built_corpus, tmp_path / "again", "checks.decode_fraction=1.0")
    assert _timings_dropped(r2) == _timings_dropped(r1)
    assert r1["duplicates"]["groups"] > 0  # random-weight embeddings: many near duplicates
    t1 = pd.read_parquet(out1 / "duplicates.parquet")
    assert t1.equals(pd.read_parquet(tmp_path / "again" / "duplicates.parquet"))


def row_record(root: Path, key: str) -> str:
    s = pd.read_parquet(root / "samples.parquet")
    return str(s.record_id[s.key == key].iloc[0])


def test_leakage_by_shared_youtube_ids(audit_ray, built_corpus, tmp_path):
    s = pd.read_parquet(built_corpus / "samples.parquet")
    howto = next(v for v in s.video_id[s.source == "howto100m"])
    # MiraData's clip is a YouTube video only through the video_url of its release row
    manifest = pd.read_parquet(built_corpus / "ingest" / "manifest.parquet")
    mira = manifest[manifest.raw.str.contains("youtube.com/watch")
                    & (manifest.source == "miradata")].iloc[0]
    yt = json.loads(mira.raw)["video_url"].rsplit("=", 1)[1]
    eval_list = tmp_path / "videomme.json"
    eval_list.write_text(json.dumps([
        {"videoID": howto, "url": f"https://www.youtube.com/watch?v={howto}", "question": "?"},
        {"videoID": "aaaaaaaaaaa", "url": "https://www.youtube.com/watch?v=aaaaaaaaaaa"},
        {"url": f"https://youtu.be/{yt}?t=4"}]))
    r = audit(built_corpus, tmp_path / "report", against=str(eval_list))
    assert r["failed_checks"] == ["no_leakage"]
    ids = r["leakage"]["ids"]
    records = {rec for m in ids["matches"] for rec in m["records"]}
    assert records == {f"howto100m:{howto}", str(mira.record_id)}
    leaked = s[s.record_id.isin(records)]
    assert ids["samples"] == len(leaked)
    assert ids["hours"] == pytest.approx(leaked.duration.sum() / 3600, abs=1e-6)
    msgs = [p["message"] for p in checks(r)["no_leakage"]["problems"]]
    assert any(howto in m for m in msgs) and any(str(mira.record_id) in m for m in msgs)


def _structured_frames(row: dict) -> int:
    """Fingerprint frames with structure (a flat picture hashes to 0)."""
    from longvid.dedup.fingerprint import from_bytes

    fp = from_bytes(row.get("fingerprint"))  # a build's own column
    return 0 if fp is None else int((fp[0] != 0).sum())


def test_leakage_by_embedding_of_evaluation_videos(audit_ray, built_corpus, tmp_path):
    s = pd.read_parquet(built_corpus / "samples.parquet").to_dict("records")
    row = next(r for r in s if r["bucket"] == "short" and r["duration"] >= 3
               and _structured_frames(r) == 4)
    videos = tmp_path / "eval videos"
    videos.mkdir()
    (videos / "benchmark_clip_0001.mp4").write_bytes(read_member(str(built_corpus), row, "mp4"))
    run_ffmpeg(["-y", "-i", str(videos / "benchmark_clip_0001.mp4"), "-vf", "scale=iw*3/4:-2",
                "-c:v", "libx264", "-b:v", "150k", "-an",
                str(videos / "benchmark_reencoded.mp4")], uri="reencode", reason="render_failed")
    run_ffmpeg(["-y", "-f", "lavfi", "-i", "testsrc2=size=160x90:rate=25:duration=12",
                "-c:v", "libx264", "-pix_fmt", "yuv420p", str(videos / "unrelated.mp4")],
               uri="testsrc2", reason="render_failed")
    (videos / "notes.txt").write_text("not a video")
    r = audit(built_corpus, tmp_path / "report", "leakage.near_cosine=0.9999",
              against=str(videos))
    emb = r["leakage"]["embeddings"]
    assert emb["checked"] and emb["videos"] == 3
    res = {Path(x["video"]).name: x for x in emb["results"]}
    assert res["benchmark_clip_0001.mp4"]["best_key"] == row["key"]
    assert res["benchmark_clip_0001.mp4"]["best_cosine"] >= 0.9999
    assert row["key"] in emb["leaked_keys"]
    assert res["unrelated.mp4"]["samples"] == 0
    assert res["unrelated.mp4"]["windows"] == 3  # two 10 s windows and the whole video
    assert r["leakage"]["ids"]["matched_items"] == 0  # file names are not corpus ids
    assert r["failed_checks"] == ["no_leakage"]
    # fingerprints: every frame of each evaluation video is hashed and matched against the
    # samples' fingerprints; the sample corpus's fine patterns hash as nearly flat at 64x36,
    # so copies of them are not asserted here (re-encoded copies of structured pictures are:
    # test_dedup_video)
    fp = r["leakage"]["fingerprints"]
    assert fp["checked"] and fp["videos"] == 3
    res = {Path(x["video"]).name: x for x in fp["results"]}
    assert res["benchmark_reencoded.mp4"]["frames"] > 0
    assert res["unrelated.mp4"]["frames"] == 300 and res["unrelated.mp4"]["samples"] == 0


def test_compare_two_builds_and_an_earlier_report(clean_report, built_corpus, tmp_path):
    r_a, out_a = clean_report
    base = copy_corpus(built_corpus, tmp_path / "older")
    s = pd.read_parquet(base / "samples.parquet")
    gone = s[s.source == "webvid"]
    write_table(str(base / "samples.parquet"), s[s.source != "webvid"].to_dict("records"),
                SAMPLES_SCHEMA)
    c = compare(figures(load_corpus(str(built_corpus))), load_baseline(str(base)))
    tot = {x["what"]: x for x in c["totals"]}
    assert tot["samples"]["delta"] == len(gone) > 0
    assert tot["hours"]["delta"] == pytest.approx(gone.duration.sum() / 3600, abs=2e-6)
    web = next(x for x in c["by_source"] if x["source"] == "webvid")
    assert web["samples"] == {"a": len(gone), "b": 0, "delta": len(gone)}
    assert c["keys"]["only_in_a"] == len(gone) and c["keys"]["only_in_b"] == 0
    assert set(c["keys"]["examples_only_in_a"]) <= set(gone.key)
    assert all(x["delta"] == 0 for x in c["rejects"])
    assert c["changed"]
    # against an earlier report.json: the same deltas, no key lists
    older = tmp_path / "older_report.json"
    r_b = json.loads((out_a / "report.json").read_text())
    r_b["totals"]["by_source"].pop("webvid")
    r_b["totals"]["samples"] -= len(gone)
    older.write_text(json.dumps(r_b))
    c2 = compare(figures(load_corpus(str(built_corpus))), load_baseline(str(older)))
    assert {x["what"]: x["delta"] for x in c2["totals"]}["samples"] == len(gone)
    assert "keys" not in c2
    same = compare(figures(load_corpus(str(built_corpus))), load_baseline(str(out_a /
                                                                              "report.json")))
    assert not same["changed"]
    assert r_a["verdict"] == "pass"


def test_compare_section_in_the_report(audit_ray, built_corpus, reference_build, tmp_path):
    r = audit(built_corpus, tmp_path / "report", "checks.decode_fraction=0.0",
              compare_with=str(reference_build))
    c = r["compare"]
    assert c["b"] == str(reference_build)
    a_n = len(pd.read_parquet(built_corpus / "samples.parquet"))
    b_n = len(pd.read_parquet(reference_build / "samples.parquet"))
    assert {x["what"]: x["delta"] for x in c["totals"]}["samples"] == a_n - b_n
    b_rej = Counter(f"{x['stage']}:{x['reason']}" for x in pd.read_parquet(
        reference_build / "rejects.parquet").to_dict("records"))
    assert {x["reason"]: x["b"] for x in c["rejects"] if x["b"]} == dict(b_rej)
    html = (tmp_path / "report" / "index.html").read_text()
    assert 'id="compare"' in html and str(reference_build) in html


def test_s3_root_gives_the_same_report_and_names_s3_shards(audit_ray, s3_server, built_corpus,
                                                          clean_report, tmp_path):
    prefix = "audit/corpus"
    for p in built_corpus.rglob("*"):
        if p.is_file():
            storage.write_bytes(s3_server.uri(f"{prefix}/{p.relative_to(built_corpus)}"),
                                p.read_bytes())
    root = s3_server.uri(prefix)
    r = audit(root, tmp_path / "report", "checks.decode_fraction=1.0")
    local, _ = clean_report
    assert r["verdict"] == "pass"
    assert r["totals"] == local["totals"]
    assert r["distributions"] == local["distributions"]
    assert r["accounting"]["build"] == local["accounting"]["build"]
    shard = read_index(root).shards[0].url
    data = storage.read_bytes(storage.join(root, shard))
    storage.write_bytes(storage.join(root, shard), data[: len(data) // 2])
    bad = audit(root, tmp_path / "report2", "checks.decode_fraction=0.0")
    assert bad["verdict"] == "fail"
    msgs = [p["message"] for p in problems(bad) if p["shard"] == shard]
    assert msgs and all(m.startswith(f"{root}/{shard}") for m in msgs)
    assert not any("/tmp/" in m for m in msgs)  # the worker's temporary copy is not named


class _Urls(HTMLParser):
    def __init__(self):
        super().__init__()
        self.attrs: list[tuple[str, str]] = []
        self.tags: Counter = Counter()

    def handle_starttag(self, tag, attrs):
        self.tags[tag] += 1
        self.attrs += [(k, v or "") for k, v in attrs if k in ("src", "href", "action", "data")]


def test_html_is_self_contained(clean_report):
    _, out = clean_report
    html = (out / "index.html").read_text()
    p = _Urls()
    p.feed(html)
    # links inside the page, and the gallery's frames: files in the report folder
    images = [v for k, v in p.attrs if k == "src"]
    assert all(v.startswith("#") for k, v in p.attrs if k != "src"), p.attrs
    assert images and all(v.startswith("gallery/") and v.endswith(".jpg") for v in images)
    assert all((out / v).stat().st_size > 300 for v in images)
    assert not p.tags["link"] and not p.tags["iframe"] and p.tags["img"] == len(images)
    assert "@import" not in html and "url(" not in html
    assert "http://" not in html.split("<main>")[0]  # header and styles
    assert p.tags["svg"] >= 10  # the charts are inline
    assert p.tags["section"] == 8


def test_report_renders_in_headless_chromium_without_console_errors(
        clean_report, audit_ray, built_corpus, tmp_path):
    from PIL import Image

    from tests.chromium import Browser, chromium_exe

    if chromium_exe() is None:
        pytest.fail("chromium is not installed: run `make sysdeps` (apt-get install chromium)")
    _, out = clean_report
    failing = copy_corpus(built_corpus, tmp_path / "corpus")
    truncate(failing)
    audit(failing, tmp_path / "failing", "checks.decode_fraction=0.0")
    pages = {"pass": out / "index.html", "fail": tmp_path / "failing" / "index.html"}
    probe = {
        "verdict": "document.getElementById('verdict').textContent",
        "box": "(() => { const r = document.getElementById('verdict').getBoundingClientRect();"
               " return [r.x + 3, r.y + r.height / 2]; })()",
        "sorted": "(() => { const t = document.querySelector('#totals table');"
                  " const th = t.querySelectorAll('th')[1]; th.click(); th.click();"
                  " return Array.from(t.tBodies[0].rows).map(r =>"
                  " Number(r.cells[1].getAttribute('data-v'))); })()",
        "svgs": "document.querySelectorAll('svg').length",
        "images": "Array.from(document.querySelectorAll('#gallery img')).map(i =>"
                  " [i.getAttribute('src'), i.complete, i.naturalWidth])",
        "gallery_sources": "Array.from(document.querySelectorAll('#gallery h3.gallery-group'))"
                           ".map(h => [h.dataset.source, h.nextElementSibling"
                           ".querySelectorAll('.sample img').length])",
    }
    sources = set(pd.read_parquet(built_corpus / "samples.parquet").source)
    with Browser(tmp_path / "chromium-profile") as browser:
        for name, page in pages.items():
            res = browser.open(page.as_uri(), width=1280, evaluate=probe)
            assert res.console_errors == [], res.console_errors
            png = tmp_path / f"{name}.png"
            png.write_bytes(res.png)
            img = Image.open(png).convert("RGB")
            assert img.size == (res.width, res.height)
            assert res.width == 1280 and res.height > 3000  # the whole page, not the viewport
            px = np.asarray(img)
            assert (px.reshape(-1, 3) < 200).any(axis=1).mean() > 0.02  # not blank
            assert len(np.unique(px.reshape(-1, 3)[::97], axis=0)) > 20  # charts in colour
            x, y = (int(v) for v in res.values["box"])
            want = {"pass": (0x1F, 0x7A, 0x3F), "fail": (0xB4, 0x23, 0x18)}[name]
            assert tuple(px[y, x]) == want  # the verdict banner is drawn in its colour
            assert res.values["verdict"].startswith(name.upper())
            assert res.values["svgs"] >= 10
            assert res.values["sorted"] == sorted(res.values["sorted"], reverse=True)
            # the gallery: every frame loaded from the report folder, every source shown
            imgs = res.values["images"]
            assert all(done and width > 0 for _, done, width in imgs), imgs
            if name == "pass":
                assert len(imgs) >= 4 * len(sources), imgs[:3]
                shown = res.values["gallery_sources"]
                assert {src for src, n in shown if n > 0} == sources, shown
