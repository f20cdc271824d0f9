"""The demo build (conf/build/demo.yaml on the small sample corpus, local Ray, every annotation
stage with tiny models): every accepted sample carries captions, events, QA and embeddings; the
corpus reads with stock webdataset; the VideoChat-Flash export of it."""

from __future__ import annotations

import glob
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml

from longvid.annotate.export import export_videochat_flash
from longvid.annotate.qa import verify
from longvid.annotate.timeline import Timeline
from longvid.cli import main
from longvid.ingest.generic import id_from_path
from longvid.media.probe import probe
from longvid.shards import read_sample
from longvid.training.data.sample import default_conversation

DIM = 64  # embed_dim of the demo's tiny open_clip


@pytest.fixture(scope="module")
def corpus(built_corpus: Path) -> tuple[Path, list[dict], dict[str, dict]]:
    rows = pq.read_table(built_corpus / "samples.parquet").to_pylist()
    metas = {r["key"]: json.loads(read_sample(str(built_corpus), {
        **r, "members": [m for m in r["members"] if m["ext"] == "json"]})["json"]) for r in rows}
    return built_corpus, rows, metas


def uncaptioned_generic_videos(sample_corpus: Path) -> set[str]:
    """Record ids of the plain-folder videos that nothing but a model could caption: listed
    without text (the demo's captioner has random weights, and random words are no caption)."""
    lines = [json.loads(x) for x in (sample_corpus / "generic" / "manifest.jsonl").read_text()
             .splitlines() if x.strip()]
    return {"generic:" + id_from_path(x["path"]) for x in lines if not x.get("text")}


def test_every_accepted_sample_has_captions_qa_and_embeddings(corpus, sample_corpus):
    root, rows, metas = corpus
    assert len(rows) > 50
    rejects = pq.read_table(root / "rejects.parquet").to_pylist()
    summary = json.loads((root / "summary.json").read_text())
    # one reject row per video listed without text, none for single samples
    assert summary["records"]["rejected"] == len(rejects) > 0
    assert all("#" not in r["locator"] for r in rejects)
    assert {(r["stage"], r["reason"]) for r in rejects} == {("filter", "filter:no_caption")}
    assert {r["record_id"] for r in rejects} == uncaptioned_generic_videos(sample_corpus)
    # QA items per task in the build summary: the samples' items, counted
    per_task = Counter(q["task"] for m in metas.values() for q in m["qa"])
    assert summary["qa_by_task"] == dict(per_task) and per_task["temporal_grounding_mc"] > 0
    for r in rows:
        m = metas[r["key"]]
        exts = {x["ext"] for x in r["members"]}
        assert {"mp4", "json", "txt", "emb.npy", "textemb.npy"} <= exts, r["key"]
        assert m["captions"] and m["caption"] and r["caption"] == m["caption"]
        assert m["events"], r["key"]
        assert m["qa"] and len(m["conversations"]) == 2 * len(m["qa"])
        assert default_conversation(m, r, "unused") == m["conversations"]  # the loader's view
        assert "embedding" not in json.loads(r["extra"])  # it has a column of its own
        assert len(r["embedding"]) == DIM
        assert m["embedding"]["dim"] == DIM and m["lineage"]["model_captions"]["decoding"][
            "do_sample"] is False
        if r["bucket"] == "long":
            assert "shotemb.npy" in exts, r["key"]


def test_a_sub_clip_never_carries_a_whole_video_caption(corpus):
    """Texts without a time range describe the whole video: they caption a sample only when it
    is the whole video."""
    _, rows, metas = corpus
    whole_captions = 0
    for r in rows:
        m = metas[r["key"]]
        video_level = {t["text"].strip() for t in m["texts"] if t.get("scope") == "video"}
        if m["caption"] in video_level:
            whole_captions += 1
            assert m["span"]["start"] <= 0.5, r["key"]
            assert m["span"]["end"] >= m["source_video"]["duration"] - 0.5, r["key"]
    assert whole_captions > 0  # WebVid names and the folder's texts, on whole videos


def test_no_random_model_text_outside_lineage(corpus):
    """The demo's captioner has random weights: its words stay in lineage."""
    _, rows, metas = corpus
    for r in rows:
        m = metas[r["key"]]
        lin = m["lineage"]["model_captions"]
        assert lin["random_weights"] is True and lin["random_text"], r["key"]
        data = json.dumps({k: m.get(k) for k in ("caption", "captions", "events", "scenes",
                                                 "qa", "conversations")}) + (r["caption"] or "")
        assert "model:random-" not in data, r["key"]
        for c in lin["random_text"]:
            assert c["text"] not in data, (r["key"], c["text"])


def test_long_samples_of_every_long_source_have_checked_qa(corpus):
    _, rows, metas = corpus
    longs = [r for r in rows if r["bucket"] == "long"]
    assert {r["source"] for r in longs} >= {"ego4d", "howto100m", "hdvila", "miradata"}
    tasks = set()
    for r in longs:
        m = metas[r["key"]]
        tl = Timeline.from_dict({"duration": m["clip"]["duration"], "events": m["events"],
                                 "scenes": m["scenes"]})
        for q in m["qa"]:
            assert verify(q, tl) is None, (r["key"], q)
            tasks.add(q["task"])
    assert tasks == {"long_video_description", "temporal_grounding", "event_relationship",
                     "scene_relationship", "event_counting", "temporal_grounding_mc",
                     "event_counting_mc"}


def test_stock_webdataset_reads_the_embeddings(corpus):
    root, rows, _ = corpus
    column = {r["key"]: np.asarray(r["embedding"], np.float32) for r in rows}
    urls = sorted(glob.glob(str(root / "shards" / "*.tar")))
    seen = 0
    for s in wds.WebDataset(urls, shardshuffle=False).decode():
        emb = s["emb.npy"]
        assert isinstance(emb, np.ndarray) and emb.shape == (DIM,)
        # the column holds float16: 11 significant bits of the same vector
        assert np.allclose(emb, column[s["__key__"]], rtol=1e-3, atol=1e-4)
        seen += 1
    assert seen == len(rows)


# ---- export ------------------------------------------------------------------------------------


def test_videochat_flash_export_of_clips(corpus, tmp_path):
    root, rows, metas = corpus
    out = tmp_path / "vcf"
    assert main(["export", "videochat-flash", str(out), "--corpus", str(root),
                 "--sampling", "first:50%"]) == 0
    doc = yaml.safe_load((out / "videochat_flash.yaml").read_text())
    entries = doc["datasets"]
    names = {Path(e["json_path"]).name for e in entries}
    assert {"long_temporal_grounding.json", "long_event_counting.json",
            "long_long_video_description.json", "short_short_caption.json",
            "long_temporal_grounding_mc.json", "long_event_counting_mc.json"} <= names
    total = 0
    for e in entries:
        assert e["sampling_strategy"] == "first:50%" and Path(e["json_path"]).is_absolute()
        assert e["data_root"] == str(out / "videos")
        records = json.loads(Path(e["json_path"]).read_text())
        for rec in records:
            total += 1
            key = rec["id"].rsplit("-", 1)[0]
            m = metas[key]
            q = m["qa"][int(rec["id"].rsplit("-", 1)[1])]
            assert rec["conversations"] == [
                {"from": "human", "value": "<image>\n" + q["question"]},
                {"from": "gpt", "value": q["answer"]}]
            assert "start" not in rec and rec["video"] == f"{m['source']}/{key}.mp4"
            if rec["task"].endswith("_mc"):  # VideoChat-Flash's multiple-choice layout
                human, gpt = (t["value"] for t in rec["conversations"])
                assert "\nOptions:\n(A) " in human and "\n(D) " in human
                assert human.endswith("Answer with the option's letter from the given choices "
                                      "directly.")
                assert gpt[:4] in ("(A) ", "(B) ", "(C) ", "(D) ")
            # the trainer joins data_root and video: that file is the sample's clip
            assert (Path(e["data_root"]) / rec["video"]).is_file()
    assert total == sum(len(m["qa"]) for m in metas.values())
    one = rows[0]
    clip = (out / "videos" / one["source"] / f"{one['key']}.mp4").read_bytes()
    assert clip == read_sample(str(root), {**one, "members": [
        m for m in one["members"] if m["ext"] == "mp4"]})["mp4"]


def test_videochat_flash_export_pointing_at_source_videos(corpus, sample_corpus, tmp_path):
    root, rows, metas = corpus
    summary = export_videochat_flash(str(root), str(tmp_path / "src"), videos="source")
    assert not (tmp_path / "src" / "videos").exists()
    doc = yaml.safe_load((tmp_path / "src" / "videochat_flash.yaml").read_text())
    # the common folder of the source videos of all five sources: the sample corpus itself
    assert {e["data_root"] for e in doc["datasets"]} == {str(sample_corpus.resolve())}
    checked = 0
    for e in doc["datasets"]:
        for rec in json.loads(Path(e["json_path"]).read_text()):
            key = rec["id"].rsplit("-", 1)[0]
            m = metas[key]
            src = Path(e["data_root"]) / rec["video"]
            assert str(src) == str(Path(m["source_uri"]))
            assert (rec["start"], rec["end"]) == (m["span"]["start"], m["span"]["end"])
            if checked < 3:  # the span lies inside the source video
                assert 0 <= rec["start"] < rec["end"] <= probe(src).duration + 1e-3
            checked += 1
    assert checked == summary["records"] and summary["samples"] == len(rows)


def test_export_refuses_a_bad_sampling_strategy(corpus, tmp_path, capsys):
    root, _, _ = corpus
    assert main(["export", "videochat-flash", str(tmp_path / "x"), "--corpus", str(root),
                 "--sampling", "sometimes"]) == 1
    assert "expected all, first:N" in capsys.readouterr().err


def test_export_of_a_missing_corpus_is_a_clear_error(tmp_path, capsys):
    assert main(["export", "videochat-flash", str(tmp_path / "x"), "--corpus",
                 str(tmp_path / "nope")]) != 0
    assert "samples.parquet" in capsys.readouterr().err


def test_relative_export_paths_resolve_from_the_output_folder(corpus, tmp_path):
    root, _, _ = corpus
    out = tmp_path / "rel"
    export_videochat_flash(str(root), str(out), relative=True)
    entries = yaml.safe_load((out / "videochat_flash.yaml").read_text())["datasets"]
    for e in entries:
        assert e["data_root"] == "videos" and e["json_path"].startswith("annotations/")
        rec = json.loads((out / e["json_path"]).read_text())[0]
        assert (out / e["data_root"] / rec["video"]).is_file()
