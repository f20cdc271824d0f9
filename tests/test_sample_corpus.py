"""The sample corpus: official shapes, metadata consistent with the ground truth, real videos whose
durations and cuts are what ground_truth.json says, and determinism from the seed."""

from __future__ import annotations

import ast
import colorsys
import csv
import json
import math
import re
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from longvid.cli import main
from longvid.errors import ConfigError
from longvid.samples.corpus import SCALES, plan_corpus, write_sample_corpus
from longvid.samples.synth import COLOURS, Shot, VideoSpec, render_video

THUMB = (32, 18)  # (width, height) of the luma thumbnails kept per frame


# ------------------------------------------------------------------------------------ helpers


def _truth(root: Path) -> dict[str, Any]:
    return json.loads((root / "ground_truth.json").read_text())


def _videos(root: Path, source: str) -> list[dict[str, Any]]:
    return [v for v in _truth(root)["videos"] if v["source"] == source]


def _csv_rows(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def _shot_at(video: dict[str, Any], t: float) -> dict[str, Any]:
    hits = [s for s in video["shots"] if s["start"] <= t < s["end"]]
    assert len(hits) == 1, (video["path"], t)
    return hits[0]


def _inside_one_shot(video: dict[str, Any], a: float, b: float) -> dict[str, Any]:
    shot = _shot_at(video, a)
    assert shot["start"] <= a < b <= shot["end"], (video["path"], a, b, shot)
    return shot


def _hue(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(np.asarray(rgb, dtype=float) / 255.0))[0] * 360.0


def _nearest_colour(rgb: np.ndarray) -> str:
    h = _hue(rgb)

    def dist(name: str) -> float:
        d = abs(_hue(np.array(COLOURS[name])) - h)
        return min(d, 360 - d)

    return min(COLOURS, key=dist)


def _span_seconds(text: str) -> float:
    """HH:MM:SS.fff with any number of hour or fraction digits (test-side parser)."""
    m = re.fullmatch(r"(\d+):(\d\d):(\d\d(?:\.\d+)?)", text)
    assert m, text
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])


def _yuv_to_rgb(yuv: np.ndarray) -> np.ndarray:
    """BT.601 limited range (what the encoder was given), (..., 3) YUV → (..., 3) RGB."""
    y, u, v = yuv[..., 0] - 16.0, yuv[..., 1] - 128.0, yuv[..., 2] - 128.0
    rgb = np.stack(
        [1.164 * y + 1.596 * v, 1.164 * y - 0.392 * u - 0.813 * v, 1.164 * y + 2.017 * u]
    )
    return np.clip(np.moveaxis(rgb, 0, -1), 0, 255)


def _decode(path: Path) -> dict[str, Any]:
    """Decode every frame with PyAV. ``means``: (frames, 3) mean RGB; ``thumbs``: (frames, 18, 32)
    luma sampled on a grid (small enough to keep for ~30k frames)."""
    sums: list[np.ndarray] = []
    thumbs: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        cut = (0, w * h, w * h * 5 // 4, w * h * 3 // 2)  # yuv420p: Y plane, then U, then V
        for frame in container.decode(stream):
            flat = frame.to_ndarray().ravel()
            sums.append(np.add.reduceat(flat, cut[:3], dtype=np.uint32))
            grid = flat[: w * h].reshape(h, w)[:: h // THUMB[1], :: w // THUMB[0]]
            thumbs.append(grid[: THUMB[1], : THUMB[0]])
        sizes = np.diff(cut)
        return {
            "means": _yuv_to_rgb(np.stack(sums) / sizes),
            "thumbs": np.stack(thumbs),  # uint8; callers convert one video at a time
            "rate": stream.average_rate,
            "width": w,
            "height": h,
            "duration": float(stream.duration * stream.time_base),
            "audio": len(container.streams.audio) > 0,
            "pix_fmt": stream.codec_context.pix_fmt,
        }


@pytest.fixture(scope="module")
def decoded(sample_corpus: Path) -> dict[str, dict[str, Any]]:
    """One decode pass over every video of the corpus, keyed by relative path."""
    return {v["path"]: _decode(sample_corpus / v["path"]) for v in _truth(sample_corpus)["videos"]}


# ------------------------------------------------------------------------------ files, shapes


def test_every_file_exists_and_ground_truth_lists_every_video(sample_corpus: Path) -> None:
    truth = _truth(sample_corpus)
    assert truth["seed"] == 0 and truth["scale"] == "small"
    on_disk = {p.relative_to(sample_corpus).as_posix() for p in sample_corpus.rglob("*.mp4")}
    listed = [v["path"] for v in truth["videos"]]
    assert sorted(on_disk) == sorted(listed) and len(set(listed)) == len(listed)
    assert not list(sample_corpus.rglob("*.part"))
    assert {v["source"] for v in truth["videos"]} == {
        "ego4d", "howto100m", "hdvila", "miradata", "webvid", "generic",
    }  # fmt: skip
    for rel in [p for files in truth["metadata_files"].values() for p in files]:
        assert (sample_corpus / rel).stat().st_size > 0, rel
    readme = (sample_corpus / "README.md").read_text()
    for folder in ("ego4d/", "howto100m/", "hdvila/", "miradata/", "webvid/", "generic/"):
        assert f"## {folder}" in readme
    # ≈ 10–15 minutes of distinct video at this scale (MiraData clip files repeat their sources)
    distinct = sum(v["duration"] for v in truth["videos"] if v.get("kind") != "clip")
    assert 10 * 60 <= distinct <= 16 * 60


def test_ego4d_shape(sample_corpus: Path) -> None:
    top = json.loads((sample_corpus / "ego4d/v2/ego4d.json").read_text())
    assert list(top) == [
        "date", "version", "description", "videos", "clips", "concurrent_video_sets",
        "physical_settings",
    ]  # fmt: skip
    truth = {v["id"]: v for v in _videos(sample_corpus, "ego4d")}
    assert {item["video_uid"] for item in top["videos"]} == set(truth)
    for item in top["videos"]:
        assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                            item["video_uid"])  # fmt: skip
        for key in ("duration_sec", "scenarios", "video_metadata", "split_em", "split_av",
                    "split_fho", "video_source", "device"):  # fmt: skip
            assert key in item
        assert set(item) - {
            "video_uid",
            "duration_sec",
            "scenarios",
            "video_metadata",
            "split_em",
            "split_av",
            "split_fho",
            "video_source",
            "device",
        }
        meta, gt = item["video_metadata"], truth[item["video_uid"]]
        assert meta["fps"] == 30.0 == gt["fps"]
        assert meta["num_frames"] == gt["num_frames"]
        assert (meta["display_resolution_width"], meta["display_resolution_height"]) == (
            gt["width"], gt["height"],
        )  # fmt: skip
        assert item["duration_sec"] == pytest.approx(gt["duration"])
        assert meta["mp4_duration_sec"] == pytest.approx(gt["duration"])
        assert gt["path"] == f"ego4d/v2/full_scale/{item['video_uid']}.mp4"


def test_ego4d_narrations_fall_in_the_shot_they_describe(sample_corpus: Path) -> None:
    narr = json.loads((sample_corpus / "ego4d/v2/annotations/narration.json").read_text())
    truth = {v["id"]: v for v in _videos(sample_corpus, "ego4d")}
    assert set(narr) == set(truth)
    tags = set()
    for uid, entry in narr.items():
        video = truth[uid]
        assert entry["status"] == "complete"
        passes = [k for k in entry if k.startswith("narration_pass_")]
        assert "narration_pass_1" in passes
        cuts = {0.0, video["duration"], *video["cut_times"]}
        for name in passes:
            items = entry[name]["narrations"]
            assert len(items) >= len(video["shots"])  # at least one per shot
            for n in items:
                assert set(n) == {"timestamp_sec", "timestamp_frame", "_unmapped_timestamp_sec",
                                  "narration_text", "annotation_uid"}  # fmt: skip
                shot = _shot_at(video, n["timestamp_sec"])
                assert shot["text"] in n["narration_text"]
                assert n["timestamp_frame"] == math.floor(n["timestamp_sec"] * 30)
                tags.update(re.findall(r"#\w+", n["narration_text"]))
            for s in entry[name]["summaries"]:
                assert s["summary_text"].startswith("#summary C ")
                assert s["start_sec"] in cuts and s["end_sec"] in cuts
                inside = [x for x in video["shots"]
                          if s["start_sec"] <= x["start"] and x["end"] <= s["end_sec"]]  # fmt: skip
                assert inside and all(x["text"] in s["summary_text"] for x in inside)
    assert {"#C", "#O", "#unsure"} <= tags
    assert sum("narration_pass_2" in e for e in narr.values()) == 1


def test_howto100m_shape_and_rolling_asr(sample_corpus: Path) -> None:
    root = sample_corpus / "howto100m"
    header, rows = _csv_rows(root / "HowTo100M_v1.csv")
    assert header == ["video_id", "category_1", "category_2", "rank", "task_id"]
    truth = {v["id"]: v for v in _videos(sample_corpus, "howto100m")}
    assert [r["video_id"] for r in rows] == list(dict.fromkeys(r["video_id"] for r in rows))
    assert {r["video_id"] for r in rows} == set(truth)
    for vid in truth:
        assert re.fullmatch(r"[A-Za-z0-9_-]{11}", vid)
        assert (root / "videos" / f"{vid}.mp4").is_file()
    dash = [vid for vid in truth if vid.startswith("-")]
    assert len(dash) == 1 and (root / "videos" / f"{dash[0]}.mp4").stat().st_size > 1000
    tasks = dict(line.split("\t") for line in (root / "task_ids.csv").read_text().splitlines())
    assert all(r["task_id"] in tasks for r in rows)

    raw = (root / "caption.json").read_text()
    captions = json.loads(raw)  # Python reads the NaN token as float('nan')
    assert set(captions) == set(truth)
    assert raw.count("NaN") == 1
    assert re.search(r"\d+\.\d*0000000000\d", raw), "no float artefact like 68.46000000000001"
    nan_count = overlaps = 0
    for vid, cap in captions.items():
        assert set(cap) == {"start", "end", "text"}
        assert len(cap["start"]) == len(cap["end"]) == len(cap["text"]) > 0
        video = truth[vid]
        assert cap["start"] == sorted(cap["start"])
        for i, (a, b, text) in enumerate(zip(cap["start"], cap["end"], cap["text"], strict=True)):
            shot = _inside_one_shot(video, a, b)
            if not isinstance(text, str):
                assert math.isnan(text)
                nan_count += 1
                continue
            assert text in f"here we have {shot['text']} on the screen"
            overlaps += i > 0 and a < cap["end"][i - 1]
    assert nan_count == 1
    assert overlaps > 10  # rolling captions overlap, as YouTube ASR does


def test_hdvila_spans_are_the_shots(sample_corpus: Path) -> None:
    root = sample_corpus / "hdvila"
    lines = [json.loads(x) for x in (root / "hdvila_part0.jsonl").read_text().splitlines()]
    texts = {
        d["clip_id"]: d["text"]
        for d in map(json.loads, (root / "hdvila_clip_text_100m.jsonl").read_text().splitlines())
    }
    truth = {v["id"]: v for v in _videos(sample_corpus, "hdvila")}
    assert {d["video_id"] for d in lines} == set(truth)
    odd_spans = 0
    longest_run = 0
    for d in lines:
        assert set(d) == {"video_id", "url", "clip"}
        video = truth[d["video_id"]]
        assert (root / "download_videos" / f"{d['video_id']}.mp4").is_file()
        prev_end, run = None, 0
        for clip in d["clip"]:
            assert re.fullmatch(re.escape(d["video_id"]) + r"\.\d+\.mp4", clip["clip_id"])
            a, b = (_span_seconds(x) for x in clip["span"])
            odd_spans += sum(not re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}", x) for x in clip["span"])
            shot = _shot_at(video, a + 1e-3)
            assert a == pytest.approx(shot["start"], abs=1e-3)
            assert b == pytest.approx(shot["end"], abs=1e-3)
            assert shot["text"] in texts[clip["clip_id"]]
            assert prev_end is None or a >= prev_end - 1e-6  # time order
            run = run + 1 if prev_end is not None and abs(a - prev_end) < 1e-6 else 1
            longest_run = max(longest_run, run)
            prev_end = b
    assert longest_run >= 4
    assert odd_spans >= 2
    assert set(texts) == {c["clip_id"] for d in lines for c in d["clip"]}


def test_miradata_shape_and_times(sample_corpus: Path) -> None:
    root = sample_corpus / "miradata"
    header, rows = _csv_rows(root / "miradata_v1_9k.csv")
    assert header == [
        "clip_id", "source", "video_url", "video_id", "width", "height", "fps", "seconds",
        "timestamp", "frame_number", "framestamp", "file_path", "short_caption", "dense_caption",
        "background_caption", "main_object_caption", "style_caption", "camera_caption",
    ]  # fmt: skip
    truth = {v["path"]: v for v in _videos(sample_corpus, "miradata")}
    ids = [r["clip_id"] for r in rows]
    assert len(set(ids)) == len(ids) > len({float(x) for x in ids})  # N.3 vs N.30 collide
    windowed = 0
    for r in rows:
        num = int(r["clip_id"].split(".")[0])
        source_rel = f"miradata/{num // 1000:09d}/{num:012d}.mp4"
        clip_rel = f"miradata/{r['file_path']}"
        assert (
            r["file_path"]
            == f"video_clips/{num // 1000:09d}/{num:012d}.{r['clip_id'].split('.')[1]}.mp4"
        )
        clip = truth[clip_rel]
        assert clip["parent"] == source_rel and source_rel in truth
        stamps = ast.literal_eval(r["timestamp"])  # test side only; the adapter must not eval
        assert isinstance(stamps, list) and len(stamps) == 2
        assert _span_seconds(stamps[0]) == pytest.approx(clip["parent_start"], abs=1e-3)
        assert _span_seconds(stamps[1]) == pytest.approx(clip["parent_end"], abs=1e-3)
        fs = [float(x) for x in r["framestamp"].strip("[]").split(",")]
        fps = float(r["fps"])
        assert fs == [round(clip["parent_start"] * fps), round(clip["parent_end"] * fps)]
        assert float(r["seconds"]) == pytest.approx(clip["duration"])
        assert int(r["frame_number"]) == clip["num_frames"]
        assert (int(r["width"]), int(r["height"])) == (clip["width"], clip["height"])
        caps = [r[c] for c in header[12:]]
        if caps[0].startswith("[|||"):
            windowed += 1
            _check_windows(clip, caps)
        else:
            assert all(s["text"] in caps[1] for s in clip["shots"])
    assert windowed == 1
    assert any(r["framestamp"].endswith(".0]") for r in rows)  # the '[0, 558.0]' form
    assert any(r["source"] == "youtube, movies" for r in rows)


def _check_windows(clip: dict[str, Any], columns: list[str]) -> None:
    """The long row: every caption column is a list of 120-second windows, out of order, each
    window's dense caption naming every shot it overlaps."""
    assert clip["duration"] > 120
    for col in columns:
        assert col.startswith("[") and col.endswith("]")
        pieces = re.findall(r"\|\|\|(\d+)\|\|\| (\d+)\|\|\| (.*?) \|\|\|,", col)
        assert "".join(f"|||{a}||| {b}||| {t} |||," for a, b, t in pieces) == col[1:-1]
        starts = [int(a) for a, _, _ in pieces]
        assert starts != sorted(starts) and sorted(starts) == list(range(0, len(starts) * 120, 120))
        assert max(int(b) for _, b, _ in pieces) == round(clip["duration"])
    for a, b, text in re.findall(r"\|\|\|(\d+)\|\|\| (\d+)\|\|\| (.*?) \|\|\|,", columns[1]):
        overlapping = [s for s in clip["shots"] if s["start"] < int(b) and s["end"] > int(a)]
        assert overlapping and all(s["text"] in text for s in overlapping)


def test_webvid_shape_durations_and_duplicate_ids(sample_corpus: Path) -> None:
    root = sample_corpus / "webvid"
    h10, train = _csv_rows(root / "results_10M_train.csv")
    h2, val = _csv_rows(root / "results_2M_val.csv")
    assert h10 == ["videoid", "contentUrl", "duration", "page_dir", "name"]
    assert h2 == ["videoid", "name", "page_idx", "page_dir", "duration", "contentUrl"]
    truth = {v["path"]: v for v in _videos(sample_corpus, "webvid")}
    rows = train + val
    assert len(rows) == len(truth)
    wrong = 0
    for r in rows:
        video = truth[f"webvid/videos/{r['page_dir']}/{r['videoid']}.mp4"]
        m = re.fullmatch(r"PT(\d\d)H(\d\d)M(\d\d)S", r["duration"])
        assert m
        stated = int(m[1]) * 3600 + int(m[2]) * 60 + int(m[3])
        assert stated == video["metadata_duration_s"]
        if video.get("metadata_duration_wrong"):
            wrong += 1
            assert abs(stated - video["duration"]) > 5
        else:
            assert abs(stated - video["duration"]) < 1
        assert 10 <= video["duration"] <= 20
        assert all(s["text"] in r["name"].lower() for s in video["shots"])
    assert wrong == 1
    ids = [r["videoid"] for r in rows]
    dup = [x for x in set(ids) if ids.count(x) > 1]
    assert len(dup) == 1
    assert len({r["page_dir"] for r in rows if r["videoid"] == dup[0]}) == 2


def test_generic_manifest(sample_corpus: Path) -> None:
    root = sample_corpus / "generic"
    lines = [json.loads(x) for x in (root / "manifest.jsonl").read_text().splitlines()]
    truth = {v["id"]: v for v in _videos(sample_corpus, "generic")}
    assert sorted(d["path"] for d in lines) == sorted(truth)
    assert any("spans" in d for d in lines) and any("text" not in d for d in lines)
    for d in lines:
        video = truth[d["path"]]
        assert (root / d["path"]).is_file()
        if "spans" in d:
            assert d["spans"] == [[s["start"], s["end"]] for s in video["shots"]]
        if "text" in d:
            assert all(s["text"] in d["text"].lower() for s in video["shots"])


# ----------------------------------------------------------------------------- real videos


def test_videos_match_ground_truth(sample_corpus: Path, decoded: dict[str, Any]) -> None:
    for video in _truth(sample_corpus)["videos"]:
        facts = decoded[video["path"]]
        frame = 1.0 / video["fps"]
        assert len(facts["thumbs"]) == video["num_frames"], video["path"]
        assert facts["duration"] == pytest.approx(video["duration"], abs=frame)
        assert facts["rate"] == Fraction(video["fps_fraction"])
        assert (facts["width"], facts["height"]) == (video["width"], video["height"])
        assert facts["audio"] == video["has_audio"]
        assert facts["pix_fmt"] == "yuv420p"
        shots = video["shots"]
        assert shots[0]["start_frame"] == 0 and shots[-1]["end_frame"] == video["num_frames"]
        assert video["cut_frames"] == [s["start_frame"] for s in shots[1:]]
        assert video["cut_times"] == pytest.approx([f / video["fps"] for f in video["cut_frames"]])
        for a, b in zip(shots, shots[1:], strict=False):
            assert a["end_frame"] == b["start_frame"]
            assert a["colour"] != b["colour"] and a["pattern"] != b["pattern"]


def test_cuts_are_exactly_where_ground_truth_says(
    sample_corpus: Path, decoded: dict[str, Any]
) -> None:
    """The last frame before each cut shows the old shot's colour, the first frame after it the
    new one's; every frame in the middle of a shot shows its colour."""
    checked = 0
    for video in _truth(sample_corpus)["videos"]:
        means = decoded[video["path"]]["means"]
        for shot in video["shots"]:
            a, b = shot["start_frame"], shot["end_frame"]
            for f in (a, (a + b) // 2, b - 1):
                assert _nearest_colour(means[f]) == shot["colour"], (video["path"], f, shot)
            checked += 1
        for f in video["cut_frames"]:
            assert np.abs(means[f] - means[f - 1]).sum() > 20, (video["path"], f)
    assert checked > 100


def test_every_shot_moves(sample_corpus: Path, decoded: dict[str, Any]) -> None:
    """No shot is a still picture: half a second apart, the frames differ."""
    for video in _truth(sample_corpus)["videos"]:
        thumbs = decoded[video["path"]]["thumbs"].astype(np.float32)
        half = max(1, round(video["fps"] / 2))
        for shot in video["shots"]:
            a, b = shot["start_frame"], shot["end_frame"]
            diffs = [np.abs(thumbs[f + half] - thumbs[f]).mean() for f in range(a, b - half, half)]
            assert diffs and float(np.mean(diffs)) > 0.5, (video["path"], shot)


def test_mira_clip_files_show_their_span_of_the_source(
    sample_corpus: Path, decoded: dict[str, Any]
) -> None:
    clips = [v for v in _videos(sample_corpus, "miradata") if v.get("kind") == "clip"]
    assert len(clips) >= 3
    for clip in clips:
        source = decoded[clip["parent"]]["thumbs"].astype(np.float32)
        lo = round(clip["parent_start"] * clip["fps"])
        mine = decoded[clip["path"]]["thumbs"].astype(np.float32)
        assert np.abs(mine - source[lo : lo + len(mine)]).mean() < 3.0, clip["path"]


# ---------------------------------------------------------------------------- determinism, CLI


def _metadata_bytes(root: Path) -> dict[str, bytes]:
    truth = _truth(root)
    rels = [p for files in truth["metadata_files"].values() for p in files]
    return {rel: (root / rel).read_bytes() for rel in [*rels, "ground_truth.json", "README.md"]}


def test_same_seed_same_bytes_other_seed_other_files(sample_corpus: Path, tmp_path: Path) -> None:
    write_sample_corpus(tmp_path / "again", seed=0, render=False)
    write_sample_corpus(tmp_path / "other", seed=1, render=False)
    reference = _metadata_bytes(sample_corpus)
    assert _metadata_bytes(tmp_path / "again") == reference
    other = _metadata_bytes(tmp_path / "other")
    assert set(other) == set(reference)
    # every file differs except the fixed task list
    assert {k for k in reference if other[k] == reference[k]} == {"howto100m/task_ids.csv"}
    assert not list((tmp_path / "again").rglob("*.mp4"))


def test_same_plan_renders_identical_video_bytes(sample_corpus: Path, tmp_path: Path) -> None:
    """Re-render one corpus video from the plan: byte-identical to the fixture's file."""
    videos = [v for b in plan_corpus(0, SCALES["small"]) for v in b.videos]
    video = min((v for v in videos if v.audio), key=lambda v: v.num_frames)
    out = tmp_path / "again.mp4"
    render_video(VideoSpec(out, video.fps, video.width, video.height, tuple(video.shots), True))
    assert out.read_bytes() == (sample_corpus / video.rel_path).read_bytes()


def test_window_of_a_shot_keeps_its_motion_phase() -> None:
    shot = Shot(10, 50, "red", "box", "", 7)
    part = shot.window(30, 100)
    assert part == Shot(0, 20, "red", "box", "", 7, offset=20)
    assert shot.window(50, 60) is None


def test_cli_writes_metadata_and_refuses_a_foreign_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "corpus"
    assert main(["sample-corpus", str(out), "--seed", "3", "--metadata-only"]) == 0
    printed = capsys.readouterr().out
    assert str(out) in printed and re.search(r"\d+ videos, [\d.]+ h of video", printed)
    assert _truth(out)["seed"] == 3
    # an earlier sample corpus is replaced ...
    assert main(["sample-corpus", str(out), "--seed", "4", "--metadata-only"]) == 0
    assert _truth(out)["seed"] == 4
    # ... but a folder with someone's files in it is left alone
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x")
    assert main(["sample-corpus", str(foreign), "--metadata-only"]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (foreign / "keep.txt").read_text() == "x" and len(list(foreign.iterdir())) == 1


def test_bad_arguments_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="scale 'huge'"):
        write_sample_corpus(tmp_path / "a", scale="huge")
    with pytest.raises(ConfigError, match="workers=0"):
        write_sample_corpus(tmp_path / "b", workers=0)
