"""Benchmark of the model-stage actor pool (`python -m bench.bench_model_pool`): a build of a few
small generated videos with the `frames` + `embed` stages (a tiny random open_clip on CPU), one
unit per video, at `ray.model_batch_units` 1 and 4 (one actor, a 2-CPU local Ray).

Prints per setting: the wall time of the units' Ray Data job, the bytes that crossed the object
store between operators (Ray Data's stats: the cpu tasks' payloads, the pool's progress rows),
and what the former design (cpu task → actor → write task, the payload handed on again) would
have moved: the payload bytes twice. Checks that both settings wrote the same shards.
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import statistics
import time
from fractions import Fraction
from pathlib import Path

FPS = Fraction(25)
GOP = 50


def make_manifest(work: Path, count: int, seconds: int) -> Path:
    from longvid.samples.synth import VideoSpec, plan_shots, render_video
    from longvid.schema import MANIFEST_SCHEMA, VideoRecord
    from longvid.shards import write_table

    records = []
    for i in range(count):
        path = work / "videos" / f"pool{i}-{seconds}s.mp4"
        if not path.exists():
            shots = plan_shots(random.Random(50 + i), int(seconds * FPS), FPS, min_s=2.0,
                               max_s=5.0, frame_step=GOP)
            render_video(VideoSpec(path, FPS, 320, 180, tuple(shots), audio=False))
        records.append(VideoRecord(source="generic", video_id=f"pool{i}", video_uri=str(path),
                                   locator=f"list:{i}", licence="bench").as_row())
    write_table(str(work / "ingest" / "manifest.parquet"), records, MANIFEST_SCHEMA)
    return work / "ingest"


def config(manifest: Path, out: Path, batch_units: int):
    from longvid.config import load_config
    from longvid.pipelines.config import BuildConfig

    tiny = {"embed_dim": 32,
            "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8,
                           "head_width": 32},
            "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 2,
                         "layers": 2}}
    cfg = load_config(None, BuildConfig, [
        f"manifest={manifest}", f"output.root={out}", "progress=false",
        "units.videos_per_unit=1", "segment.sources={generic: {mode: shots}}",
        "segment.default.short_min_s=1.0", "segment.default.short_max_s=8.0",
        "stages=[probe, scan, segment, cut, frames, embed]",
        "annotate.embed.model=custom", "annotate.embed.batch_size=64",
        "annotate.frames.short_side=32", f"ray.model_batch_units={batch_units}",
    ])
    embed = cfg.annotate.embed.model_copy(update={"model_cfg": tiny})
    return cfg.model_copy(update={"annotate": cfg.annotate.model_copy(update={"embed": embed})})


def operator_bytes(stats: str) -> dict[str, int]:
    """Output bytes per operator, from Ray Data's stats text."""
    out, name = {}, None
    for line in stats.splitlines():
        m = re.match(r"Operator \d+ (.+?): ", line)
        if m:
            name = m.group(1)
        m = re.search(r"Output size bytes(?: per block)?: .* ([\d.]+) total", line)
        if m and name:
            out[name] = int(float(m.group(1)))
    return out


def one_build(manifest: Path, out: Path, batch_units: int) -> tuple[float, dict[str, int]]:
    from longvid.pipelines.build import prepare, resume, run_units
    from longvid.pipelines.plan import write_new_generation

    shutil.rmtree(out, ignore_errors=True)
    prep = prepare(config(manifest, out, batch_units))
    write_new_generation(prep.root, prep.plan)
    _, pending = resume(prep)
    started = time.monotonic()
    stats = run_units(prep.cfg, pending, prep.chash, prep.root, prep.rows_uri, lambda row: None)
    return time.monotonic() - started, operator_bytes(stats)


def embed_seconds(root: Path) -> float:
    """Seconds the embed stage took over all units (its share of shared passes included), from
    the commit markers."""
    from longvid.shards import ledger

    markers = ledger.read_markers(str(root), ledger.committed_ids(str(root)))
    return sum(m.stats["stage_seconds"].get("embed", 0.0) for m in markers.values())


def shard_bytes(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((root / "shards").iterdir())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--work", default="/tmp/longvid-bench-pool")
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    import ray

    work = Path(args.work)
    manifest = make_manifest(work, args.videos, args.seconds)
    ray.init(num_cpus=2, num_gpus=0, include_dashboard=False, logging_level="ERROR")
    walls: dict[int, list[float]] = {1: [], 4: []}
    embeds: dict[int, list[float]] = {1: [], 4: []}
    moved: dict[int, dict[str, int]] = {}
    try:
        one_build(manifest, work / "warm", 1)  # worker start-up and imports, not measured
        for _ in range(args.repeats):
            for b in (1, 4):  # alternated: the box is shared
                wall, ops = one_build(manifest, work / f"out{b}", b)
                walls[b].append(wall)
                embeds[b].append(embed_seconds(work / f"out{b}"))
                moved[b] = ops
    finally:
        ray.shutdown()
    same = shard_bytes(work / "out1") == shard_bytes(work / "out4")
    print(f"{args.videos} videos x {args.seconds} s (320x180), one unit each, frames+embed "
          f"(tiny open_clip, CPU), 1 actor, 2-CPU local Ray; {args.repeats} runs each")
    for b in (1, 4):
        ops = moved[b]
        cpu = sum(v for k, v in ops.items() if "_cpu_task" in k)
        pool = sum(v for k, v in ops.items() if "ModelStageRunner" in k)
        print(f"model_batch_units={b}: job wall median {statistics.median(walls[b]):.1f} s "
              f"(runs {', '.join(f'{w:.1f}' for w in walls[b])}); embed stage "
              f"{statistics.median(embeds[b]):.2f} s in all; object store: payloads "
              f"{cpu / 1e6:.2f} MB + progress rows {pool / 1e3:.1f} kB "
              f"(former design: {2 * cpu / 1e6:.2f} MB, ratio {(cpu + pool) / (2 * cpu):.2f})")
    print(f"batch 4 / batch 1: wall {statistics.median(walls[4]) / statistics.median(walls[1]):.2f}"
          f", embed stage {statistics.median(embeds[4]) / statistics.median(embeds[1]):.2f}; "
          f"same shards: {same}")


if __name__ == "__main__":
    main()
