"""Synthetic videos with known content: concatenated shots, each a dominant colour plus a moving
pattern, cut at exact frame indices.

One ffmpeg call renders a whole video: every shot is a small lavfi chain (a colour source, a
pattern, ``trim`` to its exact frame count) and ``concat`` joins them, so the cut frames are known
by construction. Every pattern moves (a "static video" filter must not fire) and consecutive shots
differ in colour and pattern (a content-based shot detector must find every cut). Output is
bit-exact for a given ffmpeg binary: single-threaded x264, ``+bitexact`` flags, no metadata.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from longvid.media.ffmpeg import run_ffmpeg

# Hues are spread around the wheel (≥ 25° apart) so that the mean colour of a frame names its shot.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (210, 35, 35),
    "orange": (235, 135, 25),
    "yellow": (225, 205, 30),
    "green": (40, 170, 60),
    "cyan": (30, 190, 200),
    "blue": (35, 70, 210),
    "purple": (135, 45, 190),
    "pink": (230, 90, 170),
}

# pattern → the directions it can move in ("" = the motion has no direction worth naming)
PATTERNS: dict[str, tuple[str, ...]] = {
    "box": ("",),
    "stripes": ("left", "right"),
    "checkerboard": ("up", "down"),
    "grain": ("",),
    "gradient": ("",),
    "grid": ("left", "right"),
}

# A tone per colour, so the audio track changes exactly at the cuts too.
TONES_HZ: dict[str, int] = {name: 220 + 55 * i for i, name in enumerate(COLOURS)}

AUDIO_RATE = 16000
DARK = 0.4  # the pattern's second colour is the dominant colour scaled by this


def describe(colour: str, pattern: str, direction: str = "") -> str:
    """What is on screen, in plain words: ``a red screen with dark red stripes scrolling left``."""
    a = "an" if colour[0] in "aeiou" else "a"
    if pattern == "box":
        return f"{a} {colour} screen with a white square bouncing around"
    if pattern == "stripes":
        return f"{a} {colour} screen with dark {colour} stripes scrolling to the {direction}"
    if pattern == "checkerboard":
        return f"{a} {colour} and dark {colour} checkerboard drifting {direction}"
    if pattern == "grain":
        return f"a grainy {colour} screen flickering with noise"
    if pattern == "gradient":
        return f"{a} {colour} gradient fading into dark {colour} and slowly turning"
    if pattern == "grid":
        return f"{a} {colour} screen with a white grid sliding to the {direction}"
    raise ValueError(f"unknown pattern {pattern!r}")


@dataclass(frozen=True)
class Shot:
    """Frames ``[start_frame, end_frame)`` of one video showing one colour and pattern."""

    start_frame: int
    end_frame: int
    colour: str
    pattern: str
    direction: str = ""
    variant: int = 0  # seeds the motion phase and the noise of this shot
    offset: int = 0  # frames of the pattern's motion skipped at the start (a shot cut in two)

    @property
    def num_frames(self) -> int:
        return self.end_frame - self.start_frame

    def start(self, fps: Fraction) -> float:
        return float(self.start_frame / fps)

    def end(self, fps: Fraction) -> float:
        return float(self.end_frame / fps)

    def text(self) -> str:
        return describe(self.colour, self.pattern, self.direction)

    def window(self, lo: int, hi: int) -> Shot | None:
        """The part of this shot inside frames ``[lo, hi)``, re-based so that ``lo`` is frame 0.

        The result renders the same pictures as those frames of the original (same motion phase),
        so a clip rendered from windows equals the span of its source video.
        """
        a, b = max(self.start_frame, lo), min(self.end_frame, hi)
        if a >= b:
            return None
        skip = self.offset + a - self.start_frame
        return Shot(a - lo, b - lo, self.colour, self.pattern, self.direction, self.variant, skip)


def _pick_look(rng: random.Random, prev: Shot | None) -> tuple[str, str, str]:
    colours = [c for c in COLOURS if prev is None or c != prev.colour]
    patterns = [p for p in PATTERNS if prev is None or p != prev.pattern]
    pattern = rng.choice(patterns)
    return rng.choice(colours), pattern, rng.choice(PATTERNS[pattern])


def plan_shots(
    rng: random.Random,
    num_frames: int,
    fps: Fraction,
    *,
    min_s: float,
    max_s: float,
    frame_step: int = 1,
) -> list[Shot]:
    """Split ``num_frames`` into shots of ``min_s``–``max_s`` seconds, each a whole number of
    ``frame_step`` frames (except possibly the last), consecutive shots differing in colour and
    pattern. The last shot absorbs a remainder shorter than ``min_s``."""
    lo = max(frame_step, math.ceil(min_s * fps / frame_step) * frame_step)
    hi = max(lo, math.floor(max_s * fps / frame_step) * frame_step)
    shots: list[Shot] = []
    pos = 0
    while pos < num_frames:
        length = rng.randrange(lo, hi + 1, frame_step)
        if num_frames - (pos + length) < lo:
            length = num_frames - pos
        colour, pattern, direction = _pick_look(rng, shots[-1] if shots else None)
        shots.append(Shot(pos, pos + length, colour, pattern, direction, rng.randrange(1 << 16)))
        pos += length
    return shots


@dataclass(frozen=True)
class VideoSpec:
    """Everything needed to render one video file."""

    path: Path
    fps: Fraction
    width: int
    height: int
    shots: tuple[Shot, ...]
    audio: bool = False

    @property
    def num_frames(self) -> int:
        return self.shots[-1].end_frame

    @property
    def gop_frames(self) -> int:
        """A keyframe every ~2 seconds, as streaming sites encode."""
        return max(1, round(2 * self.fps))

    @property
    def duration(self) -> float:
        return float(self.num_frames / self.fps)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "0x{:02x}{:02x}{:02x}".format(*rgb)


def _dark(rgb: tuple[int, int, int]) -> tuple[int, int, int]:
    return (round(rgb[0] * DARK), round(rgb[1] * DARK), round(rgb[2] * DARK))


def _two_tone_geq(rgb: tuple[int, int, int], cond: str) -> str:
    """geq on a gbrp frame: the colour where ``cond`` holds, its dark shade elsewhere."""
    dark = _dark(rgb)
    chans = (f"{ch}='if({cond},{rgb[i]},{dark[i]})'" for i, ch in enumerate("rgb"))
    return "format=gbrp,geq=" + ":".join(chans)


def _shot_graph(shot: Shot, label: str, spec: VideoSpec) -> str:
    """Filtergraph text producing ``[label]``: exactly ``shot.num_frames`` yuv420p frames."""
    w, h, r = spec.width, spec.height, f"{spec.fps.numerator}/{spec.fps.denominator}"
    n, skip = shot.num_frames, shot.offset
    d = f"{float((skip + n) / spec.fps) + 1.0:.3f}"  # sources run a little long; trim is exact
    rgb = COLOURS[shot.colour]
    colour = _hex(rgb)
    rng = random.Random(shot.variant)
    # scroll's positive speeds move the content left / up
    sign = -1 if shot.direction in ("right", "down") else 1
    cell = max(2, w // 16)
    tail = (
        f"format=yuv420p,trim=start_frame={skip}:end_frame={skip + n},"
        f"setpts=PTS-STARTPTS,setsar=1[{label}]"
    )
    if shot.pattern == "box":
        side = max(4, (h // 4) // 2 * 2)
        wx, wy = 1.1 + rng.random(), 1.7 + rng.random()
        px, py = rng.uniform(0, 6.28), rng.uniform(0, 6.28)
        return (
            f"color=c={colour}:s={w}x{h}:r={r}:d={d}[{label}bg];"
            f"color=c=white:s={side}x{side}:r={r}:d={d}[{label}fg];"
            f"[{label}bg][{label}fg]overlay=x='(W-w)*(0.5+0.5*sin({wx:.3f}*t+{px:.3f}))'"
            f":y='(H-h)*(0.5+0.5*sin({wy:.3f}*t+{py:.3f}))':shortest=1,{tail}"
        )
    if shot.pattern == "stripes":
        # 16 cells across, scaled up with nearest-neighbour: a seamless wrap for scroll
        return (
            f"color=c={colour}:s=16x1:r={r}:d={d},{_two_tone_geq(rgb, 'mod(X,2)')},"
            f"scale={w}:{h}:flags=neighbor,scroll=h={sign * 0.01:.3f},{tail}"
        )
    if shot.pattern == "checkerboard":
        rows = math.ceil(h / cell)
        rows += rows % 2  # an even row count wraps seamlessly
        return (
            f"color=c={colour}:s=16x{rows}:r={r}:d={d},{_two_tone_geq(rgb, 'mod(X+Y,2)')},"
            f"scale={w}:{rows * cell}:flags=neighbor,scroll=v={sign * 0.008:.3f},"
            f"crop={w}:{h}:0:0,{tail}"
        )
    if shot.pattern == "grain":
        return (
            f"color=c={colour}:s={w}x{h}:r={r}:d={d},format=yuv420p,"
            f"noise=alls=12:allf=t+u:all_seed={shot.variant},"
            f"eq=brightness='0.06*sin({5 + rng.random():.3f}*t)':eval=frame,{tail}"
        )
    if shot.pattern == "gradient":
        speed = 0.04 + 0.02 * rng.random()
        # a fixed seed: some seeds leave this source nearly still whatever the speed
        return (
            f"gradients=s={w}x{h}:r={r}:d={d}:c0={colour}:c1={_hex(_dark(rgb))}"
            f":x0=0:y0=0:x1={w}:y1={h}:speed={speed:.4f}:seed=1,{tail}"
        )
    if shot.pattern == "grid":
        return (
            f"color=c={colour}:s={w}x{h}:r={r}:d={d},"
            f"drawgrid=w={2 * cell}:h={2 * cell}:t=2:c=white@0.8,"
            f"scroll=h={sign * 0.006:.3f},{tail}"
        )
    raise ValueError(f"unknown pattern {shot.pattern!r}")


def _sample_at(frame: int, fps: Fraction) -> int:
    """Audio sample index of a video frame boundary (rounded, so shot lengths add up exactly)."""
    return math.floor(Fraction(frame) * AUDIO_RATE / fps + Fraction(1, 2))


def _audio_graph(shot: Shot, label: str, fps: Fraction) -> str:
    """The shot's tone, exactly as long as its frames. A windowed shot's tone starts afresh (only
    the picture keeps its phase; the tone's pitch is what identifies the shot)."""
    samples = _sample_at(shot.end_frame, fps) - _sample_at(shot.start_frame, fps)
    d = f"{samples / AUDIO_RATE + 1.0:.3f}"
    return (
        f"sine=f={TONES_HZ[shot.colour]}:r={AUDIO_RATE}:d={d},"
        f"atrim=end_sample={samples},asetpts=PTS-STARTPTS[{label}]"
    )


def filtergraph(spec: VideoSpec) -> str:
    """The whole ``-filter_complex`` text: shots (and tones) concatenated into [vout] ([aout])."""
    parts: list[str] = []
    pads = ""
    for i, shot in enumerate(spec.shots):
        parts.append(_shot_graph(shot, f"s{i}v", spec))
        pads += f"[s{i}v]"
        if spec.audio:
            parts.append(_audio_graph(shot, f"s{i}a", spec.fps))
            pads += f"[s{i}a]"
    outs = "[vout][aout]" if spec.audio else "[vout]"
    parts.append(f"{pads}concat=n={len(spec.shots)}:v=1:a={int(spec.audio)}{outs}")
    return ";".join(parts)


def render_args(spec: VideoSpec, out: Path) -> list[str]:
    """ffmpeg arguments (after the binary) that render ``spec`` into ``out`` (an mp4)."""
    args = ["-y", "-filter_complex_threads", "1", "-filter_complex", filtergraph(spec)]
    args += ["-map", "[vout]"]
    if spec.audio:
        args += ["-map", "[aout]", "-c:a", "aac", "-b:a", "32k", "-ac", "1"]
        args += ["-flags:a", "+bitexact"]
    g = spec.gop_frames
    args += [
        "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
        "-x264-params", f"keyint={g}:min-keyint={g}:scenecut=0",
        "-threads", "1", "-flags:v", "+bitexact", "-fflags", "+bitexact",
        "-map_metadata", "-1", "-movflags", "+faststart", "-f", "mp4", str(out),
    ]  # fmt: skip
    return args


def _part_path(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def render_video(spec: VideoSpec) -> None:
    """Render ``spec.path`` (absolute) atomically: write ``<name>.part``, then rename."""
    path = spec.path.absolute()
    path.parent.mkdir(parents=True, exist_ok=True)
    part = _part_path(path)
    run_ffmpeg(render_args(spec, part), uri=str(path), reason="render_failed")
    os.replace(part, path)
