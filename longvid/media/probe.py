"""Measure a video: duration, frame count, keyframes, by demuxing its packets (no decoding).

Headers lie (scraped durations, patched containers, truncated downloads), so the numbers that
matter are counted from the video stream's packets, which costs one read of the file and no
decoding. What the header claims is kept next to them to record disagreements.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import av.error

from longvid.errors import MediaError
from longvid.media.container import Clock, Source, ffmpeg_reason, open_video, source_size


@dataclass
class ProbeResult:
    """What a video holds, measured. Times are seconds from the first video frame."""

    duration: float  # last frame pts + its duration - first pts (seconds)
    fps: float  # measured average: num_frames / duration
    num_frames: int  # video packets counted while demuxing
    width: int
    height: int
    codec: str  # decoder name, e.g. "h264"
    pix_fmt: str  # e.g. "yuv420p"; "unknown" when the header does not say
    keyframes: list[float]  # pts (seconds from start) of every keyframe, ascending
    has_audio: bool
    container_duration: float | None  # what the header claims (None: it claims nothing)
    container_frames: int | None  # what the header claims (None: it claims nothing)
    size_bytes: int
    start_time: float  # first video pts in seconds; every other time is relative to it
    corrupt_packets: int = 0  # packets the demuxer flagged as damaged (kept, counted)
    notes: list[str] = field(default_factory=list)  # disagreements between header and count

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _header_duration(container: Any, stream: Any) -> float | None:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return container.duration / 1_000_000  # AV_TIME_BASE
    return None


def _nominal_frame_ticks(stream: Any, clock: Clock) -> float:
    """One frame's duration in ticks from the stream's declared rate (0 when unknown)."""
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        return 0.0
    return clock.den / (clock.num * float(rate))


def probe(src: Source) -> ProbeResult:
    """Probe ``src`` (path, bytes or binary file object) by demuxing every video packet.

    Raises MediaError with reason ``unreadable`` (missing, zero-byte, not media, damaged header),
    ``no_video_stream`` (e.g. audio-only), ``truncated`` (the data ends inside a frame, as in a
    cut-short download whose index is at the front) or ``zero_duration``.
    """
    with open_video(src) as (container, stream, name):
        size = source_size(src)
        clock = Clock(stream)
        count = corrupt = untimed = 0
        first_pts: int | None = None
        last_pts: int | None = None
        last_ticks = 0
        key_pts: list[int] = []
        last_is_corrupt = False
        try:
            for packet in container.demux(stream):
                if packet.size == 0:  # the empty packet that marks the end of the stream
                    continue
                count += 1
                last_is_corrupt = bool(packet.is_corrupt)
                corrupt += last_is_corrupt
                ts = packet.pts if packet.pts is not None else packet.dts
                if ts is None:
                    untimed += 1
                    continue
                if first_pts is None or ts < first_pts:
                    first_pts = ts
                if last_pts is None or ts >= last_pts:
                    last_pts, last_ticks = ts, packet.duration or 0
                if packet.is_keyframe:
                    key_pts.append(ts)
        except av.error.FFmpegError as exc:
            reason = "truncated" if count else "unreadable"
            raise MediaError(
                name, reason, f"demuxing stopped after {count} frames: {ffmpeg_reason(exc)}"
            ) from None

        header_frames = stream.frames or None
        if last_is_corrupt:
            claimed = f" of the {header_frames} the header lists" if header_frames else ""
            raise MediaError(
                name, "truncated", f"data ends inside frame {count}{claimed} (incomplete file)"
            )
        if count == 0:
            raise MediaError(name, "zero_duration", "the video stream has no frames")

        frame_ticks = last_ticks or _nominal_frame_ticks(stream, clock)
        if first_pts is None or last_pts is None or untimed:
            # No usable timestamps: fall back on the declared rate.
            duration = clock.ticks(count * frame_ticks)
        else:
            if not frame_ticks and count > 1:
                frame_ticks = (last_pts - first_pts) / (count - 1)
            duration = clock.ticks(last_pts + frame_ticks - first_pts)
        if not duration > 0:
            raise MediaError(name, "zero_duration", f"{count} frame(s) but no measurable duration")

        keyframes = sorted({clock.seconds(p) for p in key_pts}) if not untimed else []
        header_duration = _header_duration(container, stream)
        notes = []
        if header_frames is not None and header_frames != count:
            notes.append(f"header lists {header_frames} frames, counted {count}")
        tolerance = 2 * duration / count  # two frames: headers round and may include padding
        if header_duration is not None and abs(header_duration - duration) > tolerance:
            notes.append(f"header says {header_duration:.3f}s, measured {duration:.3f}s")
        ctx = stream.codec_context
        return ProbeResult(
            duration=duration,
            fps=count / duration,
            num_frames=count,
            width=int(ctx.width),
            height=int(ctx.height),
            codec=ctx.name,
            pix_fmt=ctx.pix_fmt or "unknown",
            keyframes=keyframes,
            has_audio=len(container.streams.audio) > 0,
            container_duration=header_duration,
            container_frames=header_frames,
            size_bytes=size,
            start_time=float(clock.start_pts * clock.num / clock.den),
            corrupt_packets=corrupt,
            notes=notes,
        )
