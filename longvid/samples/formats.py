"""Metadata files of the sample corpus, one builder per source, in each release's official shape.

Each builder is a pure function of a ``random.Random`` and sizes: it plans the videos (their
shots) and returns the text of every metadata file plus the planned videos. Nothing here touches
the disk or runs ffmpeg; :mod:`longvid.samples.corpus` does. Every text describes what is on screen
at its time (the shot it falls in), so models can learn from it and tests can check it.
The deliberate oddities of the real releases that the files reproduce are listed in
:data:`QUIRKS`.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import string
import uuid
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

from longvid.samples.synth import Shot, plan_shots

# The odd things real releases contain, reproduced on purpose (also written to the README).
QUIRKS: dict[str, list[str]] = {
    "ego4d": [
        "unknown extra fields on video items (tolerate them)",
        "narrations are points in time; tags #C, #O, #unsure and #summary appear in text",
        "narration_pass_2 exists for the first video only",
    ],
    "howto100m": [
        "rolling ASR: segments overlap and repeat words",
        "one segment's text is NaN (JSON NaN), not a string",
        "a float artefact such as 68.46000000000001 in one start time",
        "one video id starts with '-' and one with '_'",
        "task_ids.csv is tab-separated without a header",
    ],
    "hdvila": [
        "span strings with 1 or 5 millisecond digits and a 1-digit hour",
        "the second video's clips skip one shot (a gap between clips)",
    ],
    "miradata": [
        "clip ids N.3 and N.30 are distinct strings that collide as floats",
        "framestamp written as '[0, 480.0]' on one row",
        "one long clip whose caption columns are 120-second window lists, out of order",
    ],
    "webvid": [
        "one ISO-8601 duration is wrong on purpose (the video is shorter)",
        "the same videoid appears under two page_dirs (different videos)",
        "10M and 2M CSVs order their columns differently",
    ],
    "generic": ["manifest lines with and without the optional text and spans fields"],
}

YT_ALPHABET = string.ascii_letters + string.digits + "-_"


@dataclass
class PlannedVideo:
    """A video file to render and to describe in ground_truth.json."""

    source: str
    id: str
    rel_path: str  # relative to the corpus root, '/'-separated
    fps: Fraction
    width: int
    height: int
    shots: list[Shot]
    audio: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return self.shots[-1].end_frame

    @property
    def duration(self) -> float:
        return float(self.num_frames / self.fps)

    def t(self, frame: int) -> float:
        """Seconds at a frame index."""
        return float(frame / self.fps)


@dataclass
class SourceBuild:
    """What one builder produces: metadata file texts (by relative path) and planned videos."""

    files: dict[str, str]
    videos: list[PlannedVideo]


@dataclass(frozen=True)
class Frame:
    """Video geometry shared by a source's files."""

    width: int = 160
    height: int = 90


def _shots(
    rng: random.Random,
    seconds: float,
    fps: Fraction,
    min_s: float,
    max_s: float,
    frame_step: int = 1,
) -> list[Shot]:
    frames = round(seconds * fps) // frame_step * frame_step
    return plan_shots(rng, frames, fps, min_s=min_s, max_s=max_s, frame_step=frame_step)


def _snap_cuts(shots: list[Shot], frames: list[int], tolerance: int) -> list[Shot]:
    """Move any cut closer than ``tolerance`` frames to one of ``frames`` onto it, so that a clip
    cut at those frames never starts or ends with a sliver of a shot."""
    bounds = [s.start_frame for s in shots] + [shots[-1].end_frame]
    for f in frames:
        for j in range(1, len(bounds) - 1):
            if 0 < abs(bounds[j] - f) < tolerance:
                bounds[j] = f
    return [
        replace(s, start_frame=a, end_frame=b)
        for s, a, b in zip(shots, bounds[:-1], bounds[1:], strict=True)
        if b > a
    ]


def _yt_id(rng: random.Random, first: str | None = None) -> str:
    """An 11-character YouTube-style id; ``first`` forces the first character (e.g. '-')."""
    head = first if first is not None else rng.choice(string.ascii_letters)
    return head + "".join(rng.choice(YT_ALPHABET) for _ in range(10))


def _uuid4(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _json(obj: Any, *, indent: int | None = None) -> str:
    # allow_nan: HowTo100M's caption.json really contains NaN tokens
    return json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=True) + "\n"


def _csv(header: list[str], rows: list[list[Any]], delimiter: str = ",") -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    if header:
        writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def _sequence(shots: list[Shot]) -> str:
    """'a red screen ..., then a blue ...' for captions spanning several shots."""
    return ", then ".join(s.text() for s in shots)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


# --------------------------------------------------------------------------------------- Ego4D

_EGO_VERBS = ("looks at", "watches", "stares at", "glances at", "observes")
_EGO_SOURCES = ("unict", "iiith", "georgiatech", "cmu", "bristol", "minnesota")
_EGO_DEVICES = ("GoPro Hero 7", "GoPro Hero Black 8", "Vuzix Blade", "Pupil Invisible")


def _narration_pass(
    rng: random.Random, video: PlannedVideo, unmapped_offset: float, tagged: bool
) -> dict[str, Any]:
    narrations: list[dict[str, Any]] = []
    margin = round(0.4 * video.fps)
    for shot in video.shots:
        count = 1 if shot.num_frames < 6 * video.fps else 2
        frames = sorted(
            rng.sample(range(shot.start_frame + margin, shot.end_frame - margin), count)
        )
        for f in frames:
            # real timestamps are not frame-aligned; the jitter stays inside frame f
            ts = round(video.t(f) + rng.uniform(0.0, 0.03), 6)
            narrations.append(
                {
                    "timestamp_sec": ts,
                    "timestamp_frame": math.floor(ts * video.fps),
                    "_unmapped_timestamp_sec": round(ts + unmapped_offset, 6),
                    "narration_text": f"#C C {rng.choice(_EGO_VERBS)} {shot.text()}",
                    "annotation_uid": _uuid4(rng),
                }
            )
    if tagged and len(narrations) >= 3:
        # the other tags of the real files: another person (#O), an unsure annotator (#unsure)
        shot = _shot_at(video.shots, narrations[1]["timestamp_frame"])
        narrations[1]["narration_text"] = f"#O The man X points at {shot.text()}"
        narrations[2]["narration_text"] += " #unsure"
    summaries: list[dict[str, Any]] = []
    group: list[Shot] = []
    for i, shot in enumerate(video.shots):
        group.append(shot)
        long_enough = group[-1].end_frame - group[0].start_frame >= 30 * video.fps
        if long_enough or i == len(video.shots) - 1:
            summaries.append(
                {
                    "start_sec": video.t(group[0].start_frame),
                    "end_sec": video.t(group[-1].end_frame),
                    "summary_text": f"#summary C watches a screen that shows {_sequence(group)}",
                }
            )
            group = []
    return {"narrations": narrations, "summaries": summaries}


def _shot_at(shots: list[Shot], frame: int) -> Shot:
    return next(s for s in shots if s.start_frame <= frame < s.end_frame)


def build_ego4d(rng: random.Random, durations: tuple[float, ...], geo: Frame) -> SourceBuild:
    """``ego4d/v2/ego4d.json``, ``ego4d/v2/annotations/narration.json``, full_scale videos."""
    fps = Fraction(30)
    videos: list[PlannedVideo] = []
    items: list[dict[str, Any]] = []
    clips: list[dict[str, Any]] = []
    narration: dict[str, Any] = {}
    for i, seconds in enumerate(durations):
        uid = _uuid4(rng)
        video = PlannedVideo(
            "ego4d", uid, f"ego4d/v2/full_scale/{uid}.mp4", fps, geo.width, geo.height,
            _shots(rng, seconds, fps, 4.0, 12.0), audio=True,
        )  # fmt: skip
        videos.append(video)
        items.append(
            {
                "video_uid": uid,
                "duration_sec": video.duration,
                "scenarios": ["Watching tv", rng.choice(["Indoor", "Crafting", "Working at desk"])],
                "video_metadata": {
                    "fps": 30.0,
                    "num_frames": video.num_frames,
                    "display_resolution_width": geo.width,
                    "display_resolution_height": geo.height,
                    "mp4_duration_sec": video.duration,
                    "video_codec": "h264",
                    "sample_aspect_ratio": "1:1",
                },
                "split_em": None,
                "split_av": None if i else "train",
                "split_fho": rng.choice(["train", "val", None]),
                "video_source": rng.choice(_EGO_SOURCES),
                "device": rng.choice(_EGO_DEVICES),
                # fields an adapter does not know and must tolerate
                "origin_video_id": f"{rng.randrange(10**6):06d}_{i}",
                "s3_path": f"s3://ego4d-consortium-sharing/public/v2/full_scale/{uid}",
                "is_stereo": False,
                "has_redacted_regions": False,
                "redacted_intervals": [],
                "gaps": [],
                "concurrent_xworld": None,
            }
        )
        clips.append(
            {
                "clip_uid": _uuid4(rng),
                "video_uid": uid,
                "video_start_sec": 0.0,
                "video_end_sec": video.duration,
                "clip_start_sec": 0.0,
                "clip_end_sec": video.duration,
                "source_clip_uid": None,
            }
        )
        offset = round(rng.uniform(0.0, 3.0), 3)
        entry: dict[str, Any] = {"narration_pass_1": _narration_pass(rng, video, offset, True)}
        if i == 0:
            entry["narration_pass_2"] = _narration_pass(rng, video, offset, False)
        entry["status"] = "complete"
        narration[uid] = entry
    top = {
        "date": "2023-03-07",
        "version": "v2",
        "description": "Synthetic sample in the shape of the Ego4D v2 release "
        "(written by longvid sample-corpus; the videos show coloured test patterns)",
        "videos": items,
        "clips": clips,
        "concurrent_video_sets": [],
        "physical_settings": [],
    }
    files = {
        "ego4d/v2/ego4d.json": _json(top, indent=2),
        "ego4d/v2/annotations/narration.json": _json(narration),
    }
    return SourceBuild(files, videos)


# ----------------------------------------------------------------------------------- HowTo100M

_HOWTO_TASKS = (
    (52907, "Paint Colour Swatches", "Arts and Entertainment", "Drawing and Painting"),
    (11967, "Make A Test Pattern", "Computers and Electronics", "Video Editing"),
    (80311, "Choose Wall Paint Colours", "Home and Garden", "Interior Design"),
)


def _rolling_asr(
    rng: random.Random, video: PlannedVideo
) -> tuple[list[float], list[float], list[Any]]:
    """Overlapping YouTube-style auto captions: windows of 6 words, stepping 3 words (so each
    segment repeats half of the previous one), every segment inside the shot it talks about."""
    starts: list[float] = []
    ends: list[float] = []
    texts: list[Any] = []
    for shot in video.shots:
        words = f"here we have {shot.text()} on the screen".split()
        begin, finish = video.t(shot.start_frame) + 0.2, video.t(shot.end_frame) - 0.1
        seg_len, step = 2.6 + 0.4 * rng.random(), 1.3 + 0.3 * rng.random()
        k = 0
        while 3 * k < len(words) - 3 and begin + k * step + seg_len <= finish:
            start = round(begin + k * step, 2)
            starts.append(start)
            ends.append(round(min(start + seg_len, finish), 2))
            texts.append(" ".join(words[3 * k : 3 * k + 6]))
            k += 1
    return starts, ends, texts


def build_howto100m(rng: random.Random, durations: tuple[float, ...], geo: Frame) -> SourceBuild:
    """``howto100m/HowTo100M_v1.csv``, ``caption.json``, ``task_ids.csv``, videos/<id>.mp4."""
    rates = (Fraction(30), Fraction(30000, 1001), Fraction(25))
    firsts = ("-", "_")
    videos: list[PlannedVideo] = []
    rows: list[list[Any]] = []
    captions: dict[str, Any] = {}
    for i, seconds in enumerate(durations):
        vid = _yt_id(rng, firsts[i] if i < len(firsts) else None)
        fps = rates[i % len(rates)]
        video = PlannedVideo(
            "howto100m", vid, f"howto100m/videos/{vid}.mp4", fps, geo.width, geo.height,
            _shots(rng, seconds, fps, 5.0, 12.0), audio=True,
        )  # fmt: skip
        videos.append(video)
        task_id, _, cat1, cat2 = _HOWTO_TASKS[i % len(_HOWTO_TASKS)]
        rows.append([vid, cat1, cat2, rng.randrange(1, 200), task_id])
        starts, ends, texts = _rolling_asr(rng, video)
        if i == 0:
            # a float artefact of the real file (68.46000000000001-style): one ulp above
            starts[2] = math.nextafter(starts[2], math.inf)
            # a non-string text: an extra segment inside shot 1, text NaN
            s0 = round(video.t(video.shots[1].start_frame) + 0.3, 2)
            at = next(j for j, s in enumerate(starts) if s > s0)
            starts.insert(at, s0)
            ends.insert(at, round(s0 + 1.0, 2))
            texts.insert(at, float("nan"))
        captions[vid] = {"start": starts, "end": ends, "text": texts}
    task_rows = [[t, name] for t, name, _, _ in _HOWTO_TASKS]
    files = {
        "howto100m/HowTo100M_v1.csv": _csv(
            ["video_id", "category_1", "category_2", "rank", "task_id"], rows
        ),
        "howto100m/caption.json": _json(captions),
        "howto100m/task_ids.csv": _csv([], task_rows, delimiter="\t"),
    }
    return SourceBuild(files, videos)


# -------------------------------------------------------------------------------- HD-VILA-100M


def hms(seconds: float, ms_digits: int = 3, hour_digits: int = 2) -> str:
    """``HH:MM:SS.mmm`` with a chosen number of fraction digits (0 < ms_digits) and hour width."""
    total = round(seconds * 10**ms_digits)
    whole, frac = divmod(total, 10**ms_digits)
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h:0{hour_digits}d}:{m:02d}:{s:02d}.{frac:0{ms_digits}d}"


def build_hdvila(rng: random.Random, durations: tuple[float, ...], geo: Frame) -> SourceBuild:
    """``hdvila/hdvila_part0.jsonl``, ``hdvila_clip_text_100m.jsonl``, download_videos/<id>.mp4.

    Clips are the shots (HD-VILA cut its clips at scene changes), in time order; the first video's
    clips are all contiguous, the second skips one shot. Shots last a whole number of 0.1 s so that
    short span strings such as ``00:00:12.5`` are exact.
    """
    fps = Fraction(30)
    videos: list[PlannedVideo] = []
    meta_lines: list[str] = []
    text_lines: list[str] = []
    for i, seconds in enumerate(durations):
        vid = _yt_id(rng)
        video = PlannedVideo(
            "hdvila", vid, f"hdvila/download_videos/{vid}.mp4", fps, geo.width, geo.height,
            _shots(rng, seconds, fps, 8.0, 16.0, frame_step=3), audio=(i == 0),
        )  # fmt: skip
        videos.append(video)
        clips = []
        for n, shot in enumerate(video.shots):
            if i == 1 and n == 2:
                continue  # a gap, as when a scene was dropped
            start, end = hms(video.t(shot.start_frame)), hms(video.t(shot.end_frame))
            if i == 0 and n == 0:
                end = hms(video.t(shot.end_frame), ms_digits=5)  # 00:00:12.50000
            if i == 0 and n == 1:
                end = hms(video.t(shot.end_frame), ms_digits=1)  # 00:00:25.1
            if i == 0 and n == 2:
                start = hms(video.t(shot.start_frame), hour_digits=1)  # 0:00:25.100
            clip_id = f"{vid}.{n + 1}.mp4"
            clips.append({"clip_id": clip_id, "span": [start, end]})
            text = f"so here you can see {shot.text()}"
            text_lines.append(json.dumps({"clip_id": clip_id, "text": text}))
        url = f"https://www.youtube.com/watch?v={vid}"
        meta_lines.append(json.dumps({"video_id": vid, "url": url, "clip": clips}))
    files = {
        "hdvila/hdvila_part0.jsonl": "\n".join(meta_lines) + "\n",
        "hdvila/hdvila_clip_text_100m.jsonl": "\n".join(text_lines) + "\n",
    }
    return SourceBuild(files, videos)


# ------------------------------------------------------------------------------------ MiraData

MIRA_HEADER = [
    "clip_id", "source", "video_url", "video_id", "width", "height", "fps", "seconds",
    "timestamp", "frame_number", "framestamp", "file_path", "short_caption", "dense_caption",
    "background_caption", "main_object_caption", "style_caption", "camera_caption",
]  # fmt: skip

MIRA_WINDOW_S = 120


def mira_dirs(num: int) -> tuple[str, str]:
    """(folder, stem) of MiraData files for integer id ``num``: ``000001462``, ``000001462616``."""
    return f"{num // 1000:09d}", f"{num:012d}"


def _mira_captions(shots: list[Shot]) -> list[str]:
    """The six caption columns for the shots of one clip (or one 120-second window)."""
    colours = list(dict.fromkeys(s.colour for s in shots))
    patterns = list(dict.fromkeys(s.pattern for s in shots))
    return [
        _capitalise(_sequence(shots[:2])) + ".",
        "The video shows " + _sequence(shots) + ", with hard cuts between the patterns.",
        "The background is a flat " + ", then ".join(colours) + " colour.",
        "The main elements are the moving " + ", ".join(patterns) + " patterns.",
        "Synthetic flat-colour test-pattern graphics.",
        "Static camera; the picture changes with hard cuts.",
    ]


def _window_list(pieces: list[tuple[int, int, str]]) -> str:
    """MiraData's timed caption form: ``[|||0||| 120||| text |||,|||120||| 240||| text |||,]``."""
    return "[" + "".join(f"|||{a}||| {b}||| {text} |||," for a, b, text in pieces) + "]"


def build_miradata(
    rng: random.Random, long_clip_s: int, extra_source_s: int, geo: Frame
) -> SourceBuild:
    """``miradata/miradata_v1_9k.csv``, raw sources ``<id//1000:09d>/<id:012d>.mp4`` and clip
    files ``video_clips/<id//1000:09d>/<id:012d>.<n>.mp4`` (rendered from the same shots, so a
    clip file shows exactly its span of the source).

    Source A holds the long clip N.3 (caption columns are 120-second window lists) and the short
    clip N.30; source B (24 fps, another size) holds two short clips, the first at frame 0.
    """
    videos: list[PlannedVideo] = []
    rows: list[list[Any]] = []
    big = Frame(geo.width * 6 // 5 // 2 * 2, geo.height * 6 // 5 // 2 * 2)  # 160x90 → 192x108
    num_a, num_b = rng.randrange(1_000_000, 9_000_000), rng.randrange(1_000_000, 9_000_000)
    # (id, fps, frame, source seconds, [(n, start s, end s)], source column, url, platform id)
    yt = _yt_id(rng)
    plans = [
        (num_a, Fraction(30), geo, long_clip_s + 20, [(3, 4, 4 + long_clip_s),
         (30, long_clip_s + 6, long_clip_s + 18)], "youtube, movies",
         f"https://www.youtube.com/watch?v={yt}", yt),
        (num_b, Fraction(24), big, extra_source_s, [(1, 0, 20), (2, 20, 44)],
         "pixabay", f"https://pixabay.com/videos/id-{num_b % 1_000_000}/", str(num_b % 1_000_000)),
    ]  # fmt: skip
    for num, fps, frame, seconds, clips, platform, url, platform_id in plans:
        folder, stem = mira_dirs(num)
        edges = sorted({round(t * fps) for _, a, b in clips for t in (a, b)})
        shots = _snap_cuts(_shots(rng, seconds, fps, 4.0, 12.0), edges, round(fps))
        source = PlannedVideo(
            "miradata", str(num), f"miradata/{folder}/{stem}.mp4", fps, frame.width,
            frame.height, shots, extra={"kind": "source"},
        )  # fmt: skip
        videos.append(source)
        for n, a, b in clips:
            lo, hi = round(a * fps), round(b * fps)
            shots = [w for s in source.shots if (w := s.window(lo, hi)) is not None]
            clip_id = f"{num}.{n}"
            rel = f"video_clips/{folder}/{stem}.{n}.mp4"
            clip = PlannedVideo(
                "miradata", clip_id, f"miradata/{rel}", fps, frame.width, frame.height, shots,
                extra={"kind": "clip", "parent": source.rel_path,
                       "parent_start": source.t(lo), "parent_end": source.t(hi)},
            )  # fmt: skip
            videos.append(clip)
            if clip.duration > MIRA_WINDOW_S:
                captions = _windowed_captions(clip)
            else:
                captions = _mira_captions(shots)
            end_frame: Any = float(hi) if lo == 0 else hi  # the '[0, 558.0]' form
            rows.append([
                clip_id, platform, url, platform_id, frame.width, frame.height, float(fps),
                clip.duration, str([hms(source.t(lo)), hms(source.t(hi))]), clip.num_frames,
                f"[{lo}, {end_frame}]", rel, *captions,
            ])  # fmt: skip
    files = {"miradata/miradata_v1_9k.csv": _csv(MIRA_HEADER, rows)}
    return SourceBuild(files, videos)


def _windowed_captions(clip: PlannedVideo) -> list[str]:
    """Caption columns as 120-second window lists; windows written out of order (2nd first)."""
    windows: list[tuple[int, int, list[str]]] = []
    step = MIRA_WINDOW_S * clip.fps
    for k in range(math.ceil(clip.num_frames / step)):
        lo, hi = round(k * step), min(round((k + 1) * step), clip.num_frames)
        shots = [w for s in clip.shots if (w := s.window(lo, hi)) is not None]
        a, b = k * MIRA_WINDOW_S, round(clip.t(hi))
        windows.append((a, b, _mira_captions(shots)))
    windows[0], windows[1] = windows[1], windows[0]
    return [_window_list([(a, b, caps[col]) for a, b, caps in windows]) for col in range(6)]


# -------------------------------------------------------------------------------------- WebVid


def _iso_duration(seconds: int) -> str:
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"PT{h:02d}H{m:02d}M{s:02d}S"


def _page_dir(page: int) -> str:
    return f"{page * 50 + 1:06d}_{page * 50 + 50:06d}"


def build_webvid(rng: random.Random, count: int, geo: Frame) -> SourceBuild:
    """``webvid/results_10M_train.csv``, ``results_2M_val.csv``, videos/<page_dir>/<videoid>.mp4.

    Rows 0..count-3 go to the 10M train file, the last two to the 2M val file. Row 1's duration is
    wrong on purpose; row 3 reuses row 0's videoid under another page_dir.
    """
    fps = Fraction(25)
    videos: list[PlannedVideo] = []
    train: list[list[Any]] = []
    val: list[list[Any]] = []
    ids = [rng.randrange(1_000_000_000, 2_000_000_000) for _ in range(count)]
    if count > 3:
        ids[3] = ids[0]
    pages = rng.sample(range(1, 400), count)
    for i in range(count):
        page_dir = _page_dir(pages[i])
        vid = str(ids[i])
        video = PlannedVideo(
            "webvid", vid, f"webvid/videos/{page_dir}/{vid}.mp4", fps, geo.width, geo.height,
            _shots(rng, rng.uniform(10.0, 20.0), fps, 3.0, 8.0), extra={"page_dir": page_dir},
        )  # fmt: skip
        videos.append(video)
        stated = math.floor(video.duration)
        if i == 1:
            stated += 17  # scraped metadata can be wrong: the probed duration must win
            video.extra["metadata_duration_wrong"] = True
        video.extra["metadata_duration_s"] = stated
        name = _capitalise(_sequence(video.shots)) + "."
        slug = "-".join(video.shots[0].text().split()[:6])
        url = f"https://ak.picdn.net/shutterstock/videos/{vid}/preview/stock-footage-{slug}.mp4"
        if i < count - 2:
            train.append([vid, url, _iso_duration(stated), page_dir, name])
        else:
            val.append([vid, name, pages[i], page_dir, _iso_duration(stated), url])
    files = {
        "webvid/results_10M_train.csv": _csv(
            ["videoid", "contentUrl", "duration", "page_dir", "name"], train
        ),
        "webvid/results_2M_val.csv": _csv(
            ["videoid", "name", "page_idx", "page_dir", "duration", "contentUrl"], val
        ),
    }
    return SourceBuild(files, videos)


# ------------------------------------------------------------------------------------- generic

_GENERIC_NAMES = ("clip_a.mp4", "holiday/clip_b.mp4", "clip c.mp4", "holiday/clip_d.mp4")


def build_generic(rng: random.Random, count: int, geo: Frame) -> SourceBuild:
    """``generic/*.mp4`` and ``generic/manifest.jsonl`` (``path`` required; ``text`` and
    ``spans`` optional): the plain source for a user's own videos."""
    fps = Fraction(24)
    videos: list[PlannedVideo] = []
    lines: list[str] = []
    for i in range(count):
        name = _GENERIC_NAMES[i % len(_GENERIC_NAMES)]
        if i >= len(_GENERIC_NAMES):
            name = name.replace(".mp4", f"_{i}.mp4")
        video = PlannedVideo(
            "generic", name, f"generic/{name}", fps, geo.width, geo.height,
            _shots(rng, rng.uniform(10.0, 15.0), fps, 3.0, 6.0), audio=(i % 2 == 0),
        )  # fmt: skip
        videos.append(video)
        line: dict[str, Any] = {"path": name}
        if i % 3 != 2:
            line["text"] = _capitalise(_sequence(video.shots)) + "."
        if i % 3 == 0:
            line["spans"] = [[video.t(s.start_frame), video.t(s.end_frame)] for s in video.shots]
        lines.append(json.dumps(line))
    return SourceBuild({"generic/manifest.jsonl": "\n".join(lines) + "\n"}, videos)
