"""CPU seconds of the build's stages on one video against one plain decode pass of it
(`python bench/bench_unit_cpu.py`): a quick, load-robust view of the hot path that
`bench_build_e2e.py` measures end to end.

One generated 640×360 25 fps h264 video (as bench_build.py; cached under --work). Peer: a plain
PyAV decode of every frame to 64×36 with one decoder thread (the e2e bench's peer). Then the
build's stages in this process, as a unit task runs them: probe, scan (the one decode pass with
shot detection, scores, fingerprints and kept frames), segment, cut (stream copy). Each is timed
with ``time.process_time`` (CPU seconds: the box is shared, walls are noise), median of --reps;
ratios are against the median plain decode.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for bench.bench_build

from bench.bench_build import make_videos  # noqa: E402


def plain_decode_cpu(path: Path) -> float:
    from longvid.media.decode import iter_frames

    cpu = time.process_time()
    sum(1 for _ in iter_frames(path, size=(64, 36), threads=1))
    return time.process_time() - cpu


def stage_cpu(path: Path) -> dict[str, float]:
    """CPU seconds of each default CPU stage on ``path``, run in order as a unit task does."""
    from longvid.pipelines.config import BuildConfig
    from longvid.pipelines.stages.cut import Cut
    from longvid.pipelines.stages.probe import Probe
    from longvid.pipelines.stages.scan import Scan
    from longvid.pipelines.stages.segment import Segment
    from longvid.stages.work import StageContext, VideoWork

    cfg = BuildConfig(manifest="unused")
    with tempfile.TemporaryDirectory() as tmp:
        ctx = StageContext(cfg, "bench", Path(tmp), {})
        record = {"record_id": "generic:b", "video_id": "b", "source": "generic",
                  "video_uri": str(path)}
        work = VideoWork(record, ctx, path=path)
        out = {}
        for stage in (Probe, Scan, Segment, Cut):
            cpu = time.process_time()
            stage(ctx)(work)
            out[stage.name] = time.process_time() - cpu
        out["samples"] = len(work.outputs)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/longvid-bench-unit-cpu", help="video cache")
    ap.add_argument("--seconds", type=int, default=300, help="length of the video")
    ap.add_argument("--reps", type=int, default=3, help="repetitions (medians are printed)")
    args = ap.parse_args(argv)
    (path,), _truth = make_videos(Path(args.work), 1, args.seconds)
    decode, stages = [], []
    for _ in range(args.reps):  # interleaved, so load changes hit both alike
        decode.append(plain_decode_cpu(path))
        stages.append(stage_cpu(path))
    dec = statistics.median(decode)
    print(f"machine: shared CPU box; one {args.seconds} s 640×360 25 fps video, "
          f"{stages[0]['samples']} samples (stream copy), medians of {args.reps}")
    print(f"plain decode to 64×36: {dec:.2f} CPU-s")
    total = 0.0
    for name in ("probe", "scan", "segment", "cut"):
        med = statistics.median(s[name] for s in stages)
        total += med
        print(f"{name:8s} {med:6.2f} CPU-s  {med / dec:5.2f}× the decode")
    print(f"all      {total:6.2f} CPU-s  {total / dec:5.2f}× the decode")
    return 0


if __name__ == "__main__":
    sys.exit(main())
