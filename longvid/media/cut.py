"""Cut a span out of a video: stream copy (fast, keyframe-aligned) or re-encode (exact span).

``transcode`` runs the ffmpeg binary with an argument list (never a shell string), input and
output given as ``file:`` + absolute path so that no name can read as an option or a protocol;
``cut_copy`` copies packets in-process (:mod:`longvid.media.remux`). Either way the
output is written to a temporary name next to ``dst`` and renamed into place once it has been
probed, so a crash never leaves a half-written clip under the final name. Times are seconds from
the first video frame (as in :func:`longvid.media.probe.probe`); the returned
:class:`CutResult` holds the span that the clip really covers, measured on the output.
"""

from __future__ import annotations

import bisect
import functools
import math
import os
import subprocess
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from longvid.config import Section
from longvid.errors import MediaError
from longvid.media.container import TIME_EPS, Clock, Opened, open_video
from longvid.media.ffmpeg import ffmpeg_exe, run_ffmpeg
from longvid.media.probe import ProbeResult, probe
from longvid.media.remux import first_frame_at_or_after, plan_copy_open, remux_open


class EncodeProfile(Section):
    """How clips are re-encoded (``transcode``)."""

    max_short_side: int = Field(
        448, ge=16, description="shrink so the shorter side is at most this many pixels (even)"
    )
    fps_cap: float = Field(
        30.0, gt=0, description="frame rate ceiling; faster sources are resampled"
    )
    gop: int = Field(
        30, ge=1, description="keyframe interval in frames (a random seek decodes < gop frames)"
    )
    crf: int = Field(23, ge=0, le=51, description="quality (libx264 CRF, NVENC CQ); lower = better")
    preset: str = Field("veryfast", description="libx264 preset (speed vs size)")
    nvenc_preset: str = Field("p4", description="h264_nvenc preset, p1 (fastest) .. p7")
    pix_fmt: str = Field("yuv420p", description="output pixel format (yuv420p plays everywhere)")
    codec: Literal["auto", "libx264", "h264_nvenc"] = Field(
        "auto", description="auto = h264_nvenc when a CUDA GPU and an NVENC ffmpeg are present"
    )
    audio: bool = Field(False, description="keep the first audio stream (AAC) in clips")
    audio_bitrate_kbps: int = Field(96, ge=8, description="AAC bitrate when audio is kept")
    threads: int = Field(0, ge=0, description="encoder threads, 0 = ffmpeg's choice")
    timeout_s: float | None = Field(
        None, gt=0, description="give up on one cut after this many seconds (None = no limit)"
    )


@dataclass
class CutResult:
    """The span (seconds in the source) that the written clip really covers."""

    start: float
    end: float
    mode: str  # "copy" | "encode"
    info: ProbeResult | None = None  # probe of the written clip


# Demuxers that seek by timestamp search rather than an index, so a seek can land mid-GOP.
_UNINDEXED_FORMATS = {"mpegts", "mpeg", "mpegvideo", "h264", "hevc", "m4v"}


@dataclass
class _SourceInfo:
    stream_index: int
    start_pts: int  # first video pts, in stream ticks
    video_start_us: float  # first video pts, in microseconds
    container_start_us: int  # what ffmpeg's -ss is relative to
    width: int
    height: int
    fps: float | None
    duration: float | None  # header's claim, used only to reject spans past the end
    unindexed: bool  # no seek index: a timestamp seek may land inside a GOP


def _source_info(src: Path) -> _SourceInfo:
    with open_video(src) as opened:
        return _source_info_open(opened)


def _source_info_open(opened: Opened) -> _SourceInfo:
    container, stream, _name = opened
    clock = Clock(stream)
    rate = stream.average_rate or stream.guessed_rate
    duration = None
    if stream.duration and stream.time_base:
        duration = float(stream.duration * stream.time_base)
    elif container.duration:
        duration = container.duration / 1_000_000
    return _SourceInfo(
        stream_index=stream.index,
        start_pts=clock.start_pts,
        video_start_us=clock.start_pts * clock.num / clock.den * 1_000_000,
        container_start_us=container.start_time or 0,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        fps=float(rate) if rate else None,
        duration=duration,
        unindexed=bool(set(container.format.name.split(",")) & _UNINDEXED_FORMATS),
    )


def _ss_arg(info: _SourceInfo, seconds: float) -> str:
    """ffmpeg ``-ss`` for a time from the video start: ffmpeg counts from the container start
    (the earliest stream), in whole microseconds, so no float formatting can shift a keyframe."""
    return f"{round(seconds * 1_000_000 + info.video_start_us) - info.container_start_us}us"


def _us(seconds: float) -> str:
    """A duration for an ffmpeg option, in whole microseconds (never negative)."""
    return f"{max(round(seconds * 1_000_000), 0)}us"


def _check_span(name: str, start: float, end: float, info: _SourceInfo) -> None:
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end <= start:
        raise MediaError(name, "span_out_of_range", f"bad span [{start}, {end})")
    if info.duration is not None and start >= info.duration:
        raise MediaError(
            name, "span_out_of_range", f"start {start}s is past the end ({info.duration:.3f}s)"
        )


def _abs(path: Path) -> str:
    return "file:" + str(Path(path).resolve())


def _temp_next_to(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.{uuid.uuid4().hex[:12]}.part")


def _publish(name: str, tmp: Path, dst: Path) -> ProbeResult:
    """Probe the finished temp file, then rename it to ``dst``; a bad output is removed."""
    try:
        out = probe(tmp)
    except MediaError as exc:
        tmp.unlink(missing_ok=True)
        raise MediaError(
            name, "cut_failed", f"output is not a valid video: {exc.reason}: {exc.detail}"
        ) from None
    os.replace(tmp, dst)
    return out


def _run(name: str, args: list[str], tmp: Path, timeout: float | None) -> None:
    try:
        run_ffmpeg(args, uri=name, reason="cut_failed", timeout=timeout)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def keyframe_at_or_before(keyframes: Sequence[float], t: float) -> float:
    """The last keyframe time <= t (0.0 when the list is empty or starts after t)."""
    keys = sorted(keyframes)
    i = bisect.bisect_right(keys, t + TIME_EPS) - 1
    return keys[i] if i >= 0 else 0.0


def cut_copy(
    src: Path,
    dst: Path,
    start: float,
    end: float,
    keyframes: Sequence[float],
    *,
    audio: bool = False,
    opened: Opened | None = None,
) -> CutResult:
    """Copy ``[start, end)`` of ``src`` into ``dst`` (mp4) without re-encoding.

    The start snaps back to the keyframe at or before ``start`` (``keyframes`` from the probe);
    the end is the first point at or after ``end`` where the clip has no holes (the frames shown
    before ``end``, plus at most the few a B-frame group needs). The result reports that real
    span, measured by probing the output. See :mod:`longvid.media.remux` for why the copy runs
    in-process rather than through ``ffmpeg -c copy``.

    ``opened`` (``open_video(src)``'s triple, kept open by the caller) lets the many clips of
    one video share one open of the source instead of three each.
    """
    src, dst = Path(src), Path(dst)
    if opened is None:
        with open_video(src) as opened:
            return cut_copy(src, dst, start, end, keyframes, audio=audio, opened=opened)
    name = str(src)
    info = _source_info_open(opened)
    _check_span(name, start, end, info)
    real_start = keyframe_at_or_before(keyframes, start)
    plan = plan_copy_open(opened, real_start, end)
    tmp = _temp_next_to(dst)
    try:
        remux_open(opened, tmp, plan, audio=audio)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    out = _publish(name, tmp, dst)
    return CutResult(start=real_start, end=real_start + out.duration, mode="copy", info=out)


def _even(x: float) -> int:
    return max(2, 2 * int(round(x / 2)))


def encode_size(width: int, height: int, max_short_side: int) -> tuple[int, int]:
    """Output ``(width, height)``: shorter side <= max_short_side, aspect kept, both even."""
    short = min(width, height)
    scale = min(1.0, max_short_side / short) if short > 0 else 1.0
    w, h = _even(width * scale), _even(height * scale)
    if scale == 1.0:  # never enlarge to reach an even size: drop the odd line instead
        w, h = max(2, width - width % 2), max(2, height - height % 2)
    return w, h


@functools.lru_cache(maxsize=1)
def nvenc_available() -> bool:
    """True when ffmpeg can really open h264_nvenc here (a GPU with a driver, an NVENC build).

    Listing the encoder proves nothing (pip's ffmpeg lists it on machines without a GPU), so
    encode one tiny frame; skip even that when the machine shows no NVIDIA device.
    """
    if not (Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia").exists()):
        return False
    cmd = [
        ffmpeg_exe(), "-hide_banner", "-nostdin", "-loglevel", "error",
        "-f", "lavfi", "-i", "color=c=gray:s=256x256:d=0.1", "-frames:v", "1",
        "-c:v", "h264_nvenc", "-f", "null", "-",
    ]  # fmt: skip
    try:
        return subprocess.run(cmd, capture_output=True, timeout=60, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def resolve_codec(profile: EncodeProfile) -> str:
    if profile.codec == "auto":
        return "h264_nvenc" if nvenc_available() else "libx264"
    return profile.codec


# With threads > 1 x264 runs its lookahead (frame types, MB-tree) in a thread of its own
# (sync-lookahead). At the end of the stream that thread decides the last frames over however
# many frames had reached it when the flush arrived, which depends on thread timing: the same
# span gave 2-4 different files in 16 runs at threads=2 (same frames, the last GOPs a few bytes
# apart). sync-lookahead=0 runs the lookahead in the calling thread; frame threads stay, and
# the output is then a pure function of the input, the profile and the thread count.
X264_DETERMINISTIC = "sync-lookahead=0"


def _video_codec_args(codec: str, profile: EncodeProfile) -> list[str]:
    gop = str(profile.gop)
    if codec == "h264_nvenc":
        return [
            "-c:v", "h264_nvenc", "-preset", profile.nvenc_preset,
            "-rc", "vbr", "-cq", str(profile.crf), "-b:v", "0",
            "-g", gop, "-no-scenecut", "1", "-forced-idr", "1",
        ]  # fmt: skip
    args = [
        "-c:v", "libx264", "-preset", profile.preset, "-crf", str(profile.crf),
        "-g", gop, "-keyint_min", gop, "-sc_threshold", "0",
        "-x264-params", X264_DETERMINISTIC,
    ]  # fmt: skip
    if profile.threads:
        args += ["-threads", str(profile.threads)]
    return args


def transcode(
    src: Path,
    dst: Path,
    start: float,
    end: float,
    profile: EncodeProfile,
    *,
    keyframes: Sequence[float] | None = None,
) -> CutResult:
    """Re-encode ``[start, end)`` of ``src`` into ``dst`` (H.264 mp4), frame-exact.

    The clip holds the source frames shown from ``start`` (the first frame at or after it) to
    ``end``; the shorter side is scaled down to ``profile.max_short_side`` (even dimensions), the
    frame rate capped at ``profile.fps_cap``, keyframes placed every ``profile.gop`` frames and
    only there (so random access decodes few frames), and the index written first (faststart).

    ``keyframes`` (from the probe) let ffmpeg seek one GOP early and trim after decoding, which
    is exact even in containers without an index (MPEG-TS), whose timestamp seeks can land
    inside a GOP; for those the keyframes are found here when not given. For indexed containers
    (mp4, mkv, avi) the container's own seek is exact and they are optional.
    """
    src, dst = Path(src), Path(dst)
    name = str(src)
    tmp = _temp_next_to(dst)
    args, first = transcode_args(src, tmp, start, end, profile, keyframes=keyframes)
    _run(name, args, tmp, profile.timeout_s)
    out = _publish(name, tmp, dst)
    return CutResult(start=first, end=first + out.duration, mode="encode", info=out)


def transcode_args(
    src: Path,
    out: Path,
    start: float,
    end: float,
    profile: EncodeProfile,
    *,
    keyframes: Sequence[float] | None = None,
) -> tuple[list[str], float]:
    """The ffmpeg arguments that encode ``[start, end)`` of ``src`` into ``out``, and the time
    of the first frame kept (see :func:`transcode`)."""
    name = str(src)
    info = _source_info(src)
    _check_span(name, start, end, info)
    codec = resolve_codec(profile)
    w, h = encode_size(info.width, info.height, profile.max_short_side)
    # The clip is the frames with start <= pts < end (what iter_frames yields). trim compares
    # in stream ticks after rounding, so it gets exact frame times: the first frame kept and
    # the first one dropped, each less a microsecond.
    if not keyframes and info.unindexed:
        keyframes = probe(src).keyframes  # one demux pass: cheaper than a wrong cut
    key = keyframe_at_or_before(keyframes, start) if keyframes else None
    first = first_frame_at_or_after(src, start, key)
    key_end = keyframe_at_or_before(keyframes, end) if keyframes else None
    try:
        after = first_frame_at_or_after(src, end, key_end)
    except MediaError:
        after = None  # the span runs to the end of the video
    if key is not None:
        # One GOP early: unindexed containers (MPEG-TS) can land after the requested keyframe.
        seek_to = keyframe_at_or_before(keyframes or [], key - 10 * TIME_EPS) if key > 0 else 0.0
    else:
        seek_to = first
    # After the input seek ffmpeg's timestamps count from seek_to; -t only bounds the reading.
    window = f"start={_us(first - seek_to - TIME_EPS)}"
    if after is not None:
        window += f":end={_us(after - seek_to - TIME_EPS)}"
    vf = [f"trim={window}", "setpts=PTS-STARTPTS"]
    if (w, h) != (info.width, info.height):
        vf.append(f"scale={w}:{h}:flags=area")
    if info.fps is None or info.fps > profile.fps_cap + 1e-6:
        vf.append(f"fps={profile.fps_cap:g}")
    args = ["-y", "-ss", _ss_arg(info, seek_to), "-i", _abs(src), "-map", f"0:{info.stream_index}"]
    if profile.audio:
        args += ["-map", "0:a:0?", "-af", f"atrim={window},asetpts=PTS-STARTPTS"]
        args += ["-c:a", "aac", "-b:a", f"{profile.audio_bitrate_kbps}k"]
    args += ["-t", _us(end - seek_to + 1.0), "-vf", ",".join(vf)]
    args += _video_codec_args(codec, profile)
    args += [
        "-pix_fmt", profile.pix_fmt,
        "-map_metadata", "-1",
        "-movflags", "+faststart",
        "-f", "mp4", _abs(out),
    ]  # fmt: skip
    return args, first
