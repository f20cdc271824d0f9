"""``longvid infer``: answer a question about one video with a saved HiCo checkpoint.

Frames are sampled by duration (T = clamp(4 * floor(D / 4), T_min, T_max) at interval
midpoints, or exactly ``--frames``), decoded at the encoder's input size, and the prompt is the
chat template with ``<video>`` followed by the timestamp sentence. The greedy answer is printed.
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from longvid.errors import MediaError, NotFoundError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "infer",
        help="answer a question about a video with a HiCo checkpoint",
        description="Sample frames by duration, encode them with HiCo compression and print the "
        "model's greedy answer.",
    )
    p.add_argument("--checkpoint", required=True, help="directory written by save_pretrained")
    p.add_argument("--video", required=True, help="local video file")
    p.add_argument("--question", required=True, help="question or instruction")
    p.add_argument("--frames", type=int, default=None, help="exact frame count (else by duration)")
    p.add_argument("--min-frames", type=int, default=64, help="T_min of duration sampling")
    p.add_argument("--max-frames", type=int, default=512, help="T_max of duration sampling")
    p.add_argument("--dropout", action="store_true", help="progressive visual dropout in prefill")
    p.add_argument(
        "--frame-times", action="store_true", help="list every frame's time in the prompt"
    )
    p.add_argument("--max-new-tokens", type=int, default=64, help="answer length limit")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=run)


def pick_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def video_duration(path: Path) -> float:
    """Seconds of video in ``path`` (MediaError when it cannot be read)."""
    try:
        from longvid.media.probe import probe
    except ImportError:  # media layer not present: read the header with PyAV
        return _pyav_duration(path)
    return probe(path).duration


def read_frames(path: Path, times: np.ndarray, size: int) -> np.ndarray:
    """uint8 [T, size, size, 3] RGB frames shown at ``times``."""
    try:
        from longvid.media.decode import decode_at
    except ImportError:
        return _pyav_frames(path, times, size)
    return decode_at(path, [float(t) for t in times], size=(size, size))


def _pyav_duration(path: Path) -> float:
    import av

    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.duration and stream.time_base:
                return float(stream.duration * stream.time_base)
            if container.duration:
                return container.duration / 1_000_000
    except (av.error.FFmpegError, IndexError) as exc:
        raise MediaError(str(path), "unreadable", str(exc)) from None
    raise MediaError(str(path), "zero_duration", "no duration in the header")


def _pyav_frames(path: Path, times: np.ndarray, size: int) -> np.ndarray:
    """One decoding pass; for each time the last frame starting at or before it."""
    import av

    out: list[np.ndarray | None] = [None] * len(times)
    order = np.argsort(times)
    k = 0
    last = None
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            for frame in container.decode(stream):
                t = float(frame.pts * stream.time_base) if frame.pts is not None else 0.0
                while k < len(order) and times[order[k]] < t and last is not None:
                    out[order[k]] = last
                    k += 1
                if k == len(order):
                    break
                last = frame.to_ndarray(format="rgb24", width=size, height=size)
    except av.error.FFmpegError as exc:
        raise MediaError(str(path), "decode_failed", str(exc)) from None
    for j in order[k:]:
        out[j] = last
    if last is None:
        raise MediaError(str(path), "decode_failed", "no frames decoded")
    return np.stack(out)


def run(args: argparse.Namespace) -> int:
    # heavy imports here, so that `longvid --help` does not load torch
    import torch

    from longvid.training.data.sampling import frame_count, midpoint_times
    from longvid.training.model.hico import HiCoModel
    from longvid.training.tokenizer import build_prompt

    video = Path(args.video).resolve()  # absolute: a name starting with '-' is never an option
    if not video.is_file():
        raise NotFoundError(f"{video}: video file not found")
    device = pick_device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    start = time.perf_counter()
    model = HiCoModel.from_pretrained(args.checkpoint, device=device, dtype=dtype)
    clip_len = model.cfg.encoder.clip_len
    duration = video_duration(video)
    if args.frames is not None:
        n = max(clip_len, clip_len * round(args.frames / clip_len))
    else:
        n = frame_count(duration, args.min_frames, args.max_frames, clip_len)
    times = midpoint_times(duration, n)
    frames = model.preprocess(read_frames(video, times, model.cfg.encoder.img_size))
    frame_times = [float(t) for t in times] if args.frame_times else None
    prompt = build_prompt(args.question, duration, n, frame_times)
    ids = model.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
    answer_ids = model.generate(
        frames.to(dtype), ids, max_new_tokens=args.max_new_tokens, dropout=args.dropout
    )
    answer = model.tokenizer.decode(answer_ids.tolist(), skip_special_tokens=True)
    log.info(
        "%s: %.2f s, %d frames, %d visual tokens, dropout %s, %d new tokens in %.1f s",
        video.name,
        duration,
        n,
        model.cfg.visual_tokens(n),
        "on" if args.dropout else "off",
        len(answer_ids),
        time.perf_counter() - start,
    )
    print(answer.strip())
    return 0
