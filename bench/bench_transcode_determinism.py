"""Benchmark of deterministic re-encodes (`python -m bench.bench_transcode_determinism`).

The same span of generated 25 fps videos with audio (160×90 like the build tests, where each
frame encodes fast and the race shows most, and 640×360) is re-encoded ``--runs`` times with the build's short and long profiles at several x264 thread counts, two ways:

- ``pinned``: what ``longvid.media.cut.transcode`` runs (x264's lookahead in the calling
  thread: ``-x264-params sync-lookahead=0``);
- ``threaded``: the same ffmpeg arguments without that pin (x264's default: a lookahead
  thread whenever threads > 1), i.e. the code before the fix.

Rows: the short profile with and without audio, the long profile (the build's profiles with
their thread count replaced). It prints, per row, the number of distinct output files among the runs (1 = deterministic),
the median wall time and CPU time of one encode, and the ratio pinned / threaded. Runs of the
two variants alternate so that the shared machine's load hits both alike.
"""

from __future__ import annotations

import argparse
import hashlib
import random
import resource
import statistics
import subprocess
import time
from fractions import Fraction
from pathlib import Path

FPS = Fraction(25)


def make_source(work: Path, seconds: int, size: tuple[int, int]) -> Path:
    from longvid.samples.synth import VideoSpec, plan_shots, render_video

    w, h = size
    path = work / f"determinism-src-{w}x{h}-{seconds}s.mp4"
    if not path.exists():
        work.mkdir(parents=True, exist_ok=True)
        shots = plan_shots(random.Random(2), int(seconds * FPS), FPS, min_s=2.0, max_s=4.0,
                           frame_step=1)
        render_video(VideoSpec(path, FPS, w, h, tuple(shots), audio=True))
    return path


def unpinned(args: list[str]) -> list[str]:
    """The same command without the lookahead pin (x264's default threading)."""
    from longvid.media.cut import X264_DETERMINISTIC

    i = args.index(X264_DETERMINISTIC)
    assert args[i - 1] == "-x264-params"
    return args[: i - 1] + args[i + 1 :]


def run_once(cmd: list[str], out: Path) -> tuple[str, float, float]:
    """One encode: (sha256 of the file, wall seconds, CPU seconds of the ffmpeg child)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return hashlib.sha256(out.read_bytes()).hexdigest(), wall, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", type=Path, default=Path("/tmp/longvid-bench-determinism"))
    ap.add_argument("--seconds", type=int, default=16, help="length of the source video")
    ap.add_argument("--runs", type=int, default=10, help="encodes per row and variant")
    ap.add_argument("--threads", default="1,2,4", help="x264 thread counts to try")
    ap.add_argument("--sizes", default="160x90,640x360", help="source sizes WxH")
    args = ap.parse_args()
    for size in args.sizes.split(","):
        w, h = (int(x) for x in size.split("x"))
        bench_source(make_source(args.work, args.seconds, (w, h)), args)


def bench_source(src: Path, args: argparse.Namespace) -> None:
    from longvid.media.cut import transcode_args
    from longvid.media.ffmpeg import ffmpeg_exe
    from longvid.pipelines.config import EncodeConfig

    out = args.work / "out.mp4"
    start, end = 1.3, args.seconds - 1.7  # not on keyframes: a real re-encode
    print(f"\nsource {src.name}: span [{start}, {end}) s, {args.runs} runs per variant")
    print(f"{'profile':11} {'threads':>7} | {'files':>5} {'wall s':>7} {'cpu s':>7} (threaded) | "
          f"{'files':>5} {'wall s':>7} {'cpu s':>7} (pinned) | wall ratio  cpu ratio")
    for bucket, audio in (("short", True), ("short", False), ("long", True)):
        base = EncodeConfig().profile(bucket).encode_profile().model_copy(update={"audio": audio})
        for threads in (int(t) for t in args.threads.split(",")):
            profile = base.model_copy(update={"threads": threads})
            pinned, _ = transcode_args(src, out, start, end, profile)
            cmds = {
                "threaded": [ffmpeg_exe(), "-nostdin", "-loglevel", "error", *unpinned(pinned)],
                "pinned": [ffmpeg_exe(), "-nostdin", "-loglevel", "error", *pinned],
            }
            res: dict[str, list[tuple[str, float, float]]] = {k: [] for k in cmds}
            for r in range(args.runs):
                order = list(cmds) if r % 2 == 0 else list(reversed(cmds))
                for name in order:
                    res[name].append(run_once(cmds[name], out))
            row = {}
            for name, rows in res.items():
                files = len({h for h, _, _ in rows})
                row[name] = (files, statistics.median(w for _, w, _ in rows),
                             statistics.median(c for _, _, c in rows))
            (tf, tw, tc), (pf, pw, pc) = row["threaded"], row["pinned"]
            label = bucket + ("+audio" if audio else "")
            print(f"{label:11} {threads:>7} | {tf:>5} {tw:>7.3f} {tc:>7.3f}            | "
                  f"{pf:>5} {pw:>7.3f} {pc:>7.3f}          | {pw / tw:>9.2f}  {pc / tc:>9.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
