"""HiCo compression against the dense baseline (no merge), in the same run.

    .venv/bin/python -m bench.bench_hico [--device cpu|cuda] [--llm-config small|0.5b]
        [--encoder small|umt-l] [--frames 8,16,32,64] [--table-frames 64,512,2048]
        [--fit-budget-gb 0.25] [--json out.json]

Both models are the same HiCoModel with random weights (cost does not depend on the values);
"dense" is ``merge.enabled=false``, i.e. every encoder token goes to the LLM.

1. **Tokens**: tokens per frame and LLM input length (visual + the real prompt) at
   ``--table-frames``, for 224 and 448 px, checked against a real ``encode_video`` at the smallest
   count.
2. **Cost**: forward time and peak memory of encoder + merge + projector + LLM prefill (the layer
   runner used by ``generate``, logits at the last position only) at ``--frames``, HiCo vs dense;
   the merge's share of the encoder time; how the prefill time and LLM length grow with frames
   (log-log slope: 1 = linear, 2 = quadratic). Frames are random clips made on the device, chunk
   by chunk, so video decoding is not in the numbers.
3. **Largest prefill that fits**: doubling then bisection on the frame count, HiCo vs dense, under
   a memory budget: on CUDA the process is capped with ``set_per_process_memory_fraction`` (weights
   included) and a trial fits when it does not run out of memory; on CPU a trial fits when the
   peak RSS increase during the call (sampled at 500 Hz) stays under the budget.

The physical limit measured alongside: a large matmul in the run's dtype (CUDA: bf16; CPU: fp32),
against which the prefill's achieved FLOP/s is shown.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import multiprocessing as mp
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from longvid.training.model.config import ModelConfig
from longvid.training.model.dropout import LayerRunner
from longvid.training.model.hico import HiCoModel
from longvid.training.model.merge import merge_clips
from longvid.training.tokenizer import build_prompt, build_tokenizer

LLM_PRESETS: dict[str, dict[str, Any]] = {
    # a CPU-sized Qwen2
    "small": dict(
        vocab_size=4096, hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2,
        intermediate_size=688, tie_word_embeddings=True,
    ),
    # the Qwen2-0.5B shape
    "0.5b": dict(
        vocab_size=151936, hidden_size=896, num_layers=24, num_heads=14, num_kv_heads=2,
        intermediate_size=4864, tie_word_embeddings=True,
    ),
}  # fmt: skip
ENCODER_PRESETS: dict[str, dict[str, Any]] = {
    "small": dict(depth=5, width=192, heads=3, mlp_ratio=4.0),  # 4 blocks run
    "umt-l": dict(depth=24, width=1024, heads=16, mlp_ratio=4.0),  # 23 blocks run
}
QUESTION = "Describe the video in detail, in the order things happen."


def model_config(args: argparse.Namespace, dense: bool, img_size: int | None = None) -> ModelConfig:
    llm = dict(LLM_PRESETS[args.llm_config], max_position_embeddings=1 << 22)
    enc = dict(ENCODER_PRESETS[args.encoder], img_size=img_size or args.img_size)
    enc["clips_per_batch"] = args.clips_per_batch
    return ModelConfig.model_validate(
        {"encoder": enc, "llm": llm, "merge": {"enabled": not dense, "head_chunks": 16}}
    )


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory added during the block: CUDA allocator peak, or sampled process RSS on CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_bytes = 0

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            sync(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.base = torch.cuda.memory_allocated(self.device)
        else:
            import psutil

            self.proc = psutil.Process()
            self.base = self.proc.memory_info().rss
            self.top = self.base
            self.stop = threading.Event()
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self) -> None:
        while not self.stop.is_set():
            self.top = max(self.top, self.proc.memory_info().rss)
            time.sleep(0.002)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            sync(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self.base
        else:
            self.stop.set()
            self.thread.join()
            self.top = max(self.top, self.proc.memory_info().rss)
            self.peak_bytes = self.top - self.base


@dataclass
class Run:
    mode: str
    frames: int
    visual_tokens: int
    llm_len: int
    encoder_s: float
    merge_s: float
    projector_s: float
    prefill_s: float
    total_s: float
    peak_mb: float
    prefill_tflops: float  # model FLOPs of the prefill / its time


def prefill_flops(cfg: Any, length: int) -> float:
    """Matmul FLOPs of a causal prefill: 2 * params-in-layers * L + causal attention."""
    h, inter, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    kv = h // cfg.num_attention_heads * cfg.num_key_value_heads
    per_token = 2 * layers * (h * h * 2 + h * kv * 2 + 3 * h * inter)
    attention = 2 * layers * h * length * length  # QK^T and AV, causal half of 4*L^2*h
    return per_token * length + attention


@torch.no_grad()
def run_once(
    model: HiCoModel, frames: int, prompt_ids: torch.Tensor, seed: int = 0, memory: bool = True
) -> Run:
    """Encoder (+ merge) over random clips made chunk by chunk on the device, projector, prefill."""
    device, cfg = model.device, model.cfg
    enc_cfg = cfg.encoder
    dtype = next(model.encoder.parameters()).dtype
    clips = math.ceil(frames / enc_cfg.clip_len)
    gen = torch.Generator(device=device).manual_seed(seed)
    t_enc = t_merge = 0.0
    feats = []
    # on CPU the RSS sampler is a thread that competes for the cores: timed runs go without it
    with PeakMemory(device) if memory or device.type == "cuda" else nullcontext() as mem:
        sync(device)
        start = time.perf_counter()
        for i in range(0, clips, enc_cfg.clips_per_batch):
            n = min(enc_cfg.clips_per_batch, clips - i)
            chunk = torch.randn(
                n, 3, enc_cfg.clip_len, enc_cfg.img_size, enc_cfg.img_size,
                generator=gen, device=device, dtype=dtype,
            )  # fmt: skip
            sync(device)
            t0 = time.perf_counter()
            tokens = model.encoder(chunk)
            sync(device)
            t1 = time.perf_counter()
            if cfg.merge.enabled:
                tokens = merge_clips(
                    tokens, cfg.merge.tokens_per_frame, enc_cfg.clip_len, cfg.merge.head_chunks
                )
            sync(device)
            t_enc += t1 - t0
            t_merge += time.perf_counter() - t1
            feats.append(tokens)
        t0 = time.perf_counter()
        visual = model.projector(torch.cat(feats).flatten(0, 1))
        del feats
        sync(device)
        t_proj = time.perf_counter() - t0
        ids = prompt_ids.to(device)[None]
        embeds, _, _ = model.splice(ids, torch.ones_like(ids), [visual])
        vis_start = int((ids[0] == model.video_token_id).nonzero()[0])
        n_visual, length = visual.shape[0], embeds.shape[1]
        del visual
        t0 = time.perf_counter()
        LayerRunner(model.llm).prefill(embeds, vis_start, n_visual, [])
        sync(device)
        t_prefill = time.perf_counter() - t0
        total = time.perf_counter() - start
    return Run(
        mode="dense" if not cfg.merge.enabled else "hico",
        frames=frames,
        visual_tokens=n_visual,
        llm_len=length,
        encoder_s=t_enc,
        merge_s=t_merge,
        projector_s=t_proj,
        prefill_s=t_prefill,
        total_s=total,
        peak_mb=mem.peak_bytes / 2**20 if mem is not None else float("nan"),
        prefill_tflops=prefill_flops(model.llm.config, length) / t_prefill / 1e12,
    )


def matmul_peak_tflops(device: torch.device, dtype: torch.dtype) -> float:
    """Best of 5 large matmuls: the compute limit of this device in this dtype."""
    n = 8192 if device.type == "cuda" else 1536
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = math.inf
    for _ in range(6):
        sync(device)
        t0 = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e12


def build(args, tokenizer, dense: bool, img_size: int | None = None) -> HiCoModel:
    torch.manual_seed(0)
    with torch.device(args.device):  # initialise on the device: seconds, not minutes, at 0.8B
        model = HiCoModel(model_config(args, dense, img_size), tokenizer).eval()
    return model.to(device=args.device, dtype=args.dtype)


def prompt_for(tokenizer, frames: int) -> torch.Tensor:
    text = build_prompt(QUESTION, duration=float(frames), n_frames=frames)
    return torch.tensor(tokenizer(text, add_special_tokens=False)["input_ids"])


def token_table(args, tokenizer) -> list[dict[str, Any]]:
    rows = []
    for img in (224, 448):
        for dense in (False, True):
            cfg = model_config(args, dense, img)
            for n in args.table_frames:
                text = len(prompt_for(tokenizer, n)) - 1  # the <video> token is replaced
                rows.append(
                    dict(
                        img_size=img,
                        mode="dense" if dense else "hico",
                        frames=n,
                        tokens_per_frame=cfg.visual_tokens(n) / n,
                        visual_tokens=cfg.visual_tokens(n),
                        llm_len=cfg.visual_tokens(n) + text,
                    )
                )
    # the counts above are the model's, not a formula: check one against a real encode
    check = build(args, tokenizer, dense=False, img_size=224)
    n = 8
    frames = torch.randn(n, 3, 224, 224, dtype=args.dtype)
    with torch.no_grad():
        got = check.encode_video(frames).shape[0]
    assert got == check.cfg.visual_tokens(n) == 16 * n, got
    del check
    return rows


def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of log(y) against log(x)."""
    lx, ly = [math.log(x) for x in xs], [math.log(max(y, 1e-9)) for y in ys]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly, strict=True)) / sum(
        (a - mx) ** 2 for a in lx
    )


def make_tokenizer():
    return build_tokenizer(
        [QUESTION, "a person walks a dog in the park"],
        Path(tempfile.mkdtemp(prefix="bench-hico-tok-")),
        vocab_size=512,
    )


def _measure_here(args, dense: bool, frames: int, repeats: int, tokenizer=None) -> Run:
    tokenizer = tokenizer or make_tokenizer()
    if dense not in args.models:
        args.models[dense] = build(args, tokenizer, dense)
    model = args.models[dense]
    prompt = prompt_for(tokenizer, frames)
    if args.device.type == "cpu":
        # RSS only shows memory the heap had to grow for, so the memory figure comes from a
        # first run on this fresh process's heap; the timed runs follow it
        cold = run_once(model, frames, prompt)
        if repeats == 0:  # memory only (the fit search)
            return cold
    else:
        warm = min(frames, args.frames[0])
        run_once(model, warm, prompt_for(tokenizer, warm))  # lazy init, kernels, allocator
    best = None
    for r in range(max(repeats, 1)):
        run = run_once(model, frames, prompt, seed=r, memory=args.device.type == "cuda")
        best = run if best is None or run.total_s < best.total_s else best
    if args.device.type == "cpu":
        best.peak_mb = cold.peak_mb
    return best


def _child(argv: list[str], dense: bool, frames: int, repeats: int) -> Run:
    return _measure_here(parse_args(argv), dense, frames, repeats)


def measure(args, dense: bool, frames: int, repeats: int) -> Run:
    """One cost point. On CPU in a fresh process, so that the RSS peak starts from a clean
    heap (memory freed by an earlier, larger run would hide a later run's allocations)."""
    if args.device.type == "cuda":
        try:
            return _measure_here(args, dense, frames, repeats, args.tokenizer)
        finally:
            torch.cuda.empty_cache()
    ctx = mp.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        return pool.submit(_child, args.argv, dense, frames, repeats).result()


def cost_runs(args) -> list[Run]:
    runs: list[Run] = []
    for dense in (False, True):
        for n in args.frames:
            run = measure(args, dense, n, args.repeats)
            runs.append(run)
            print(f"  {run.mode:5s} {n:6d} frames: {run.total_s:8.3f} s, {run.peak_mb:9.1f} MB")
            if run.total_s > args.time_cap_s:
                print(f"  {run.mode}: stopping at {n} frames (over {args.time_cap_s} s)")
                break
    return runs


def fits(args, dense: bool, frames: int) -> tuple[bool, Run | None]:
    run = None
    try:
        run = measure(args, dense, frames, 0)
    except torch.OutOfMemoryError:
        pass
    if run is None:  # out of memory: free what the failed attempt held, outside the except
        gc.collect()
        torch.cuda.empty_cache()
        return False, None
    if args.device.type == "cuda":
        return True, run  # the process cap decides
    return run.peak_mb * 2**20 <= args.fit_budget_gb * 2**30, run


def largest_fit(args, dense: bool) -> dict[str, Any]:
    """Doubling from ``--fit-start`` frames, then bisection to ``--fit-resolution``."""
    budget = args.fit_budget_gb * 2**30
    cfg = model_config(args, dense)
    label = "dense" if dense else "hico"
    # only this mode's model stays on the device: the budget covers its weights, nothing else
    args.models = {k: v for k, v in args.models.items() if k == dense}
    gc.collect()
    if args.device.type == "cuda":
        torch.cuda.empty_cache()
        total = torch.cuda.get_device_properties(args.device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, budget / total), args.device)
    ok, bad, trials = 0, None, []
    n, stopped = args.fit_start, ""
    while n <= args.fit_max_frames:
        good, run = fits(args, dense, n)
        trials.append(dict(frames=n, fits=good, run=asdict(run) if run else None))
        print(f"  fit {label} {n:7d} frames ({cfg.visual_tokens(n):,} visual): {good}")
        if not good:
            bad = n
            break
        ok = n
        if run and run.total_s > args.time_cap_s:
            stopped = f"time cap ({args.time_cap_s} s) reached"
            break
        n *= 2
    else:
        stopped = f"--fit-max-frames {args.fit_max_frames} reached"
    while bad is not None and bad - ok > max(4, ok * args.fit_resolution):
        mid = (ok + bad) // 2 // 4 * 4
        good, run = fits(args, dense, mid)
        trials.append(dict(frames=mid, fits=good, run=asdict(run) if run else None))
        print(f"  fit {label} {mid:7d} frames ({cfg.visual_tokens(mid):,} visual): {good}")
        ok, bad = (mid, bad) if good else (ok, mid)
    if args.device.type == "cuda":
        torch.cuda.set_per_process_memory_fraction(1.0, args.device)
    return dict(
        mode=label,
        largest_fitting_frames=ok,
        largest_fitting_llm_len=cfg.visual_tokens(ok) if ok else 0,
        smallest_failing_frames=bad,
        stopped=stopped,
        trials=trials,
    )


def print_report(result: dict[str, Any]) -> None:
    print(f"\n## HiCo benchmark ({result['device_name']}, {result['dtype']})")
    print(f"LLM {result['llm_config']}, encoder {result['encoder']} at {result['img_size']} px")
    print(f"matmul limit: {result['matmul_tflops']:.2f} TFLOP/s\n")
    print("### tokens per frame and LLM input length")
    print(
        "| px | frames | HiCo tok/frame | dense tok/frame | HiCo LLM len | dense LLM len | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    table = {(r["img_size"], r["mode"], r["frames"]): r for r in result["tokens"]}
    for (img, mode, n), r in table.items():
        if mode != "hico":
            continue
        d = table[(img, "dense", n)]
        print(
            f"| {img} | {n} | {r['tokens_per_frame']:.0f} | {d['tokens_per_frame']:.0f} | "
            f"{r['llm_len']:,} | {d['llm_len']:,} | {d['llm_len'] / r['llm_len']:.1f}x |"
        )
    print("\n### encoder + merge + prefill, HiCo vs dense")
    print(
        "| frames | mode | LLM len | encoder s | merge s (% of enc) | prefill s | prefill TFLOP/s "
        "| total s | peak MB |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in result["runs"]:
        share = 100 * r["merge_s"] / r["encoder_s"] if r["encoder_s"] else 0.0
        print(
            f"| {r['frames']} | {r['mode']} | {r['llm_len']:,} | {r['encoder_s']:.3f} | "
            f"{r['merge_s']:.3f} ({share:.1f}%) | {r['prefill_s']:.3f} | "
            f"{r['prefill_tflops']:.2f} | {r['total_s']:.3f} | {r['peak_mb']:.0f} |"
        )
    print("\n### dense / HiCo at the same frame count")
    by = {(r["mode"], r["frames"]): r for r in result["runs"]}
    for (mode, n), r in by.items():
        d = by.get(("dense", n))
        if mode == "hico" and d:
            print(
                f"- {n} frames: time {d['total_s'] / r['total_s']:.1f}x, "
                f"memory {d['peak_mb'] / max(r['peak_mb'], 1e-3):.1f}x, "
                f"LLM length {d['llm_len'] / r['llm_len']:.1f}x"
            )
    print("\n### growth with frames (log-log slope; 1 = linear)")
    for mode, g in result["growth"].items():
        print(
            f"- {mode}: LLM length {g['llm_len']:.2f}, prefill time {g['prefill_s']:.2f}, "
            f"encoder time {g['encoder_s']:.2f}, total {g['total_s']:.2f}"
        )
    print(f"\n### largest prefill under {result['fit_budget_gb']} GB")
    for f in result["fit"]:
        print(
            f"- {f['mode']}: {f['largest_fitting_frames']} frames fit"
            + (f", {f['smallest_failing_frames']} do not" if f["smallest_failing_frames"] else "")
            + (f" ({f['stopped']})" if f["stopped"] else "")
            + f"; {f['largest_fitting_llm_len']:,} visual tokens"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",") if x]  # noqa: E731
    ap.add_argument("--device", default="auto", help="auto, cpu or cuda")
    ap.add_argument("--llm-config", choices=sorted(LLM_PRESETS), default="small")
    ap.add_argument("--encoder", choices=sorted(ENCODER_PRESETS), default="small")
    ap.add_argument("--img-size", type=int, default=224, help="input size for the cost runs")
    ap.add_argument("--frames", type=ints, default=[8, 16, 32, 64], help="cost-run frame counts")
    ap.add_argument("--table-frames", type=ints, default=[64, 512, 2048])
    ap.add_argument("--repeats", type=int, default=1, help="best of N per cost point")
    ap.add_argument("--clips-per-batch", type=int, default=16)
    ap.add_argument("--fit-budget-gb", type=float, default=0.25)
    ap.add_argument("--fit-start", type=int, default=16)
    ap.add_argument("--fit-max-frames", type=int, default=1 << 17)
    ap.add_argument("--fit-resolution", type=float, default=0.125, help="bisect to this fraction")
    ap.add_argument("--skip-fit", action="store_true")
    ap.add_argument("--time-cap-s", type=float, default=120.0, help="stop growing past this")
    ap.add_argument("--json", type=Path, default=None, help="write all numbers here")
    args = ap.parse_args(argv)
    args.argv = list(argv) if argv is not None else sys.argv[1:]
    args.tokenizer = None
    args.models = {}  # CUDA only: one model per mode, reused by every point
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.device = torch.device(args.device)
    if args.device.type == "cuda" and args.device.index is None:
        args.device = torch.device("cuda", torch.cuda.current_device())  # the cap needs an index
    args.dtype = torch.bfloat16 if args.device.type == "cuda" else torch.float32
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    tokenizer = args.tokenizer = make_tokenizer()
    name = torch.cuda.get_device_name(args.device) if args.device.type == "cuda" else "cpu"
    if args.device.type == "cpu":
        name += f" ({torch.get_num_threads()} threads)"
    print(f"device {name}; computing the token table ...")
    result: dict[str, Any] = dict(
        device_name=name,
        dtype=str(args.dtype).replace("torch.", ""),
        llm_config=args.llm_config,
        encoder=args.encoder,
        img_size=args.img_size,
        fit_budget_gb=args.fit_budget_gb,
        matmul_tflops=matmul_peak_tflops(args.device, args.dtype),
        tokens=token_table(args, tokenizer),
    )
    print("cost runs ...")
    runs = cost_runs(args)
    result["runs"] = [asdict(r) for r in runs]
    result["growth"] = {}
    for mode in ("hico", "dense"):
        rs = [r for r in runs if r.mode == mode]
        if len(rs) >= 2:
            xs = [r.frames for r in rs]
            result["growth"][mode] = {
                k: slope(xs, [getattr(r, k) for r in rs])
                for k in ("llm_len", "prefill_s", "encoder_s", "total_s")
            }
    result["fit"] = []
    if not args.skip_fit:
        print("largest prefill that fits ...")
        result["fit"] = [largest_fit(args, dense) for dense in (False, True)]
    print_report(result)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
