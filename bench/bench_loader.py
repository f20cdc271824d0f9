"""Streaming loader throughput and resume cost, against the limit and a peer, in the same run.

    .venv/bin/python -m bench.bench_loader [--clips 12] [--workers 2] [--repeats 2]

* **loader**: :func:`longvid.training.data.make_loader`, one epoch with every clip ``--passes``
  times, ``--workers`` DataLoader workers, 224 px, text tokenised; frames float-normalised in
  the workers (the default) and, second, as uint8 (``frames_dtype: uint8``, normalised later
  on the GPU).
* **bare PyAV** (the limit for CPU decoding): the same frames of the same clips (bytes already
  in memory), decoded with PyAV directly — seek to the stored keyframe, decode forward, scale to
  224×224 RGB — nothing else. Measured in one process and in ``--workers`` processes (the
  frames stay in the process that decoded them: no transfer, no normalisation).
* **stock webdataset**: ``wds.WebDataset(shards)`` streaming the same shards, with the same
  sampling and the same decode (:func:`longvid.media.decode.decode_at`) and normalisation done
  in a ``.map``, batched, ``wds.WebLoader`` with ``--workers`` workers.
* **resume**: time from a fresh process state (catalog in memory) through ``make_loader`` +
  ``load_state_dict`` to the first batch, for a long epoch resumed at 0 %, 10 % and 90 %.
* **GPU** (only where CUDA and torchcodec are present): the torchcodec backend on ``cuda``
  (NVDEC) against torchcodec on the CPU and PyAV, in-process; otherwise skipped with a message.

The corpus is generated here (testsrc2, H.264 at 640×360, 30 fps, ~0.5 Mbit/s like web video,
B-frames, a keyframe every 2 s) and written with the shards API; reads come from the page
cache. ``--corpus DIR`` keeps it in DIR and reuses it on the next run.
"""

from __future__ import annotations

import argparse
import bisect
import io
import json
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from longvid.training.data import make_loader
from longvid.training.data.catalog import load_catalog
from longvid.training.data.config import StageData
from longvid.training.data.sampling import frame_count, midpoint_times
from longvid.training.tokenizer import build_tokenizer

RES = 224
T_MIN, T_MAX = 8, 32
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
_MEAN_T = torch.tensor(MEAN).view(1, 3, 1, 1)
_STD_T = torch.tensor(STD).view(1, 3, 1, 1)


SOURCES = ("webvid", "howto100m", "hdvila")


def make_corpus(base: Path, clips: int) -> str:
    """Build (or reuse, when ``base/corpus`` exists) the benchmark corpus; returns its root."""
    root = base / "corpus"
    if (root / "samples.parquet").exists():
        return str(root)
    from tests.fixtures.loader_corpus import ClipSpec, build_test_corpus

    durations = [14.0, 22.0, 30.0, 38.0]
    specs = [
        ClipSpec(
            SOURCES[i % 3],
            f"b{i:03d}",
            duration=durations[i % 4],
            width=640,
            height=360,
            fps=30,
            keyint=60,
            preset="veryfast",
            crf=28,
            bframes=3,
        )
        for i in range(clips)
    ]
    return build_test_corpus(root, specs, base / "clips", samples_per_shard=2).root


def stage(root: str, workers: int, **kw) -> StageData:
    return StageData(
        stage="bench",
        corpora=[root],
        t_min=T_MIN,
        t_max=T_MAX,
        resolution=RES,
        batch_size=2,
        tail="pad",
        num_workers=workers,
        prefetch_factor=2,
        seed=0,
        **kw,
    )


# --- the limit: bare PyAV ------------------------------------------------------------------


def bare_decode(data: bytes, times: np.ndarray, keyframes: list[float], size: int) -> int:
    """Decode the frames shown at ``times`` (ascending) with PyAV alone: seek to the keyframe
    before a target only when it lies past the decoder's position, decode forward, scale.
    Returns how many frames were produced."""
    import av
    from av.video.reformatter import VideoReformatter

    with av.open(io.BytesIO(data)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        tb = float(s.time_base)
        start = s.start_time or 0
        frames = None
        pending = last = None
        scaler = VideoReformatter()
        n = 0
        for t in times:
            k = keyframes[max(bisect.bisect_right(keyframes, t + 1e-6) - 1, 0)]
            cur = pending if pending is not None else last
            if frames is None or k > (cur.pts - start) * tb + 1e-6:
                c.seek(start + int(round(k / tb)), stream=s, backward=True)
                frames = c.decode(s)
                pending = last = None
            while True:
                if pending is None:
                    pending = next(frames, None)
                if pending is None or (pending.pts - start) * tb > t + 1e-6:
                    break
                last, pending = pending, None
            img = scaler.reformat(
                last, width=size, height=size, format="rgb24", interpolation="AREA"
            ).to_ndarray()
            n += img.shape[0] == size
        return n


def _bare_job(job):
    data, times, keyframes = job
    return bare_decode(data, times, keyframes, RES)


def bare_jobs(root: str) -> list[tuple[bytes, np.ndarray, list[float]]]:
    """(clip bytes, times, keyframes) of every sample, read before any timing starts."""
    from longvid.shards.reader import read_sample

    cat = load_catalog([root])
    jobs = []
    for i in range(len(cat)):
        row = cat.row(i)
        got = read_sample(row["root"], row)
        meta = json.loads(got["json"])
        n = frame_count(row["duration"], T_MIN, T_MAX)
        jobs.append((got["mp4"], midpoint_times(row["duration"], n), meta["keyframes"]))
    return jobs


def run_bare(jobs, procs: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    if procs <= 1:
        n = sum(_bare_job(j) for j in jobs)
    else:
        with mp.get_context("fork").Pool(procs) as pool:
            n = sum(pool.imap_unordered(_bare_job, jobs, chunksize=1))
    return n, time.perf_counter() - t0


# --- ours ---------------------------------------------------------------------------------------


def run_loader(cfg: StageData, tokenizer) -> tuple[int, float]:
    loader = make_loader(cfg, 0, 1, tokenizer)
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        n += int(sum(f.shape[0] for f in batch["frames"]))
    return n, time.perf_counter() - t0


# --- the peer: stock webdataset --------------------------------------------------------------


def _wds_sample(sample):
    from longvid.media.decode import decode_at

    meta = json.loads(sample["json"])
    d = float(meta["duration"])
    times = midpoint_times(d, frame_count(d, T_MIN, T_MAX))
    raw = decode_at(
        sample["mp4"], list(times), size=(RES, RES), keyframes=meta["keyframes"], threads=1
    )
    frames = torch.from_numpy(raw).permute(0, 3, 1, 2).float().div_(255).sub_(_MEAN_T).div_(_STD_T)
    return {"key": sample["__key__"], "frames": frames, "caption": sample["txt"]}


def run_wds(root: str, workers: int, passes: int) -> tuple[int, float]:
    import webdataset as wds

    index = json.loads(Path(root, "index.json").read_text())
    urls = [str(Path(root, s["url"])) for s in index["shardlist"]]
    ds = (
        wds.WebDataset(urls, shardshuffle=False, empty_check=False)
        .repeat(passes)
        .map(_wds_sample)
        .batched(2, collation_fn=list)
    )
    loader = wds.WebLoader(ds, batch_size=None, num_workers=workers)
    t0 = time.perf_counter()
    n = 0
    for batch in loader:
        n += sum(s["frames"].shape[0] for s in batch)
    return n, time.perf_counter() - t0


# --- resume cost -----------------------------------------------------------------------------


def resume_cost(root: str, tokenizer, workers: int, samples: int) -> dict[str, dict[str, float]]:
    """Resume at 0 %, 10 % and 90 % of a long epoch: ``setup`` = make_loader + load_state_dict
    (builds the epoch plan), ``first`` = iter() to the first batch (worker start + that batch),
    ``batch`` = the same batch built again in-process (its own decode work), so that
    ``overhead = setup + first - batch`` is what resuming costs beyond loading the batch."""
    catalog = load_catalog([root])
    cfg = stage(root, workers, num_samples=samples)
    base = make_loader(cfg, 0, 1, tokenizer, catalog=catalog)
    steps = len(base)
    cursor0 = base.state_dict()
    out: dict[str, dict[str, float]] = {}
    for frac in (0.0, 0.1, 0.9):
        step = int(steps * frac)
        cursor = dict(cursor0, step=step, samples_consumed=step * cfg.batch_size)
        t0 = time.perf_counter()
        loader = make_loader(cfg, 0, 1, tokenizer, catalog=catalog)
        loader.load_state_dict(cursor)
        t1 = time.perf_counter()
        it = iter(loader)
        batch = next(it)
        t2 = time.perf_counter()
        del it
        plan = loader.plan(0)
        want = [str(catalog.keys[r]) for r in plan.rows[step * 2 : step * 2 + 2]]
        assert batch["keys"] == want, (batch["keys"], want)
        ds = loader.dataset()
        ds.batch(step)  # warm the page cache and the decoder as the loader's worker had it
        t3 = time.perf_counter()
        ds.batch(step)
        t4 = time.perf_counter()
        setup, first, again = t1 - t0, t2 - t1, t4 - t3
        out[f"{int(frac * 100)}%"] = {
            "setup": setup,
            "first": first,
            "batch": again,
            "overhead": setup + first - again,
        }
    out["steps"] = {"n": steps}
    return out


# --- GPU --------------------------------------------------------------------------------------


def gpu_section(root: str, tokenizer) -> None:
    """In-process decode through the loader (``num_workers: 0``) with every backend present:
    PyAV on one CPU core (the reference), torchcodec on CPU/CUDA, NVDEC via PyNvVideoCodec."""
    if not torch.cuda.is_available():
        print("GPU decode: skipped (no CUDA device here)")
        return
    print(f"GPU decode on {torch.cuda.get_device_name(0)}, loader in-process (num_workers 0):")
    rows, first = [], {}
    for backend, device in (
        ("pyav", "cpu"),
        ("torchcodec", "cpu"),
        ("torchcodec", "cuda"),
        ("nvdec", "cuda"),
    ):
        cfg = stage(root, 0, decode_backend=backend, decode_device=device, decode_threads=1)
        try:
            loader = make_loader(cfg, 0, 1, tokenizer)
            first[(backend, device)] = next(iter(loader))  # warm-up: CUDA context, decoder
            n, dt = run_loader(cfg, tokenizer)
            if device == "cuda":
                torch.cuda.synchronize()
        except Exception as exc:  # report and go on: the other rows still stand
            print(f"  {backend}/{device}: not available: {type(exc).__name__}: {exc}"[:300])
            continue
        rows.append((backend, device, n / dt))
        print(f"  {backend + '/' + device:18s} {n / dt:8.1f} frames/s")
    ref = next((r[2] for r in rows if r[:2] == ("pyav", "cpu")), None)
    std = torch.tensor(STD).view(1, 3, 1, 1) * 255
    for backend, device, fps in rows:
        if ref and (backend, device) != ("pyav", "cpu"):
            a = first[(backend, device)]["frames"][0].cpu() * std
            b = first[("pyav", "cpu")]["frames"][0] * std
            diff = (a - b).abs().mean().item() if a.shape == b.shape else float("nan")
            print(
                f"  {backend}/{device} vs PyAV on one core: {fps / ref:.2f}x; "
                f"mean |pixel difference| on the first clip {diff:.2f} / 255"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--passes", type=int, default=4, help="times each clip is in the epoch")
    ap.add_argument("--resume-samples", type=int, default=200_000)
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="scratch space")
    ap.add_argument("--corpus", default=None, help="keep/reuse the corpus in this folder")
    ap.add_argument(
        "--sections", default="throughput,resume,gpu", help="comma list of sections to run"
    )
    args = ap.parse_args()
    sections = set(args.sections.split(","))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_loader_") as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        root = make_corpus(Path(args.corpus) if args.corpus else base, args.clips)
        tok = build_tokenizer(
            [f"A test pattern from {s}" for s in SOURCES] * 8, base / "tok", vocab_size=300
        )
        n_clips = len(load_catalog([root]))
        print(
            f"corpus: {n_clips} clips 640x360 30 fps, GOP 2 s, ready in "
            f"{time.perf_counter() - t0:.1f}s; frames per clip {T_MIN}..{T_MAX} at {RES} px"
        )
        if "throughput" in sections:
            throughput(root, tok, args.workers, args.repeats, args.passes)
        if "resume" in sections:
            resume_report(root, tok, args.workers, args.resume_samples)
        if "gpu" in sections:
            gpu_section(root, tok)


def throughput(root: str, tok, workers: int, repeats: int, passes: int) -> None:
    """Every clip ``passes`` times (a long enough epoch that the workers' start and the last
    batch's wait do not dominate), for each of the pipelines."""
    jobs = bare_jobs(root) * passes
    n_clips = len(jobs) // passes
    cfg = stage(root, workers, num_samples=n_clips * passes)
    for rep in range(repeats):
        n_l, t_l = run_loader(cfg, tok)
        n_u, t_u = run_loader(cfg.model_copy(update={"frames_dtype": "uint8"}), tok)
        n_w, t_w = run_wds(root, workers, passes)
        n_b1, t_b1 = run_bare(jobs, 1)
        n_bw, t_bw = run_bare(jobs, workers)
        assert n_l == n_u == n_w == n_b1 == n_bw, (n_l, n_u, n_w, n_b1, n_bw)
        f_l, f_u, f_w = n_l / t_l, n_u / t_u, n_w / t_w
        f_b1, f_bw = n_b1 / t_b1, n_bw / t_bw
        print(f"run {rep + 1}: {n_l} frames per epoch ({n_clips} clips x {passes})")
        print(
            f"  loader, float32 ({workers} workers)  {f_l:8.1f} frames/s   "
            f"/bare = {f_l / f_bw:.2f}   /wds = {f_l / f_w:.2f}"
        )
        print(
            f"  loader, uint8 ({workers} workers)    {f_u:8.1f} frames/s   "
            f"/bare = {f_u / f_bw:.2f}   /wds = {f_u / f_w:.2f}"
        )
        print(f"  bare PyAV, {workers} processes        {f_bw:8.1f} frames/s")
        print(f"  bare PyAV, 1 process          {f_b1:8.1f} frames/s")
        print(f"  stock webdataset ({workers} workers) {f_w:8.1f} frames/s")


def resume_report(root: str, tok, workers: int, samples: int) -> None:
    res = resume_cost(root, tok, workers, samples)
    print(f"resume, epoch of {samples} samples ({res['steps']['n']} steps), {workers} workers:")
    for name in ("0%", "10%", "90%"):
        r = res[name]
        print(
            f"  at {name:>3}: make_loader+load_state_dict {r['setup']:.3f}s, first batch "
            f"{r['first']:.3f}s (that batch alone {r['batch']:.3f}s) -> resume overhead "
            f"{r['overhead']:.3f}s"
        )
    print(f"  overhead 90%/10% = {res['90%']['overhead'] / res['10%']['overhead']:.2f}")


if __name__ == "__main__":
    main()
