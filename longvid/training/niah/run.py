"""The NIAH grid: for every (frames, depth) cell, every needle is probed; a progress line with
accuracy, time per probe and peak memory per cell; ``results.json`` + the HTML heatmap + a
figure in the output folder.

A multi-hop needle with per-hop questions is scored on every hop's question and on its final
question, each with both scores, on the same haystack (one prefill per question); a probe is
*all hops* correct when every one of them is. A needle without hop questions is all-hops
correct when its final question is.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from longvid.errors import ConfigError
from longvid.training.niah.config import NiahConfig
from longvid.training.niah.data import encode_haystack, encode_needle, load_needles
from longvid.training.niah.probe import insert_needles, score_probe
from longvid.training.niah.report import write_figure, write_html

log = logging.getLogger(__name__)


def _peak_mb(device: torch.device) -> float:
    """Peak GPU memory since the last reset (CUDA), else the process's peak resident set."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024  # bytes on macOS, kB on Linux


def evaluate(model, cfg: NiahConfig, haystack: torch.Tensor, needles) -> dict[str, Any]:
    """Run the grid on an encoded haystack ([clips * tpc, D]); returns the results dict."""
    tpc = model.cfg.visual_tokens_per_clip()
    clip_len = model.cfg.encoder.clip_len
    needle_emb = {p: encode_needle(model, p) for n in needles for p in n.images}
    cells, per_needle = [], []
    grid = [(f, d) for f in cfg.frames for d in cfg.depths]
    device = model.device
    for k, (frames, depth) in enumerate(grid, 1):
        clips = -(-frames // clip_len)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        rows = []
        for needle in needles:
            visual = insert_needles(
                haystack, clips, tpc, [needle_emb[p] for p in needle.images], depth
            )
            r = score_probe(model, visual, needle.question, needle.answer, cfg.letters, cfg.dropout)
            hops = []
            for k, hop in enumerate(needle.hops, 1):
                h = score_probe(model, visual, hop.question, hop.answer, cfg.letters, cfg.dropout)
                hops.append({"hop": k, "answer": hop.answer, "predicted": h.predicted,
                             "exact": h.exact, "option": h.option})  # fmt: skip
            row = {
                "needle": needle.name,
                "hops": len(needle.images),
                "frames": frames,
                "depth": depth,
                "answer": needle.answer,
                "predicted": r.predicted,
                "exact": r.exact,
                "option": r.option,
                "hop_scores": hops,
                "all_hops_exact": r.exact and all(h["exact"] for h in hops),
                "all_hops_option": r.option and all(h["option"] for h in hops),
            }
            rows.append(row)
        per_needle += rows
        seconds = time.perf_counter() - start
        n = len(needles)
        questions = n + sum(len(x["hop_scores"]) for x in rows)
        cell = {
            "frames": frames,
            "depth": depth,
            "probes": n,
            "questions": questions,
            **_accuracy(rows),
            "visual_tokens": clips * tpc,
            "seconds": seconds,
            "seconds_per_probe": seconds / n,
            "seconds_per_question": seconds / questions,
            "peak_memory_mb": _peak_mb(device),
        }
        cells.append(cell)
        log.info(
            "cell %d/%d: %d frames, depth %.2f: exact %.3f, option %.3f (%d needles); "
            "%.2f s/probe, peak %.0f MB%s",
            k,
            len(grid),
            frames,
            depth,
            cell["exact"],
            cell["option"],
            n,
            cell["seconds_per_probe"],
            cell["peak_memory_mb"],
            " (GPU)" if device.type == "cuda" else " (process RSS)",
        )
    probes = len(per_needle)

    def accuracy_by(key: str) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        for value in sorted({x[key] for x in per_needle}):
            out[str(value)] = _accuracy([x for x in per_needle if x[key] == value])
        return out

    return {
        "cells": cells,
        "needles": per_needle,
        "summary": {
            "probes": probes,
            **_accuracy(per_needle),
            "chance": 1.0 / len(cfg.letters),
            "by_depth": accuracy_by("depth"),
            "by_frames": accuracy_by("frames"),
            "by_hop": _by_hop(per_needle),
        },
    }


def _accuracy(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Final-question accuracy (exact, option) and all-hops accuracy of probe rows."""
    n = max(len(rows), 1)
    keys = ("exact", "option", "all_hops_exact", "all_hops_option")
    return {k: sum(bool(x[k]) for x in rows) / n for k in keys}


def _by_hop(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Accuracy of each hop's question over the probes that have one ("1", "2", ...), the final
    question of those probes ("final") and all of them together ("all"); {} without any."""
    multi = [x for x in rows if x["hop_scores"]]
    if not multi:
        return {}
    out: dict[str, dict[str, float]] = {}
    for k in range(1, max(len(x["hop_scores"]) for x in multi) + 1):
        scored = [x["hop_scores"][k - 1] for x in multi if len(x["hop_scores"]) >= k]
        out[str(k)] = {m: sum(h[m] for h in scored) / len(scored) for m in ("exact", "option")}
    out["final"] = {m: sum(x[m] for x in multi) / len(multi) for m in ("exact", "option")}
    out["all"] = {
        m: sum(x[f"all_hops_{m}"] for x in multi) / len(multi) for m in ("exact", "option")
    }
    return out


def run_niah(cfg: NiahConfig, out: str | Path) -> dict[str, Any]:
    """Load the model, encode (or reuse) the haystack, run the grid, write the outputs."""
    from longvid.training.infer import pick_device
    from longvid.training.model.hico import HiCoModel

    for key in ("checkpoint", "haystack", "needles"):
        if getattr(cfg, key) is None:
            raise ConfigError(f"niah: '{key}' is required")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    device = pick_device(cfg.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    model = HiCoModel.from_pretrained(cfg.checkpoint, device=device, dtype=dtype)
    needles = load_needles(cfg.needles, cfg.max_needles)
    clip_len = model.cfg.encoder.clip_len
    longest = -(-max(cfg.frames) // clip_len) * clip_len
    start = time.perf_counter()
    haystack = encode_haystack(
        model,
        cfg.checkpoint,
        cfg.haystack,
        cfg.fps,
        longest,
        cfg.cache_dir or out / "cache",
        cfg.chunk_frames,
    )
    log.info("haystack: %d frames ready in %.1f s", longest, time.perf_counter() - start)
    results = {
        "model": str(cfg.checkpoint),
        "device": str(device),
        "config": cfg.model_dump(mode="json"),
        **evaluate(model, cfg, haystack, needles),
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    html = write_html(results, out)
    fig = write_figure(results, out)
    log.info("results: %s, %s, %s", out / "results.json", html, fig)
    return results
