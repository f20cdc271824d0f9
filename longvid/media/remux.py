"""Stream copy without re-encoding, done in-process with PyAV.

Why not ``ffmpeg -ss S -i src -c copy -t D``: (1) it stops in *decode* order, so it keeps
reference frames shown after the end and drops the B-frames shown before them, leaving holes at
the tail of the clip; (2) after an input seek, Matroska sources with B-frames come without decode
timestamps and ffmpeg writes an mp4 whose edit list hides most of the frames. Here the packets
to take are chosen by display time (:func:`plan_copy`) and given consistent decode timestamps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import av
import av.error

from longvid.errors import MediaError
from longvid.media.container import (
    TIME_EPS,
    Clock,
    Opened,
    demux_from_keyframe,
    ffmpeg_reason,
    open_video,
)

# Packets read past the end of the span while looking for a clean end: more than any
# H.264/HEVC reorder depth (16), so every frame that is shown before the end has been seen.
REORDER_LOOKAHEAD = 48


@dataclass
class CopyPlan:
    """The video packets a stream copy takes: the first ``len(dts)`` packets in decode order from
    the keyframe at ``base`` (skipping packets shown before it)."""

    base: int  # pts of the first keyframe, stream ticks
    dts: list[int]  # decode timestamps to write, one per packet taken
    end: float  # seconds from the video start where the last frame taken stops being shown


def dts_for(pts: list[int]) -> list[int]:
    """Decode timestamps for packets in decode order: increasing and never after their pts.

    The k-th smallest pts, moved back by the largest reorder distance, keeps both rules.
    """
    ordered = sorted(pts)
    shift = max((o - p for o, p in zip(ordered, pts, strict=True)), default=0)
    return [o - shift for o in ordered]


def plan_copy(src: Path, start: float, end: float) -> CopyPlan:
    """Which packets to copy from the keyframe at ``start`` (a keyframe time) so that the clip
    holds every frame shown before ``end`` and nothing that needs a frame left out.

    A prefix of packets (decode order) is clean when every packet after it is shown later than
    every packet in it; the plan is the shortest clean prefix after which nothing is shown
    before ``end``. Without B-frames that is exactly the frames before ``end``.
    """
    with open_video(src) as opened:
        return plan_copy_open(opened, start, end)


def plan_copy_open(opened: Opened, start: float, end: float) -> CopyPlan:
    """:func:`plan_copy` on a source already open (``open_video``'s triple), which it seeks."""
    container, stream, name = opened
    clock = Clock(stream)
    base = clock.pts(start)
    rate = stream.average_rate or stream.guessed_rate
    frame_ticks = round(clock.den / (clock.num * float(rate))) if rate else 0
    pts: list[int] = []  # decode order
    ticks: list[int] = []
    past_end = 0
    try:
        for packet in demux_from_keyframe(container, stream, base, name=name):
            if packet.pts is None:
                raise MediaError(name, "cut_failed", "video packets without timestamps")
            if packet.pts < base:
                continue  # shown before the keyframe (open GOP): not part of the clip
            pts.append(packet.pts)
            ticks.append(packet.duration or frame_ticks)
            if clock.seconds(packet.pts) >= end - TIME_EPS:
                past_end += 1
                if past_end > REORDER_LOOKAHEAD:
                    break
    except av.error.FFmpegError as exc:
        raise MediaError(name, "cut_failed", f"reading packets: {ffmpeg_reason(exc)}") from None
    if not pts:
        raise MediaError(name, "span_out_of_range", f"no frames at or after {start}s")

    suffix_min = [math.inf] * (len(pts) + 1)
    for i in range(len(pts) - 1, -1, -1):
        suffix_min[i] = min(pts[i], suffix_min[i + 1])
    count = len(pts)
    prefix_max = -math.inf
    for k in range(1, len(pts) + 1):
        prefix_max = max(prefix_max, pts[k - 1])
        rest = suffix_min[k]  # earliest pts among the packets left out
        if rest > prefix_max and (rest == math.inf or clock.seconds(rest) >= end - TIME_EPS):
            count = k
            break
    last = max(range(count), key=pts.__getitem__)
    return CopyPlan(base=base, dts=dts_for(pts[:count]), end=clock.seconds(pts[last] + ticks[last]))


def remux(src: Path, dst: Path, plan: CopyPlan, *, audio: bool = False) -> None:
    """Write the planned video packets (and, with ``audio``, the first audio stream's packets
    shown in the same span) to ``dst`` as mp4 with the index first, starting at time 0."""
    with open_video(src) as opened:
        remux_open(opened, dst, plan, audio=audio)


def remux_open(opened: Opened, dst: Path, plan: CopyPlan, *, audio: bool = False) -> None:
    """:func:`remux` from a source already open (``open_video``'s triple), which it seeks."""
    inp, vin, name = opened
    clock = Clock(vin)
    ain = inp.streams.audio[0] if audio and inp.streams.audio else None
    try:
        out = av.open(
            "file:" + str(Path(dst).resolve()),
            "w",
            format="mp4",
            options={"movflags": "+faststart"},
        )
    except (av.error.FFmpegError, OSError) as exc:
        raise MediaError(name, "cut_failed", f"cannot write {dst}: {exc}") from None
    try:
        vout = out.add_stream_from_template(vin)
        streams: list = [vin]
        a_base = a_end = 0
        if ain is not None:
            aout = out.add_stream_from_template(ain)
            streams.append(ain)
            a_base = round(plan.base * vin.time_base / ain.time_base)
            a_end = a_base + round((plan.end - clock.seconds(plan.base)) / ain.time_base)
        wanted = len(plan.dts)
        limit = plan.end + 1.0  # streams interleave in the file; past this nothing is left
        taken = 0
        for packet in demux_from_keyframe(inp, vin, plan.base, *streams[1:], name=name):
            if packet.pts is None:
                continue
            if packet.stream is vin:
                if taken < wanted and packet.pts >= plan.base:
                    packet.dts = plan.dts[taken] - plan.base
                    packet.pts -= plan.base
                    packet.stream = vout
                    out.mux(packet)
                    taken += 1
                elif taken == wanted and clock.seconds(packet.pts) > limit:
                    break
            elif a_base <= packet.pts < a_end:
                packet.pts -= a_base
                packet.dts = packet.pts
                packet.stream = aout
                out.mux(packet)
            elif taken == wanted and packet.pts >= a_end:
                break
    except av.error.FFmpegError as exc:
        raise MediaError(name, "cut_failed", f"remuxing: {ffmpeg_reason(exc)}") from None
    finally:
        out.close()


def first_frame_at_or_after(src: Path, t: float, keyframe: float | None) -> float:
    """Time of the first frame shown at or after ``t`` (where an exact re-encode starts).

    ``keyframe`` (at or before ``t``, from the probe) makes the search exact in unindexed
    containers; without it the container's own seek is trusted.
    """
    with open_video(src) as (container, stream, name):
        clock = Clock(stream)
        if keyframe is not None:
            packets = demux_from_keyframe(container, stream, clock.pts(keyframe), name=name)
        else:
            container.seek(clock.pts(t), stream=stream, backward=True)
            packets = container.demux(stream)
        best = math.inf
        seen = 0
        try:
            for packet in packets:
                if packet.size == 0 or packet.pts is None:
                    continue
                time = clock.seconds(packet.pts)
                if time >= t - TIME_EPS:
                    best = min(best, time)
                    seen += 1
                    if seen > REORDER_LOOKAHEAD:
                        break
        except av.error.FFmpegError as exc:
            raise MediaError(name, "cut_failed", f"reading packets: {ffmpeg_reason(exc)}") from None
    if best == math.inf:
        raise MediaError(str(src), "span_out_of_range", f"no frame at or after {t}s")
    return best
