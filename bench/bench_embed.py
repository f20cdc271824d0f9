"""The embed stage's throughput (frames/s) against the bare open_clip forward on the same frames.

    .venv/bin/python bench/bench_embed.py [--model ViT-B-32] [--videos 2] [--repeats 3] [--threads 1]

Generated 60 s videos at 400x224 (shots of moving test patterns, one caption each) go through
the build's cpu stages (probe, scan, segment, cut, captions, frames decoded at the model's image
size) once; then, interleaved and best of ``--repeats``:

* **stage**: the ``embed`` stage over those videos, as the model pool runs it — per sample it
  reads KEY.json, preprocesses (centre crop, normalisation), runs the image tower over all frames
  of the video in batches, pools per sample and per shot, embeds the main caption, writes the
  ``.npy`` members, the JSON and the manifest row;
* **bare image forward**: ``model.encode_image`` on the same frames, already preprocessed, same
  batch size — the limit for the frames alone;
* **bare image + text forward**: the same plus ``encode_text`` on the same captions — the same
  model work the stage does, so stage ÷ this is the stage's own overhead.

The three run back to back in every round; the ratios are medians over rounds (load from other
jobs on a shared machine hits a round's three runs alike), the times the best round.

The model is built with random weights (``pretrained`` is null; nothing is downloaded): the cost
of a forward does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import copy
import random
import shutil
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from longvid.annotate import stages as ast
from longvid.pipelines.config import BuildConfig
from longvid.pipelines.stages import run_stages, stage_class
from longvid.pipelines.unit_task import make_context, process_records
from longvid.samples.synth import VideoSpec, plan_shots, render_video
from longvid.schema import TimedText, VideoRecord


def make_records(root: Path, n: int, seconds: float = 60.0) -> list[dict]:
    """``n`` synthetic videos (400x224, 25 fps, shots of 3-8 s), each listed with one caption."""
    fps = Fraction(25)
    out = []
    for i in range(n):
        path = root / f"v{i}.mp4"
        shots = plan_shots(random.Random(i), int(seconds * fps), fps, min_s=3.0, max_s=8.0,
                           frame_step=1)
        render_video(VideoSpec(path, fps, 400, 224, tuple(shots), audio=False))
        text = TimedText(0.0, seconds, ", then ".join(s.text() for s in shots[:3]), "caption",
                         "text")
        out.append(VideoRecord(source="generic", video_id=f"v{i}", video_uri=str(path),
                               locator=f"bench:{i}", licence="bench", texts=[text]).as_row())
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32", help="open_clip model name (random weights)")
    ap.add_argument("--videos", type=int, default=2, help="60 s videos to embed")
    ap.add_argument("--batch", type=int, default=32, help="frames per forward pass")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch intra-op threads (a model actor with one CPU gets one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    tmp = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    cfg = BuildConfig(
        manifest="unused",
        stages=["probe", "scan", "segment", "cut", "captions", "frames", "embed"],
        segment={"default": {"short_min_s": 2.0, "short_max_s": 30.0, "long_min_s": 60.0}},
        annotate={"frames": {"short_side": 224},
                  "embed": {"model": args.model, "batch_size": args.batch, "device": "cpu"}},
    )
    ctx = make_context(cfg, "bench", tmp)
    works = process_records(make_records(tmp, args.videos), ctx)
    stage = stage_class("embed")(ctx)
    embedder = ast._cached("embedder", cfg.annotate.embed.model_dump_json(), ast._make_embedder)

    frames = [f for w in works for _, f in w.notes[ast.FRAMES_NOTE].values()]
    all_frames = np.concatenate(frames)
    captions = [ast.read_meta(o).get("caption") or "" for w in works for o in w.outputs]
    captions = [c for c in captions if c]
    n = len(all_frames)
    print(f"{args.model}: {len(works)} videos, {sum(len(w.outputs) for w in works)} samples, "
          f"{n} frames at {all_frames.shape[1]}x{all_frames.shape[2]}, {len(captions)} captions, "
          f"batch {args.batch}, torch threads {torch.get_num_threads()}")
    x = torch.cat([embedder.preprocess(all_frames[i:i + args.batch])
                   for i in range(0, n, args.batch)])

    def bare(with_text: bool) -> float:
        t0 = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, n, args.batch):
                embedder.model.encode_image(x[i:i + args.batch], normalize=True)
        if with_text:
            embedder.encode_texts(captions)
        return time.perf_counter() - t0

    def staged() -> float:
        ws = copy.deepcopy(works)  # the stage rewrites members and drops the frames
        t0 = time.perf_counter()
        for w in ws:
            run_stages(w, [stage])
        took = time.perf_counter() - t0
        assert all(not w.failed and "emb.npy" in o.members for w in ws for o in w.outputs)
        return took

    bare(True)  # warm-up (allocator, kernels)
    staged()
    # back to back in each round, so that load from other jobs hits all three alike; the
    # ratios are taken per round (median), the times are the best of the rounds
    times: dict[str, list[float]] = {"stage": [], "image": [], "image+text": []}
    for _ in range(args.repeats):
        times["stage"].append(staged())
        times["image"].append(bare(False))
        times["image+text"].append(bare(True))
    print(f"{'what':<30}{'best s':>8}{'frames/s':>10}{'median stage time / this':>26}")
    for k, label in (("stage", "embed stage"), ("image", "bare image forward"),
                     ("image+text", "bare image + text forward")):
        ratio = float(np.median(np.asarray(times["stage"]) / np.asarray(times[k])))
        best = min(times[k])
        print(f"{label:<30}{best:>8.2f}{n / best:>10.1f}{ratio:>26.3f}")
    over = float(np.median(np.asarray(times["stage"]) / np.asarray(times["image+text"]))) - 1
    print(f"stage overhead over the same model work (median of rounds): {over * 100:.1f}%")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
