"""Decode throughput of ``longvid.media.decode`` against the limit and two peers, in one run.

    .venv/bin/python -m bench.bench_decode [--seconds 60] [--repeats 3] [--video PATH]

The video is generated here (ffmpeg testsrc2, H.264 640×360, 25 fps, B-frames, a keyframe every
10 s, ``--seconds`` long) unless ``--video`` names one. Every contender decodes every frame of it
to 64×36 RGB (the shot-detection size) with the same decoder settings (frame threading on), so
the rows differ only in how a frame becomes a small RGB array:

* **limit**: the decoder alone, frames dropped without any conversion;
* **iter_frames**: ``longvid.media.decode.iter_frames(size=(64, 36))`` (one reused swscale
  context, area averaging, YUV→small RGB in one pass);
* **peer: to_ndarray + resize**: a bare PyAV loop, ``frame.to_ndarray()`` at full size, then
  resized afterwards (OpenCV ``INTER_AREA`` when installed, else an exact 10×10 block mean);
* **peer: frame.reformat**: a bare PyAV loop with PyAV's own ``frame.reformat(64, 36, "rgb24")``
  (a new scaler per frame, bilinear).

A second table measures random access: ``decode_at`` for one frame per second (the training
loader's pattern) against decoding every frame with ``iter_frames`` and keeping those, on the
same video and on a copy with a keyframe every second (what ``transcode`` writes into shards).
Each contender's best of ``--repeats`` runs (interleaved) is reported.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from longvid.media.decode import decode_at, iter_frames
from longvid.media.ffmpeg import run_ffmpeg
from longvid.media.probe import probe

W, H = 64, 36

try:  # OpenCV is a dependency of a dependency; fall back on numpy if it is not there
    import cv2
except ImportError:  # pragma: no cover
    cv2 = None


def make_video(path: Path, seconds: float, gop: int = 250) -> Path:
    """testsrc2 as H.264 640x360 25 fps (B-frames), a keyframe exactly every ``gop`` frames."""
    source = f"testsrc2=size=640x360:rate=25:duration={seconds}"
    keyint = ["-g", str(gop), "-keyint_min", str(gop), "-sc_threshold", "0"]
    args = ["-y", "-f", "lavfi", "-i", source, "-c:v", "libx264", "-preset", "veryfast"]
    args += [*keyint, "-pix_fmt", "yuv420p", "file:" + str(path.resolve())]
    run_ffmpeg(args, uri=str(path), reason="bench_video")
    return path


def bare_loop(path: Path, convert: Callable) -> int:
    """Decode every frame with PyAV (frame threading on) and convert it with ``convert``."""
    n = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            convert(frame)
            n += 1
    return n


def block_mean(rgb: np.ndarray) -> np.ndarray:
    h, w, _ = rgb.shape
    return rgb.reshape(H, h // H, W, w // W, 3).mean(axis=(1, 3)).astype(np.uint8)


def resize_after(frame) -> np.ndarray:
    rgb = frame.to_ndarray(format="rgb24")
    if cv2 is not None:
        return cv2.resize(rgb, (W, H), interpolation=cv2.INTER_AREA)
    return block_mean(rgb)


def contenders(path: Path) -> dict[str, Callable[[], int]]:
    def ours() -> int:
        return sum(1 for _ in iter_frames(path, size=(W, H)))

    return {
        "limit: decode only (no conversion)": lambda: bare_loop(path, lambda f: None),
        "iter_frames(size=(64, 36))": ours,
        "peer: to_ndarray() + resize afterwards": lambda: bare_loop(path, resize_after),
        "peer: frame.reformat(64, 36) in the loop": lambda: bare_loop(
            path, lambda f: f.reformat(W, H, "rgb24").to_ndarray()
        ),
    }


def best_rates(
    runs: dict[str, Callable[[], int]], repeats: int
) -> dict[str, tuple[float, float, int]]:
    """Per contender: best wall-clock frames/s and best frames per CPU-second (all threads of
    this process; steadier than wall time on a shared machine), interleaved over repeats."""
    best: dict[str, tuple[float, float, int]] = {}
    for _ in range(repeats):
        for name, fn in runs.items():
            w0, c0 = time.perf_counter(), time.process_time()
            n = fn()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            old = best.get(name, (0.0, 0.0, n))
            best[name] = (max(old[0], n / wall), max(old[1], n / cpu), n)
    return best


def random_access(path: Path, repeats: int) -> tuple[tuple[float, float], tuple[float, float], int]:
    """Best (wall, CPU) seconds of decode_at vs decode-everything-and-pick."""
    info = probe(path)
    times = np.arange(0.0, info.duration - 0.5, 1.0) + 0.37  # one frame per second
    data = path.read_bytes()  # the loader decodes bytes range-read from a shard

    def sparse() -> None:
        out = decode_at(data, times, size=(W, H), keyframes=info.keyframes)
        assert out.shape == (len(times), H, W, 3)

    def dense() -> None:
        frames = list(iter_frames(data, size=(W, H)))
        stamps = np.array([f.time for f in frames])
        picked = [frames[int(np.flatnonzero(stamps <= t + 1e-9)[-1])].image for t in times]
        assert len(picked) == len(times)

    best = {"sparse": (float("inf"), float("inf")), "dense": (float("inf"), float("inf"))}
    for _ in range(repeats):
        for name, fn in (("sparse", sparse), ("dense", dense)):
            w0, c0 = time.perf_counter(), time.process_time()
            fn()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu))
    return best["sparse"], best["dense"], len(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--video", type=Path, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_decode_") as tmp:
        path = args.video or make_video(Path(tmp) / "bench.mp4", args.seconds)
        info = probe(path)
        print(f"video: {info.width}x{info.height} {info.codec}, {info.num_frames} frames, "
              f"{info.duration:.1f} s, keyframes every {info.keyframes[1] if len(info.keyframes) > 1 else 0:.0f} s; "
              f"resize peer uses {'OpenCV INTER_AREA' if cv2 is not None else 'numpy block mean'}")  # fmt: skip
        rates = best_rates(contenders(path), args.repeats)
        ours_wall, ours_cpu, _ = rates["iter_frames(size=(64, 36))"]
        print(f"\n{'decode every frame to 64x36 RGB':42s} {'frames/s':>9s} {'ours/this':>9s}"
              f" {'frames/CPU-s':>13s} {'ours/this':>9s}")  # fmt: skip
        for name, (wall, cpu, n) in rates.items():
            assert n == info.num_frames, (name, n)
            print(f"{name:42s} {wall:9,.0f} {ours_wall / wall:9.2f} {cpu:13,.0f} "
                  f"{ours_cpu / cpu:9.2f}")  # fmt: skip
        clips = make_video(Path(tmp) / "gop25.mp4", info.duration, gop=25)
        print("\nrandom access, 1 frame per second, from in-memory bytes (wall s / CPU s):")
        print(f"{'video':22s} {'decode_at':>14s} {'decode all + pick':>18s} {'ratio':>11s}")
        for label, video in (("keyframe every 10 s", path), ("keyframe every 1 s", clips)):
            (sw, sc), (dw, dc), n = random_access(video, args.repeats)
            print(f"{label:22s} {sw:6.3f} / {sc:5.3f} {dw:9.3f} / {dc:6.3f} "
                  f"{dw / sw:4.1f} / {dc / sc:4.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
