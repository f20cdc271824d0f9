"""Ingest memory and speed on realistic-size release files, against loading the whole file.

    .venv/bin/python bench/bench_ingest.py [--howto-mb 150 330] [--mira-mb 150 330] [--keep]

Generates, under a temp folder that is removed at the end (unless --keep):

- a HowTo100M ``caption.json`` (one dict, ~78 rolling-ASR segments per video, some ``NaN`` texts
  and float artefacts, ids starting with ``-``/``_``) with its ``HowTo100M_v1.csv``;
- a MiraData v1 CSV (six caption columns, ~2.5 KB of text per row, some 120-second window
  captions, list-literal timestamps, ~3 clips per source video),

at two sizes each, then measures, each in a fresh process: ``longvid ingest`` of the file (all
the way to manifest.parquet) and the peer, loading the same file whole (``json.load`` for the
caption file, ``pandas.read_csv`` for the CSV). Reported: peak RSS (``ru_maxrss``) and its growth
over the process's RSS before reading, records/s, and the ratios. Flat ingest RSS across the two
sizes shows memory does not grow with the file.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import shutil
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

YT = string.ascii_letters + string.digits + "-_"
WORDS = (
    "so today we are going to show you how to make a simple easy recipe with flour eggs "
    "milk butter sugar then mix it well and pour into the pan wait until golden brown flip "
    "it over and serve warm with some fresh fruit and honey"
).split()
MIRA_HEADER = [
    "clip_id", "source", "video_url", "video_id", "width", "height", "fps", "seconds",
    "timestamp", "frame_number", "framestamp", "file_path", "short_caption", "dense_caption",
    "background_caption", "main_object_caption", "style_caption", "camera_caption",
]  # fmt: skip


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _hms(t: float) -> str:
    h, rem = divmod(t, 3600)
    m, s = divmod(rem, 60)
    return f"{int(h):02d}:{int(m):02d}:{s:06.3f}"


# ------------------------------------------------------------------------------- generators


def make_howto(root: Path, target_mb: int, seed: int = 0) -> int:
    """caption.json of about ``target_mb`` MB + HowTo100M_v1.csv; returns the video count."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    written = 0
    with open(root / "caption.json", "w", encoding="utf-8") as fh:
        fh.write("{")
        while written < target_mb * 1_000_000:
            vid = rng.choice("-_" + string.ascii_letters) + "".join(rng.choices(YT, k=10))
            starts, ends, texts = [], [], []
            t, words = 0.0, []
            for _ in range(rng.randint(60, 96)):  # ~78 a video
                new = rng.choices(WORDS, k=rng.randint(3, 6))
                words = (words[-3:] + new)[-8:]  # rolling: repeat the previous tail
                start = round(t, 2)
                if rng.random() < 0.05:
                    start += 1e-14  # 68.46000000000001-style artefact
                starts.append(start)
                ends.append(round(t + rng.uniform(2.5, 4.5), 2))
                texts.append(float("nan") if rng.random() < 0.01 else " ".join(words))
                t += rng.uniform(1.5, 3.5)
            entry = json.dumps({"start": starts, "end": ends, "text": texts}, allow_nan=True)
            chunk = ("," if ids else "") + json.dumps(vid) + ": " + entry
            fh.write(chunk)
            written += len(chunk)
            ids.append(vid)
        fh.write("}\n")
    with open(root / "HowTo100M_v1.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["video_id", "category_1", "category_2", "rank", "task_id"])
        for i, vid in enumerate(ids):
            w.writerow([vid, "Food and Entertaining", "Recipes", i % 200 + 1, 10000 + i % 500])
    return len(ids)


def _caption(rng: random.Random, words: int) -> str:
    return " ".join(rng.choices(WORDS, k=words)).capitalize() + "."


def make_mira(root: Path, target_mb: int, seed: int = 0) -> int:
    """miradata_v1_330k.csv of about ``target_mb`` MB; returns the row count."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = 0
    written = 0
    num = 1_000_000
    with open(root / "miradata_v1_330k.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(MIRA_HEADER)
        while written < target_mb * 1_000_000:
            num += rng.randint(1, 5)
            t = 0.0
            for n in range(rng.randint(1, 5)):
                length = rng.uniform(20, 400) if rng.random() < 0.1 else rng.uniform(20, 110)
                start, end = t + rng.uniform(0, 5), 0.0
                end = start + length
                t = end
                if length > 120:
                    windows = [
                        (k * 120, min((k + 1) * 120, round(length)))
                        for k in range(int(length // 120) + 1)
                        if k * 120 < length
                    ]
                    rng.shuffle(windows)
                    caps = [
                        "["
                        + "".join(f"|||{a}||| {b}||| {_caption(rng, 40)} |||," for a, b in windows)
                        + "]"
                        for _ in range(6)
                    ]
                else:
                    caps = [_caption(rng, k) for k in (12, 350, 60, 60, 15, 20)]
                clip_id = f"{num}.{n}"
                row = [
                    clip_id,
                    "youtube, movies",
                    "https://www.youtube.com/watch?v=abc",
                    "abcdefghijk",
                    1280,
                    720,
                    30.0,
                    round(length, 3),
                    str([_hms(start), _hms(end)]),
                    round(length * 30),
                    f"[{round(start * 30)}, {round(end * 30)}]",
                    f"video_clips/{num // 1000:09d}/{num:012d}.{n}.mp4",
                    *caps,
                ]
                w.writerow(row)
                written += sum(len(str(x)) for x in row) + 20
                rows += 1
    return rows


# ------------------------------------------------------------------------------- children


def child(mode: str, root: str, out: str) -> dict[str, float]:
    """One measurement in this (fresh) process."""
    import pyarrow  # noqa: F401  (imported before the baseline, as ingest needs it anyway)

    from longvid.ingest.config import IngestConfig
    from longvid.ingest.runner import run_ingest

    base_rss = _rss_mb()
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    if mode == "howto_ingest":
        src = {"name": "howto100m", "root": root, "task_ids_file": None}
        counts = run_ingest(IngestConfig(sources=[src], out=out, progress=False))["howto100m"]
        records = counts.inputs
    elif mode == "mira_ingest":
        src = {"name": "miradata", "root": root, "metadata_file": "miradata_v1_330k.csv"}
        counts = run_ingest(IngestConfig(sources=[src], out=out, progress=False))["miradata"]
        records = counts.inputs
    elif mode == "howto_json_load":
        with open(Path(root) / "caption.json", encoding="utf-8") as fh:
            data = json.load(fh)
        records = len(data)
    elif mode == "mira_pandas":
        import pandas as pd

        records = len(pd.read_csv(Path(root) / "miradata_v1_330k.csv", dtype=str))
    else:
        raise SystemExit(f"unknown mode {mode}")
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    peak = _peak_mb()
    return {
        "records": records,
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_mb": peak,
        "base_mb": base_rss,
        "growth_mb": peak - base_rss,
    }


def measure(mode: str, root: Path, out: Path) -> dict[str, float]:
    proc = subprocess.run(
        [sys.executable, __file__, "--child", mode, str(root), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode:
        raise SystemExit(f"{mode} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--howto-mb", type=int, nargs=2, default=[150, 330])
    ap.add_argument("--mira-mb", type=int, nargs=2, default=[150, 330])
    ap.add_argument("--keep", action="store_true", help="keep the generated files")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    work = Path(tempfile.mkdtemp(prefix="longvid-bench-ingest-"))
    print(f"# bench_ingest  (python {sys.version.split()[0]}, {os.cpu_count()} cores)")
    print(
        "| file | size | what | records | records/CPU-s | records/wall-s | peak RSS | RSS growth |"
    )
    print("|---|---|---|---|---|---|---|---|")
    try:
        for kind, sizes, maker, ours, peer, fname in (
            (
                "HowTo100M caption.json",
                args.howto_mb,
                make_howto,
                "howto_ingest",
                "howto_json_load",
                "caption.json",
            ),
            (
                "MiraData v1 CSV",
                args.mira_mb,
                make_mira,
                "mira_ingest",
                "mira_pandas",
                "miradata_v1_330k.csv",
            ),
        ):
            for mb in sizes:
                root = work / f"{ours}-{mb}"
                maker(root, mb)
                size = (root / fname).stat().st_size / 1e6
                results = {}
                for mode in (ours, peer):
                    r = measure(mode, root, work / f"out-{mode}-{mb}")
                    results[mode] = r
                    print(
                        f"| {kind} | {size:,.0f} MB | {mode} | {int(r['records']):,} | "
                        f"{r['records'] / r['cpu_s']:,.0f} | {r['records'] / r['seconds']:,.0f} | "
                        f"{r['peak_mb']:,.0f} MB | {r['growth_mb']:,.0f} MB |",
                        flush=True,
                    )
                a, b = results[ours], results[peer]
                print(
                    f"| {kind} | {size:,.0f} MB | ratio ingest/peer | | "
                    f"{b['cpu_s'] / a['cpu_s']:.2f} | {b['seconds'] / a['seconds']:.2f} | "
                    f"{a['peak_mb'] / b['peak_mb']:.2f} | "
                    f"{a['growth_mb'] / max(b['growth_mb'], 1):.3f} |",
                    flush=True,
                )
                if not args.keep:
                    shutil.rmtree(root, ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
