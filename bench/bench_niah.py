"""NIAH cost per probe: the prefill of one needle-in-a-haystack question (the haystack is encoded
once and cached by the harness, so a probe is the LLM prefill over haystack + needle + prompt
plus the answer scoring), with HiCo (16 tokens per frame) and YaRN, against the dense baseline
(196 tokens per frame at 224 px) where it fits, and with progressive dropout on vs off.

    .venv/bin/python -m bench.bench_niah [--device cpu|cuda] [--llm small|0.5b]
        [--frames 64,128,256] [--dense-frames 16,32] [--repeats 3] [--threads N]

The model is a HiCoModel with random weights (cost does not depend on the values); the visual
tokens are random embeddings of the right count, since the encoder does not run per probe.
Timing: median of ``--repeats`` probes through ``score_probe`` (the harness's own code). Memory:
peak CUDA memory, or on CPU the peak RSS increase during the probes (sampled at 200 Hz). Printed
ratios: dense / HiCo time at the same frame count, dropout off / on, and the prefill's achieved
FLOP/s against a plain matmul of the same dtype measured in the same run (the physical limit).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from typing import Any

import psutil
import torch

from longvid.config import load_config
from longvid.training.model.config import ModelConfig
from longvid.training.model.hico import HiCoModel
from longvid.training.niah.probe import score_probe
from longvid.training.tokenizer import build_tokenizer

LLMS: dict[str, list[str]] = {
    # a CPU-sized Qwen2 (half the 0.5B width, a third of its layers)
    "small": [
        "llm.hidden_size=448", "llm.num_layers=8", "llm.num_heads=7", "llm.num_kv_heads=1",
        "llm.intermediate_size=2432", "llm.vocab_size=4096", "llm.tie_word_embeddings=true",
    ],
    # the Qwen2-0.5B shape
    "0.5b": [
        "llm.hidden_size=896", "llm.num_layers=24", "llm.num_heads=14", "llm.num_kv_heads=2",
        "llm.intermediate_size=4864", "llm.vocab_size=151936", "llm.tie_word_embeddings=true",
    ],
}  # fmt: skip
QUESTION = "Which colour is the odd picture? A. red B. green C. blue D. yellow"


class PeakRss:
    """Peak resident set increase while inside the block (sampled)."""

    def __enter__(self):
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20


def build(llm: str, dropout_layers: tuple[int, int], device: torch.device) -> HiCoModel:
    tok = build_tokenizer([QUESTION], tempfile.mkdtemp(), vocab_size=300)
    u, t = dropout_layers
    cfg = load_config(
        "conf/model/tiny.yaml",
        ModelConfig,
        [
            *LLMS[llm],
            "llm.max_position_embeddings=131072",
            "llm.rope_scaling={type: yarn, factor: 4.0, original_max_position_embeddings: 32768}",
            f"dropout.uniform_layer={u}",
            f"dropout.text_layer={t}",
        ],
    )
    torch.manual_seed(0)
    model = HiCoModel(cfg, tok).eval().to(device)
    if device.type == "cuda":
        model.to(torch.bfloat16)
    return model


def probe_cost(model, n_tokens: int, dropout: bool, repeats: int) -> dict[str, Any]:
    device = model.device
    dtype = model.projector.fc1.weight.dtype
    visual = torch.randn(n_tokens, model.llm.config.hidden_size, device=device, dtype=dtype)
    score_probe(model, visual[:64], QUESTION, "B", ["A", "B", "C", "D"], dropout)  # warm-up
    times = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        torch.cuda.synchronize(device)
    with PeakRss() as rss:
        for _ in range(repeats):
            start = time.perf_counter()
            score_probe(model, visual, QUESTION, "B", ["A", "B", "C", "D"], dropout)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times.append(time.perf_counter() - start)
    mem = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else rss.mb
    return {"tokens": n_tokens, "seconds": statistics.median(times), "memory_mb": mem}


def dropout_interleaved(model, n_tokens: int, repeats: int) -> tuple[float, float]:
    """Median probe time with dropout off and on, alternating, so load swings hit both."""
    device = model.device
    dtype = model.projector.fc1.weight.dtype
    visual = torch.randn(n_tokens, model.llm.config.hidden_size, device=device, dtype=dtype)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(repeats):
        for dropout in (False, True):
            start = time.perf_counter()
            score_probe(model, visual, QUESTION, "B", ["A", "B", "C", "D"], dropout)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[dropout].append(time.perf_counter() - start)
    return statistics.median(times[False]), statistics.median(times[True])


def matmul_flops(device: torch.device, dtype: torch.dtype) -> float:
    n = 2048 if device.type == "cpu" else 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    reps = 3
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return 2 * n**3 * reps / (time.perf_counter() - start)


def prefill_flops(model, n: int) -> float:
    """Matmul FLOPs of a prefill of n tokens (projections, MLP, attention scores and values)."""
    c = model.llm.config
    d, layers, inter = c.hidden_size, c.num_hidden_layers, c.intermediate_size
    kv = d // c.num_attention_heads * c.num_key_value_heads
    per_token = 2 * (d * d * 2 + d * kv * 2 + 3 * d * inter)
    return layers * (n * per_token + 2 * 2 * n * n * d / 2)  # causal: half the n^2 terms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--llm", choices=sorted(LLMS), default="small")
    ap.add_argument("--frames", default="64,128,256")
    ap.add_argument("--dense-frames", default="16,32")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    layers = 8 if args.llm == "small" else 24
    # the published schedule (4 and 18 of 28) scaled to the layer count
    model = build(args.llm, (max(1, round(layers * 4 / 28)), round(layers * 18 / 28)), device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    dtype = model.projector.fc1.weight.dtype
    peak = matmul_flops(device, dtype)
    print(f"device {name}, llm {args.llm}, threads {torch.get_num_threads()}, dtype {dtype}")
    print(f"matmul limit: {peak / 1e9:.1f} GFLOP/s")
    hico_per_frame, dense_per_frame, needle = 16, 196, 64
    hico = {}
    print("frames  tokens  HiCo s/probe  MB     GFLOP/s  (of limit)")
    for f in [int(x) for x in args.frames.split(",")]:
        r = probe_cost(model, f * hico_per_frame + needle, False, args.repeats)
        hico[f] = r
        achieved = prefill_flops(model, r["tokens"]) / r["seconds"]
        print(
            f"{f:6d}  {r['tokens']:6d}  {r['seconds']:12.3f}  {r['memory_mb']:5.0f}  "
            f"{achieved / 1e9:7.1f}  ({achieved / peak:.2f})"
        )
    print("frames  dense tokens  dense s/probe  HiCo s/probe  dense/HiCo")
    for f in [int(x) for x in args.dense_frames.split(",")]:
        d = probe_cost(model, f * dense_per_frame + needle, False, args.repeats)
        h = hico.get(f) or probe_cost(model, f * hico_per_frame + needle, False, args.repeats)
        print(
            f"{f:6d}  {d['tokens']:12d}  {d['seconds']:13.3f}  {h['seconds']:12.3f}  "
            f"{d['seconds'] / h['seconds']:10.1f}"
        )
    f = max(hico)
    off, on = dropout_interleaved(model, f * hico_per_frame + needle, args.repeats + 2)
    print(
        f"dropout at {f} frames (off/on interleaved, medians): off {off:.3f} s, on {on:.3f} s, "
        f"off/on {off / on:.2f}"
    )


if __name__ == "__main__":
    main()
