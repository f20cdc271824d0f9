"""Per-step training metrics: ``OUT/metrics.jsonl`` (one JSON object per optimizer step),
TensorBoard events under ``OUT/tb``, and a progress line on the console. Only rank 0 writes.

A resumed run first cuts ``metrics.jsonl`` back to the checkpoint's step (a killed run may have
logged steps after its last checkpoint, and its last line may be half written) and tells
TensorBoard to purge later events, so the file of an interrupted-and-resumed run holds exactly
one row per step, like an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path
from typing import Any, TextIO

METRICS_FILE = "metrics.jsonl"
TB_DIR = "tb"
# Row keys written as TensorBoard scalars (train/<key>).
TB_KEYS = (
    "loss",
    "lr",
    "grad_norm",
    "samples_per_s",
    "tokens_per_s",
    "visual_tokens_per_sample",
    "data_wait_share",
    "step_time_s",
)


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a metrics file (a half-written last line is skipped)."""
    rows = []
    p = Path(path)
    if not p.exists():
        return rows
    with open(p, encoding="utf-8") as fh:
        for line in fh:
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict) and "step" in row:
                rows.append(row)
    return rows


def truncate_metrics(path: Path, last_step: int) -> None:
    """Keep the rows up to ``last_step`` (atomically: temp file + rename)."""
    rows = [r for r in read_metrics(path) if int(r["step"]) <= last_step]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r) + "\n")
    os.replace(tmp, path)


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(seconds)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def progress_line(row: dict[str, Any], total_steps: int, eta_s: float) -> str:
    """One console line for a step."""
    return (
        f"[train] {row['stage']} {row['stage_step']}/{row['stage_steps']} "
        f"step {row['step']}/{total_steps} loss {row['loss']:.4f} lr {row['lr']:.2e} "
        f"| {row['samples_per_s']:.2f} samples/s {row['tokens_per_s']:.0f} tok/s "
        f"| {row['visual_tokens_per_sample']:.0f} vis tok/sample "
        f"| data wait {100 * row['data_wait_share']:.0f}% | eta {_duration(eta_s)}"
    )


class MetricsLog:
    """Writes the rows of one run (a no-op on ranks other than 0)."""

    def __init__(
        self,
        out_dir: Path,
        enabled: bool,
        *,
        resume_step: int | None,
        tensorboard: bool,
        log_every: int,
        total_steps: int,
        stream: TextIO | None = None,
    ):
        self.enabled = enabled
        self.log_every = log_every
        self.total_steps = total_steps
        self.stream = stream or sys.stdout
        self.path = out_dir / METRICS_FILE
        self._fh = None
        self._tb = None
        self._step_times: list[float] = []
        if not enabled:
            return
        if resume_step is None:
            self.path.unlink(missing_ok=True)  # a fresh run (a crash before its first checkpoint)
        else:
            truncate_metrics(self.path, resume_step)
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = None if resume_step is None else resume_step + 1
            self._tb = SummaryWriter(str(out_dir / TB_DIR), purge_step=purge)

    def log(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._fh.write(json.dumps(row) + "\n")
        self._fh.flush()  # one line per step reaches the file even if the process is killed
        if self._tb is not None:
            for key in TB_KEYS:
                if key in row and row[key] is not None:
                    self._tb.add_scalar(f"train/{key}", row[key], row["step"])
            for name, lr in row.get("lr_groups", {}).items():
                self._tb.add_scalar(f"lr/{name}", lr, row["step"])
        self._step_times.append(row["step_time_s"])
        if row["step"] % self.log_every == 0 or row["step"] == self.total_steps:
            recent = self._step_times[-20:]
            eta = (self.total_steps - row["step"]) * sum(recent) / len(recent)
            print(progress_line(row, self.total_steps, eta), file=self.stream, flush=True)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def stage_summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per stage, in order: steps, first and last loss, mean loss of its first and last tenth."""
    by_stage: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(rows, key=lambda r: r["step"]):
        by_stage.setdefault(r["stage"], []).append(r)
    out = []
    for name, rs in by_stage.items():
        k = max(1, len(rs) // 10)
        losses = [r["loss"] for r in rs]
        out.append(
            {
                "stage": name,
                "steps": len(rs),
                "first_loss": losses[0],
                "last_loss": losses[-1],
                "first_tenth_mean": sum(losses[:k]) / k,
                "last_tenth_mean": sum(losses[-k:]) / k,
            }
        )
    return out


def format_summary(summary: list[dict[str, Any]]) -> str:
    lines = [f"{'stage':<20} {'steps':>6} {'loss first':>11} {'loss last':>10} "
             f"{'first 10%':>10} {'last 10%':>9}"]
    for s in summary:
        lines.append(
            f"{s['stage']:<20} {s['steps']:>6} {s['first_loss']:>11.4f} {s['last_loss']:>10.4f} "
            f"{s['first_tenth_mean']:>10.4f} {s['last_tenth_mean']:>9.4f}"
        )
    return "\n".join(lines)
