"""How fast ``longvid sample-corpus`` renders, against what the same encodes cost without our shot
graphs.

Measured in one run, each side the best of ``--repeat`` (interleaved, as the machine is shared):
- longvid: ``write_sample_corpus(scale=...)`` end to end (planning, metadata, every video).
- limit: the same videos (same frame counts, sizes, rates, audio, x264 settings, 2 processes)
  encoded from one plain ``color`` source: the x264 + mux floor our filter graphs sit on.
- peer: the same from ffmpeg's own moving test pattern ``testsrc2`` (what one would use instead
  of shots with known content).

    .venv/bin/python bench/bench_sample_corpus.py [--scale small] [--repeat 2]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from longvid.media.ffmpeg import run_ffmpeg
from longvid.samples.corpus import SCALES, plan_corpus, write_sample_corpus
from longvid.samples.synth import AUDIO_RATE, VideoSpec, render_args


def _plain_args(spec: VideoSpec, out: Path, source: str) -> list[str]:
    """render_args with the shot graph swapped for one lavfi source of the same length."""
    rate = f"{spec.fps.numerator}/{spec.fps.denominator}"
    sep = ":" if "=" in source else "="
    graph = f"{source}{sep}s={spec.width}x{spec.height}:r={rate},trim=end_frame={spec.num_frames}"
    graph += "[vout]"
    if spec.audio:
        graph += f";sine=f=440:r={AUDIO_RATE}:d={spec.duration:.3f}[aout]"
    args = render_args(spec, out)
    i = args.index("-filter_complex")
    args[i + 1] = graph
    return args


def _encode_all(specs: list[VideoSpec], folder: Path, source: str) -> float:
    started = time.perf_counter()

    def one(item: tuple[int, VideoSpec]) -> None:
        i, spec = item
        out = folder / f"{i}.mp4"
        run_ffmpeg(_plain_args(spec, out, source), uri=str(out), reason="bench")

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(one, enumerate(sorted(specs, key=lambda s: -s.num_frames))))
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", default="small", choices=sorted(SCALES))
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()
    videos = [v for b in plan_corpus(0, SCALES[args.scale]) for v in b.videos]
    specs = [
        VideoSpec(Path(v.rel_path), v.fps, v.width, v.height, tuple(v.shots), v.audio)
        for v in videos
    ]
    frames = sum(s.num_frames for s in specs)
    best = {"longvid": float("inf"), "limit": float("inf"), "peer": float("inf")}
    for _ in range(args.repeat):
        tmp = Path(tempfile.mkdtemp(prefix="bench-corpus-"))
        try:
            summary = write_sample_corpus(tmp / "c", seed=0, scale=args.scale, workers=2)
            best["longvid"] = min(best["longvid"], summary.elapsed_s)
            (tmp / "limit").mkdir()
            best["limit"] = min(best["limit"], _encode_all(specs, tmp / "limit", "color=c=red"))
            (tmp / "peer").mkdir()
            best["peer"] = min(best["peer"], _encode_all(specs, tmp / "peer", "testsrc2"))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(f"scale {args.scale}: {len(specs)} videos, {frames} frames, best of {args.repeat}")
    print("| what | seconds | frames/s | longvid speed ÷ this speed |")
    print("|---|---|---|---|")
    for name in ("longvid", "limit", "peer"):
        ratio = best[name] / best["longvid"]
        print(f"| {name} | {best[name]:.2f} | {frames / best[name]:,.0f} | {ratio:.2f} |")


if __name__ == "__main__":
    main()
