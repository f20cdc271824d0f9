"""Training throughput with HiCo against the same model without it, and the loader's share of
the step time, in one run.

    .venv/bin/python -m bench.bench_train [--device cpu|cuda] [--model tiny|gpu] [--frames 16]

* **HiCo**: the trainer (:class:`longvid.training.trainer.Trainer`) on one stage that trains
  every part, ``--frames`` frames per video, ``--batch`` samples per step, the loader's default
  ``--workers`` (2), merge on (16 tokens per clip in ``tiny``, 64 in ``gpu``).
* **dense** (the peer): the same model, data, seed and steps with ``merge.enabled: false``, so
  every encoder token reaches the LLM (4× as many in ``tiny`` at 64 px, 12.25× in ``gpu`` at
  224 px).
* Reported from ``metrics.jsonl`` after ``--warmup`` steps: samples/s (and video frames/s),
  visual tokens/s (visual tokens the LLM consumed per second), LLM tokens per sample, and the
  data-wait share (time the step spent waiting for the loader / step time; goal < 10 %).

``--model tiny`` is ``conf/model/tiny.yaml`` at 64 px (CPU); ``--model gpu`` is a UMT-L-shaped
encoder at 224 px with a small Qwen2 (1536 wide, 8 layers), bf16 autocast. The corpus is
generated here (testsrc2 clips, 320×180, H.264) and kept in ``--corpus`` when given.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from longvid.config import load_config
from longvid.training.config import TrainConfig
from longvid.training.metrics import read_metrics
from longvid.training.model.config import ModelConfig
from longvid.training.trainer import Trainer

REPO = Path(__file__).resolve().parents[1]


def make_corpus(base: Path, clips: int) -> str:
    root = base / "corpus"
    if (root / "samples.parquet").exists():
        return str(root)
    from tests.fixtures.loader_corpus import ClipSpec, build_test_corpus

    specs = [
        ClipSpec(("webvid", "howto100m", "hdvila")[i % 3], f"t{i:03d}", duration=(16.0, 24.0, 40.0)[i % 3],
                 width=320, height=180, fps=25, keyint=50, preset="veryfast", crf=28, bframes=2)
        for i in range(clips)
    ]
    return build_test_corpus(root, specs, base / "clips", samples_per_shard=4).root


def model_config(name: str, merge: bool) -> ModelConfig:
    if name == "tiny":
        cfg = load_config(REPO / "conf" / "model" / "tiny.yaml", ModelConfig)
    else:
        cfg = ModelConfig.model_validate({
            "encoder": {"img_size": 224, "depth": 24, "width": 1024, "heads": 16,
                        "clips_per_batch": 16},
            "merge": {"tokens_per_frame": 16, "head_chunks": 16},
            "llm": {"vocab_size": 1024, "hidden_size": 1536, "num_layers": 8, "num_heads": 12,
                    "num_kv_heads": 2, "intermediate_size": 4096,
                    "max_position_embeddings": 32768},
        })
    return cfg.model_copy(update={"merge": cfg.merge.model_copy(update={"enabled": merge})})


def run_variant(args, corpus: str, merge: bool, out: Path) -> dict[str, float]:
    mcfg = model_config(args.model, merge)
    res = mcfg.encoder.img_size
    cfg = TrainConfig.model_validate({
        "model": mcfg.model_dump(mode="json"),
        "seed": 0,
        "data": {"corpus": [corpus], "num_workers": args.workers, "tokenizer_vocab": 512},
        "stages": [{
            "name": "bench", "trainable": ["encoder", "projector", "llm"], "resolution": res,
            "data": {"t_min": args.frames, "t_max": args.frames, "tail": "pad"},
            "lr": 1e-4, "global_batch": args.batch, "micro_batch": args.batch,
            "max_seq_len": 32768, "steps": args.warmup + args.steps,
        }],
        "checkpoint": {"every_steps": 0, "at_stage_end": False, "export_model": False},
        "runtime": {"device": args.device, "deterministic": False},
        "metrics": {"log_every": 1000, "tensorboard": False},
    })
    start = time.perf_counter()
    Trainer(cfg, out).run()
    wall = time.perf_counter() - start
    rows = read_metrics(out / "metrics.jsonl")[args.warmup :]
    t = sum(r["step_time_s"] for r in rows)
    samples = sum(r["samples_per_s"] * r["step_time_s"] for r in rows)
    visual = sum(r["visual_tokens_per_sample"] * r["samples_per_s"] * r["step_time_s"] for r in rows)
    tokens = sum(r["tokens_per_s"] * r["step_time_s"] for r in rows)
    wait = sum(r["data_wait_share"] * r["step_time_s"] for r in rows)
    return {
        "samples_per_s": samples / t,
        "visual_tokens_per_s": visual / t,
        "visual_per_sample": visual / samples,
        "llm_tokens_per_sample": tokens / samples,
        "data_wait_share": wait / t,
        "step_s": t / len(rows),
        "wall_s": wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--model", default="tiny", choices=["tiny", "gpu"])
    ap.add_argument("--frames", type=int, default=16, help="frames per video (multiple of 4)")
    ap.add_argument("--batch", type=int, default=4, help="samples per step")
    ap.add_argument("--steps", type=int, default=8, help="measured steps per variant")
    ap.add_argument("--warmup", type=int, default=2, help="steps left out of the numbers")
    ap.add_argument("--workers", type=int, default=2, help="loader workers (its default is 2)")
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--corpus", default=None, help="keep/reuse the generated corpus here")
    ap.add_argument("--only", choices=["hico", "dense"], default=None)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        corpus = make_corpus(Path(args.corpus or tmp), args.clips)
        print(f"device {args.device}, model {args.model}, {args.frames} frames, batch "
              f"{args.batch}, {args.workers} loader workers, {args.steps} measured steps "
              f"(+{args.warmup} warm-up)", flush=True)
        results = {}
        for name, merge in (("hico", True), ("dense", False)):
            if args.only and args.only != name:
                continue
            results[name] = r = run_variant(args, corpus, merge, Path(tmp) / f"run-{name}")
            print(f"{name:>6}: {r['samples_per_s']:.2f} samples/s "
                  f"({r['samples_per_s'] * args.frames:.0f} frames/s), "
                  f"{r['visual_tokens_per_s']:.0f} visual tokens/s "
                  f"({r['visual_per_sample']:.0f} per sample, {r['llm_tokens_per_sample']:.0f} "
                  f"LLM tokens per sample), step {r['step_s']:.3f} s, data wait "
                  f"{100 * r['data_wait_share']:.1f}% (goal < 10%), wall {r['wall_s']:.1f} s",
                  flush=True)
        if len(results) == 2:
            h, d = results["hico"], results["dense"]
            print(f"HiCo / dense: samples/s x{h['samples_per_s'] / d['samples_per_s']:.2f}, "
                  f"LLM tokens per sample x{h['llm_tokens_per_sample'] / d['llm_tokens_per_sample']:.3f}")


if __name__ == "__main__":
    main()
