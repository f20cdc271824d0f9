"""``longvid sample-corpus DIR``: a small corpus in all five official dataset formats (plus a
plain folder), with generated videos whose shots and cut times are known.

It is the demo's input and every later stage's test input. Layout under DIR::

    ego4d/v2/ego4d.json, ego4d/v2/annotations/narration.json, ego4d/v2/full_scale/<uid>.mp4
    howto100m/HowTo100M_v1.csv, caption.json, task_ids.csv, videos/<id>.mp4
    hdvila/hdvila_part0.jsonl, hdvila_clip_text_100m.jsonl, download_videos/<id>.mp4
    miradata/miradata_v1_9k.csv, <id//1000:09d>/<id:012d>.mp4, video_clips/...
    webvid/results_10M_train.csv, results_2M_val.csv, videos/<page_dir>/<videoid>.mp4
    generic/manifest.jsonl, generic/*.mp4
    ground_truth.json   every video: source, id, path, fps, size, duration, shots, cut times
    README.md           what each folder mimics

Everything is a function of the seed: the metadata files are byte-identical across runs, and so
are the videos for a given ffmpeg binary.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longvid.errors import ConfigError
from longvid.samples.formats import (
    QUIRKS,
    Frame,
    PlannedVideo,
    SourceBuild,
    build_ego4d,
    build_generic,
    build_hdvila,
    build_howto100m,
    build_miradata,
    build_webvid,
)
from longvid.samples.synth import COLOURS, PATTERNS, VideoSpec, render_video

MARKER = ".longvid-sample-corpus"  # says "this folder was written by sample-corpus"
SOURCES = ("ego4d", "howto100m", "hdvila", "miradata", "webvid", "generic")
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Scale:
    """How much to generate. Durations are in seconds, one entry per long video."""

    name: str
    ego4d_s: tuple[float, ...]
    howto100m_s: tuple[float, ...]
    hdvila_s: tuple[float, ...]
    mira_long_clip_s: int  # the clip with 120-second window captions (> 120)
    mira_extra_source_s: int  # the second MiraData source (≥ 44)
    webvid_count: int  # ≥ 6: four 10M train rows (one id twice), two 2M val rows
    generic_count: int
    width: int = 160
    height: int = 90


SCALES: dict[str, Scale] = {
    # 22 videos, ≈ 18 min of video (14.5 min without the MiraData clip files): the tests' input
    "small": Scale("small", (90, 75), (80, 70, 55), (75, 60), 160, 60, 6, 3),
    # 32 videos, ≈ 45 min: the demo's input
    "demo": Scale("demo", (300, 240, 180), (240, 200, 150, 120), (150, 120, 90), 260, 90, 12, 4),
}


@dataclass(frozen=True)
class CorpusSummary:
    root: Path
    videos: int
    seconds: float
    elapsed_s: float

    def line(self) -> str:
        return (
            f"{self.videos} videos, {self.seconds / 3600:.2f} h of video "
            f"({self.seconds / 60:.1f} min), {self.elapsed_s:.1f} s"
        )


def plan_corpus(seed: int, scale: Scale) -> list[SourceBuild]:
    """Every metadata file and planned video, per source. Pure: no disk, no ffmpeg.

    Each source draws from its own random stream, so changing one source's sizes leaves the
    others' files unchanged.
    """

    def rng(source: str) -> random.Random:
        return random.Random(f"longvid-sample-corpus/{seed}/{source}")

    geo = Frame(scale.width, scale.height)
    return [
        build_ego4d(rng("ego4d"), scale.ego4d_s, geo),
        build_howto100m(rng("howto100m"), scale.howto100m_s, geo),
        build_hdvila(rng("hdvila"), scale.hdvila_s, geo),
        build_miradata(rng("miradata"), scale.mira_long_clip_s, scale.mira_extra_source_s, geo),
        build_webvid(rng("webvid"), scale.webvid_count, geo),
        build_generic(rng("generic"), scale.generic_count, geo),
    ]


def ground_truth(seed: int, scale: Scale, builds: list[SourceBuild]) -> dict[str, Any]:
    """The answer key: for every video file, what is on screen when, and where the cuts are."""
    videos = sorted((v for b in builds for v in b.videos), key=lambda v: v.rel_path)
    return {
        "generator": "longvid sample-corpus",
        "generator_version": GENERATOR_VERSION,
        "seed": seed,
        "scale": scale.name,
        "metadata_files": {
            src: sorted(p for b in builds for p in b.files if p.startswith(src + "/"))
            for src in SOURCES
        },
        "vocabulary": {"colours": list(COLOURS), "patterns": list(PATTERNS)},
        "total_seconds": sum(v.duration for v in videos),
        "videos": [_video_truth(v) for v in videos],
    }


def _video_truth(v: PlannedVideo) -> dict[str, Any]:
    spec = _spec(v, Path("."))
    return {
        "source": v.source,
        "id": v.id,
        "path": v.rel_path,
        "fps": float(v.fps),
        "fps_fraction": f"{v.fps.numerator}/{v.fps.denominator}",
        "width": v.width,
        "height": v.height,
        "num_frames": v.num_frames,
        "duration": v.duration,
        "has_audio": v.audio,
        "keyframe_interval_frames": spec.gop_frames,
        "shots": [
            {
                "start": v.t(s.start_frame),
                "end": v.t(s.end_frame),
                "start_frame": s.start_frame,
                "end_frame": s.end_frame,
                "colour": s.colour,
                "pattern": s.pattern,
                "direction": s.direction,
                "text": s.text(),
            }
            for s in v.shots
        ],
        "cut_times": [v.t(s.start_frame) for s in v.shots[1:]],
        "cut_frames": [s.start_frame for s in v.shots[1:]],
        **v.extra,
    }


def _spec(v: PlannedVideo, root: Path) -> VideoSpec:
    return VideoSpec(root / v.rel_path, v.fps, v.width, v.height, tuple(v.shots), v.audio)


def _readme(seed: int, scale: Scale, builds: list[SourceBuild]) -> str:
    mimics = {
        "ego4d": "Ego4D v2: ego4d.json (videos[] with video_metadata, splits, extra fields), "
        "annotations/narration.json (dict keyed by video_uid: timestamped #C narrations and "
        "#summary windows), full_scale/<video_uid>.mp4 at 30 fps",
        "howto100m": "HowTo100M: HowTo100M_v1.csv, caption.json (one dict of overlapping "
        "auto-ASR segments), task_ids.csv, videos/<video_id>.mp4",
        "hdvila": "HD-VILA-100M: hdvila_part0.jsonl (video, url, clip spans as HH:MM:SS.mmm), "
        "hdvila_clip_text_100m.jsonl (one ASR sentence per clip), download_videos/<video_id>.mp4",
        "miradata": "MiraData v1: miradata_v1_9k.csv (18 columns, list-literal timestamps, six "
        "caption columns), raw sources <id//1000:09d>/<id:012d>.mp4 and clip files "
        "video_clips/<id//1000:09d>/<id:012d>.<n>.mp4",
        "webvid": "WebVid-10M/2M: results_10M_train.csv and results_2M_val.csv (different "
        "column orders, ISO-8601 durations), videos/<page_dir>/<videoid>.mp4",
        "generic": "a plain folder of your own videos: *.mp4 plus manifest.jsonl lines "
        '{"path": ..., "text": ... (optional), "spans": [[start, end], ...] (optional)}',
    }
    total = sum(v.duration for b in builds for v in b.videos)
    count = sum(len(b.videos) for b in builds)
    out = [
        "# longvid sample corpus",
        "",
        f"Written by `longvid sample-corpus` (seed {seed}, scale {scale.name}): {count} videos, "
        f"{total / 60:.1f} minutes. Every file has the shape of the official release it mimics; "
        "the videos are synthetic (coloured, moving test patterns cut into shots) and every text "
        "describes what is on screen at its time. `ground_truth.json` lists each video's shots, "
        "cut times and frame indices.",
        "",
        "Regenerating into this folder replaces its contents.",
        "",
    ]
    for src in SOURCES:
        out += [f"## {src}/", "", mimics[src] + ".", "", "Deliberate quirks of the real files:"]
        out += [f"- {q}" for q in QUIRKS[src]]
        out.append("")
    return "\n".join(out)


def _write_text(path: Path, text: str) -> None:
    """Atomic: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    part.write_text(text, encoding="utf-8")
    os.replace(part, path)


def _prepare(root: Path) -> None:
    """Create ``root``, or clear it if it holds an earlier sample corpus; refuse anything else."""
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root}: exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not (root / MARKER).is_file():
            raise ConfigError(
                f"{root}: folder is not empty and was not written by sample-corpus; "
                "choose a new or empty folder"
            )
        for name in (*SOURCES, "ground_truth.json", "README.md"):
            target = root / name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
    root.mkdir(parents=True, exist_ok=True)
    (root / MARKER).write_text("written by longvid sample-corpus\n", encoding="utf-8")


def write_sample_corpus(
    root: str | Path,
    *,
    seed: int = 0,
    scale: str = "small",
    workers: int = 2,
    render: bool = True,
) -> CorpusSummary:
    """Write the sample corpus under ``root`` and return a summary.

    ``render=False`` writes the metadata files, ground truth and README only (fast; used to check
    determinism). ``workers`` ffmpeg processes run at once, longest video first.
    ``ground_truth.json`` is written last, so its presence means the corpus is complete.
    """
    if scale not in SCALES:
        raise ConfigError(f"scale {scale!r}: unknown (choose one of {', '.join(SCALES)})")
    if workers < 1:
        raise ConfigError(f"workers={workers}: must be at least 1")
    started = time.perf_counter()
    spec_scale = SCALES[scale]
    root = Path(root).absolute()
    builds = plan_corpus(seed, spec_scale)
    _prepare(root)
    for build in builds:
        for rel, text in build.files.items():
            _write_text(root / rel, text)
    videos = [v for b in builds for v in b.videos]
    if render:
        specs = sorted((_spec(v, root) for v in videos), key=lambda s: -s.num_frames)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # list(): re-raise the first ffmpeg failure here
            list(pool.map(render_video, specs))
    _write_text(root / "README.md", _readme(seed, spec_scale, builds))
    truth = ground_truth(seed, spec_scale, builds)
    _write_text(root / "ground_truth.json", json.dumps(truth, indent=1) + "\n")
    return CorpusSummary(root, len(videos), truth["total_seconds"], time.perf_counter() - started)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "sample-corpus",
        help="write a sample corpus in all five official formats, with generated videos",
        description="Write a small corpus in the official shapes of Ego4D, HowTo100M, "
        "HD-VILA-100M, MiraData and WebVid (plus a plain folder), with generated videos whose "
        "shots and cut times are listed in DIR/ground_truth.json.",
    )
    p.add_argument("dir", type=Path, metavar="DIR", help="output folder (new, empty, or an "
                   "earlier sample corpus, which is replaced)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--scale", choices=sorted(SCALES), default="small",
                   help="small: ~18 min of video (tests); demo: ~45 min (default small)")  # fmt: skip
    p.add_argument("--workers", type=int, default=2, help="ffmpeg processes at once (default 2)")
    p.add_argument("--metadata-only", action="store_true",
                   help="write metadata, ground truth and README without rendering videos")  # fmt: skip
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    summary = write_sample_corpus(
        args.dir,
        seed=args.seed,
        scale=args.scale,
        workers=args.workers,
        render=not args.metadata_only,
    )
    print(f"sample corpus written to {summary.root}")
    print(summary.line())
    return 0
