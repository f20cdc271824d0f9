"""Image components of the loader: reading a folder's captions.jsonl at start, and loading one
image, each against a floor or a peer in the same run.

    .venv/bin/python -m bench.bench_image_folder [--lines 100000,1000000] [--images 200]

* **captions.jsonl** (runs on every rank at start, so it is a driver-side cost): a synthetic file
  of ``--lines`` lines (LCS-558K-like paths and captions, metadata only, no pictures) read by
  :func:`longvid.training.data.images.load_image_folder` (pyarrow JSON → two Arrow string
  columns, sha256 fingerprint), against the floor (read the bytes and hash them: what any
  fingerprinting reader must do) and a naive peer (``json.loads`` per line into Python lists).
  Arrow memory of the result is printed (no Python object per line).
* **one image**: ``--images`` JPEGs of 640×480 loaded by :meth:`StageImages.load` at 224 px
  (read through ``longvid.storage``, EXIF orientation, decode, resize) against bare PIL
  (``Image.open(path).convert("RGB").resize((224, 224))``) on the same files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
from PIL import Image

from longvid.training.data.config import ImageComponent, StageData
from longvid.training.data.images import StageImages, load_image_folder


def write_captions(folder: Path, n: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "captions.jsonl", "w") as fh:
        for i in range(n):
            line = {"image": f"{i // 1000:05d}/{i:09d}.jpg",
                    "caption": f"a photo of item {i}: a small dog resting on a grey sofa"}  # fmt: skip
            fh.write(json.dumps(line) + "\n")
    return (folder / "captions.jsonl").stat().st_size


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def bench_captions(base: Path, n: int, repeats: int) -> None:
    folder = base / f"captions-{n}"
    size = write_captions(folder, n)
    path = folder / "captions.jsonl"

    def floor() -> None:
        hashlib.sha256(path.read_bytes()).hexdigest()

    def naive() -> None:
        paths, caps = [], []
        with open(path) as fh:
            for line in fh:
                x = json.loads(line)
                paths.append(x.get("image"))
                caps.append(x.get("caption"))

    before = pa.total_allocated_bytes()
    held = load_image_folder(str(folder))
    arrow_mb = (pa.total_allocated_bytes() - before) / 2**20
    assert len(held) == n
    t_floor = median_time(floor, repeats)
    t_load = median_time(lambda: load_image_folder(str(folder)), repeats)
    t_naive = median_time(naive, repeats)
    print(
        f"captions.jsonl {n:>9,} lines ({size / 2**20:.0f} MB): load {t_load:.2f} s, "
        f"read+sha256 floor {t_floor:.2f} s (x{t_load / t_floor:.1f}), naive json.loads "
        f"{t_naive:.2f} s (load is {t_naive / t_load:.1f}x faster); Arrow columns {arrow_mb:.0f} MB"
    )


def bench_images(base: Path, count: int, repeats: int) -> None:
    folder = base / "pictures"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(count):
        # smooth gradients + noise: JPEG sizes like photos (~60-100 KB at 640x480)
        y, x = np.mgrid[0:480, 0:640]
        img = np.stack([(x + 3 * i) % 256, (y + 5 * i) % 256, (x + y) % 256], -1).astype(np.uint8)
        img = np.clip(img + rng.integers(0, 40, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(folder / f"{i:04d}.jpg", quality=90)
        lines.append({"image": f"{i:04d}.jpg", "caption": f"picture {i}"})
    (folder / "captions.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    cfg = StageData(corpora=["unused"], mixture=[ImageComponent(name="p", weight=1,
                                                                images=str(folder))])  # fmt: skip
    images = StageImages(cfg, {}, 0)

    def ours() -> None:
        for row in range(count):
            images.load(row, 224)

    def bare() -> None:
        for i in range(count):
            with Image.open(folder / f"{i:04d}.jpg") as im:
                np.asarray(im.convert("RGB").resize((224, 224), Image.Resampling.BICUBIC))

    t_ours, t_bare = median_time(ours, repeats), median_time(bare, repeats)
    print(
        f"images: {count / t_ours:.0f} images/s through StageImages.load at 224 px, bare PIL "
        f"open+convert+resize {count / t_bare:.0f} images/s (ratio {t_bare / t_ours:.2f}: "
        ">1 = faster than bare PIL, JPEG draft decoding)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", default="100000,1000000", help="caption-file sizes, comma-separated")
    ap.add_argument("--images", type=int, default=200, help="JPEGs for the per-image test")
    ap.add_argument("--repeats", type=int, default=3, help="median of this many runs")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-images-") as tmp:
        base = Path(tmp)
        for n in (int(x) for x in args.lines.split(",")):
            bench_captions(base, n, args.repeats)
        bench_images(base, args.images, args.repeats)


if __name__ == "__main__":
    main()
