"""The training loop: stages of the curriculum in order, resumable at any optimizer step.

    result = Trainer(cfg, out_dir, resume="auto").run()

One optimizer step = ``accum`` micro-batches per rank (DDP syncs gradients on the last one).
The loss is next-token cross-entropy on the answer tokens only (the model masks the prompt and
the visual tokens), averaged over every answer token of the global batch: each micro-batch's
summed loss is divided by the global token count, which is known before the forward passes
because the step's micro-batches are fetched first.

Exact resume: a checkpoint holds the weights, AdamW and schedule state, every RNG, the
loader's cursor (counted at this consumer) and the :class:`TrainState`. The loader's order is a
pure function of its cursor, and nothing between a checkpoint and the next step draws from the
global RNGs (DataLoader seeding is done under ``fork_rng``), so a resumed run repeats the
uninterrupted one bit for bit on CPU with deterministic settings.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel

from longvid import storage
from longvid.config import config_diff, read_yaml, validate_config
from longvid.errors import ConfigError, LongvidError
from longvid.training import checkpoint as ckpt
from longvid.training.config import TrainConfig, resolve_path
from longvid.training.curriculum import StagePlan, apply_stage, make_optimizer, plan_stages
from longvid.training.data import make_loader, normalize_frames
from longvid.training.data.catalog import Catalog, load_catalog
from longvid.training.distributed import DistEnv, configure_runtime, init_distributed, shutdown
from longvid.training.metrics import MetricsLog, format_summary, read_metrics, stage_summary
from longvid.training.model.config import ModelConfig
from longvid.training.tokenizer import IGNORE_INDEX, build_tokenizer, load_tokenizer

log = logging.getLogger(__name__)

TOKENIZER_DIR = "tokenizer"
MODEL_DIR = "model"
CHECKPOINT_DIR = "checkpoints"


class ResumeRefused(LongvidError):
    """The checkpoint does not belong to this config (a started stage, the model or the seed
    changed)."""


@dataclass
class TrainState:
    """Where the run is. ``step_in_stage == steps`` of its stage means the stage is done."""

    stage_index: int = 0
    step_in_stage: int = 0
    global_step: int = 0
    samples_seen: int = 0
    tokens_seen: int = 0


@dataclass
class TrainResult:
    out_dir: Path
    global_step: int
    total_steps: int
    finished: bool  # False when --stop-after stopped the run early
    checkpoint: str | None  # the newest checkpoint written
    summary: list[dict[str, Any]]


# --------------------------------------------------------------------------- small helpers
def parse_stop_after(value: str | int | float | None, total_steps: int) -> int | None:
    """``--stop-after``: a global step (``12``), a fraction of all steps (``0.5``) or ``half``."""
    if value is None:
        return None
    raw = str(value).strip().lower()
    if raw == "half":
        raw = "0.5"
    try:
        num = float(raw)
    except ValueError:
        raise ConfigError(f"--stop-after {value!r}: expected a step, a fraction or 'half'") from None
    if raw.isdigit():
        step = int(raw)
    elif 0 < num < 1:
        step = max(1, round(total_steps * num))
    else:
        raise ConfigError(f"--stop-after {value!r}: a step >= 1 or a fraction in (0, 1)")
    if step < 1:
        raise ConfigError(f"--stop-after {value!r}: must be at least step 1")
    return min(step, total_steps)


def tokenizer_hash(tokenizer: Any) -> str:
    """Hash of the vocabulary (ids of every token)."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256("\n".join(f"{t}\t{i}" for t, i in vocab).encode()).hexdigest()[:16]


def fit_to_length(
    batch: dict[str, Any], visual: list[int], max_len: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """Cut each sample's text so that text + visual tokens fit ``max_len`` (the ``<video>``
    placeholder is replaced by the visual tokens). Returns ids, mask, labels, samples cut."""
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    cut = 0
    for b, n_vis in enumerate(visual):
        allowed = max_len - n_vis + 1
        if int(mask[b].sum()) > allowed:
            if cut == 0:
                ids, mask, labels = ids.clone(), mask.clone(), labels.clone()
            cut += 1
            mask[b, allowed:] = 0
            labels[b, allowed:] = IGNORE_INDEX
    return ids, mask, labels, cut


def answer_tokens(labels: torch.Tensor) -> int:
    """Tokens the loss is taken on (labels shifted by one, as the causal LM does)."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


# ------------------------------------------------------------------------------- the trainer
class Trainer:
    """Runs ``cfg``'s curriculum into ``out_dir``.

    ``resume``: None (a fresh run; refused when the checkpoint dir already holds checkpoints),
    ``"auto"`` (the newest complete checkpoint, else fresh) or a checkpoint folder.
    ``stop_after``: stop cleanly after a checkpoint at this global step / fraction / "half".
    """

    def __init__(
        self,
        cfg: TrainConfig,
        out_dir: str | Path,
        *,
        resume: str | None = None,
        stop_after: str | int | float | None = None,
        config_dir: Path | None = None,
    ):
        self.cfg = cfg
        self.out = Path(out_dir).resolve()
        self.resume = resume
        self.stop_after_arg = stop_after
        self.config_dir = config_dir
        self.ckpt_dir = cfg.checkpoint.dir or str(self.out / CHECKPOINT_DIR)

    # -------------------------------------------------------------------------- setup parts
    def _model_config(self) -> ModelConfig:
        m = self.cfg.model
        if isinstance(m, ModelConfig):
            return m
        path = resolve_path(m, self.config_dir)
        return validate_config(read_yaml(path), ModelConfig, str(path))

    def _tokenizer(self, env: DistEnv, catalog: Catalog):
        if self.cfg.data.tokenizer is not None:
            return load_tokenizer(resolve_path(self.cfg.data.tokenizer, self.config_dir))
        tok_dir = self.out / TOKENIZER_DIR
        if env.is_main and not (tok_dir / "tokenizer.json").exists():
            # deterministic input: captions in catalog (key) order, then the stage questions
            texts = [c or "" for c in catalog.table.column("caption").to_pylist()]
            texts += [s.data.question for s in self.cfg.stages]
            build_tokenizer(texts, tok_dir, vocab_size=self.cfg.data.tokenizer_vocab)
        env.barrier()
        return load_tokenizer(tok_dir)

    def _find_checkpoint(self) -> ckpt.CheckpointRef | None:
        if self.resume is None:
            existing = ckpt.latest(self.ckpt_dir)
            if existing is not None:
                raise ConfigError(
                    f"{self.ckpt_dir} already holds checkpoints (newest: step {existing.step}); "
                    "pass --resume auto to continue that run, or choose another --out"
                )
            return None
        if self.resume == "auto":
            return ckpt.latest(self.ckpt_dir)
        return ckpt.open_checkpoint(self.resume)

    def _check_resume(
        self, saved: dict[str, Any], model_cfg: ModelConfig, tok_hash: str, world: int
    ) -> TrainState:
        """Refuse a checkpoint whose started stages, model, seed or tokenizer differ."""
        problems = []
        if saved.get("seed") != self.cfg.seed:
            problems.append(f"seed: {saved.get('seed')!r} → {self.cfg.seed!r}")
        problems += [f"model.{d}" for d in config_diff(saved["model_config"],
                                                        model_cfg.model_dump(mode="json"))]
        if saved.get("tokenizer") != tok_hash:
            problems.append("the tokenizer's vocabulary changed")
        state = TrainState(**saved["train_state"])
        started = saved["stages"][: state.stage_index + 1]
        if len(self.cfg.stages) < len(started):
            problems.append(
                f"the checkpoint is in stage {state.stage_index + 1} but the config has "
                f"{len(self.cfg.stages)} stage(s)"
            )
        for i, old in enumerate(started):
            if i >= len(self.cfg.stages):
                break
            new = self.cfg.stages[i].fingerprint_fields()
            problems += [f"stages[{i}] ({old.get('name')}).{d}" for d in config_diff(old, new)]
        if problems:
            raise ResumeRefused(
                "resume refused: the config differs from the checkpoint's in a stage that has "
                "already started (or in the model, seed or tokenizer): " + "; ".join(problems)
            )
        if saved.get("world_size") != world:
            log.warning(
                "resuming a %s-process checkpoint with %s processes: same data order, but the "
                "gradient sums are grouped differently (not bitwise equal)",
                saved.get("world_size"),
                world,
            )
        return state

    def _state_json(self, state: TrainState, model_cfg: ModelConfig, tok_hash: str,
                    plans: list[StagePlan], world: int) -> dict[str, Any]:
        return {
            "train_state": asdict(state),
            "stage": plans[state.stage_index].cfg.name,
            "seed": self.cfg.seed,
            "world_size": world,
            "model_config": model_cfg.model_dump(mode="json"),
            "tokenizer": tok_hash,
            "stages": [s.fingerprint_fields() for s in self.cfg.stages[: state.stage_index + 1]],
            "stage_steps": [p.steps for p in plans],
        }

    # ------------------------------------------------------------------------------ the run
    def run(self) -> TrainResult:
        env = init_distributed(self.cfg.distributed, self.cfg.runtime)
        try:
            return self._run(env)
        finally:
            shutdown(env)

    def _run(self, env: DistEnv) -> TrainResult:
        from longvid.training.model.hico import HiCoModel

        cfg = self.cfg
        configure_runtime(cfg.runtime, env)
        if cfg.s3 is not None:
            storage.configure(cfg.s3)
        if cfg.data.pin_memory is None:
            cfg = cfg.model_copy(
                update={"data": cfg.data.model_copy(update={"pin_memory": env.device.type == "cuda"})}
            )
            self.cfg = cfg
        if env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        env.barrier()
        ref = self._find_checkpoint()
        catalog = load_catalog(cfg.data.corpus)

        # model and tokenizer: identical on every rank (same seed; DDP also broadcasts rank 0's)
        torch.manual_seed(cfg.seed)
        if cfg.init is not None:
            model = HiCoModel.from_pretrained(resolve_path(cfg.init, self.config_dir))
            tokenizer = model.tokenizer
        else:
            tokenizer = self._tokenizer(env, catalog)
            model = HiCoModel(self._model_config(), tokenizer)
        model_cfg = model.cfg  # before any stage changes the resolution
        tok_hash = tokenizer_hash(tokenizer)
        model.set_gradient_checkpointing(cfg.runtime.llm_checkpointing)
        if hasattr(model.encoder, "set_grad_checkpointing"):
            model.encoder.set_grad_checkpointing(cfg.runtime.encoder_checkpointing)
        else:
            model.encoder.grad_checkpointing = cfg.runtime.encoder_checkpointing
        plans = plan_stages(cfg, model_cfg, catalog, env.world_size)
        total = sum(p.steps for p in plans)
        stop_at = parse_stop_after(self.stop_after_arg, total)

        loaded = ckpt.load_checkpoint(ref, env.rank) if ref is not None else None
        if loaded is not None:
            state = self._check_resume(loaded.state, model_cfg, tok_hash, env.world_size)
            model.load_state_dict(loaded.model, strict=True)
        else:
            state = TrainState()
        model.to(env.device).train()

        if env.is_main:
            self._print_plan(plans, env, loaded)
        metrics = MetricsLog(
            self.out,
            env.is_main,
            resume_step=state.global_step if loaded is not None else None,
            tensorboard=cfg.metrics.tensorboard,
            log_every=cfg.metrics.log_every,
            total_steps=total,
        )
        writer = ckpt.CheckpointWriter(
            self.ckpt_dir, env.rank, env.world_size, cfg.checkpoint.keep_last, env.barrier
        )
        last_ckpt = ref.uri if ref is not None else None
        if loaded is not None:
            ckpt.set_rng_state(loaded.rank["rng"])  # last thing before the loop
        try:
            for plan in plans[state.stage_index :]:
                if stop_at is not None and state.global_step >= stop_at:
                    break
                if state.stage_index != plan.index:  # entering the next stage
                    state.stage_index, state.step_in_stage = plan.index, 0
                resume_here = loaded if (
                    loaded is not None and loaded.state["train_state"]["stage_index"] == plan.index
                ) else None
                last_ckpt = self._run_stage(
                    env, model, tokenizer, catalog, plan, plans, state, resume_here, metrics,
                    writer, stop_at, model_cfg, tok_hash, total, last_ckpt,
                )
                loaded = None if resume_here is not None else loaded
        finally:
            metrics.close()

        finished = state.stage_index == len(plans) - 1 and state.step_in_stage == plans[-1].steps
        if finished and cfg.checkpoint.export_model and env.is_main:
            model.save_pretrained(self.out / MODEL_DIR)
        env.barrier()
        summary = stage_summary(read_metrics(self.out / "metrics.jsonl")) if env.is_main else []
        if env.is_main:
            if finished:
                print(f"[train] finished {total} steps; loss per stage:")
            else:
                print(
                    f"[train] stopped after step {state.global_step} of {total} "
                    f"(checkpoint {last_ckpt}); continue with --resume auto; loss so far:"
                )
            print(format_summary(summary), flush=True)
        return TrainResult(self.out, state.global_step, total, finished, last_ckpt, summary)

    def _print_plan(self, plans: list[StagePlan], env: DistEnv, loaded) -> None:
        start = (
            f"resuming from {loaded.ref.uri} (step {loaded.ref.step})"
            if loaded is not None
            else "starting a new run"
        )
        print(f"[train] {start}; {env.world_size} process(es) on {env.device}", flush=True)
        for p in plans:
            c = p.cfg
            print(
                f"[train] stage {p.index + 1} {c.name}: train {'+'.join(c.trainable)}, "
                f"{p.steps} steps x {c.global_batch} samples (micro {c.micro_batch} x "
                f"{env.world_size} ranks x accum {p.accum}), frames {c.data.t_min}-{c.data.t_max} "
                f"at {p.resolution}px, lr {c.lr:g}"
                + "".join(f" {k} {v:g}" for k, v in c.part_lr.items())
                + f", max seq {c.max_seq_len}",
                flush=True,
            )

    # ----------------------------------------------------------------------------- a stage
    def _run_stage(self, env, model, tokenizer, catalog, plan, plans, state, loaded, metrics,
                   writer, stop_at, model_cfg, tok_hash, total, last_ckpt):
        cfg = self.cfg
        if state.step_in_stage >= plan.steps:  # resumed from this stage's final checkpoint
            return last_ckpt
        trained = apply_stage(model, plan)
        if env.distributed:
            wrapped = DistributedDataParallel(
                model, device_ids=[env.device.index] if env.device.type == "cuda" else None
            )
        else:
            wrapped = model
        optimizer, scheduler = make_optimizer(trained, plan)
        loader = make_loader(plan.data, env.rank, env.world_size, tokenizer, catalog=catalog)
        if loaded is not None:
            optimizer.load_state_dict(loaded.optimizer["optimizer"])
            scheduler.load_state_dict(loaded.optimizer["scheduler"])
            loader.load_state_dict(loaded.rank["loader"])
        params = [p for ps in trained.values() for p in ps]
        stream = batch_stream(loader)
        last_saved = state.global_step if loaded is not None else None
        try:
            while state.step_in_stage < plan.steps:
                if stop_at is not None and state.global_step >= stop_at:
                    break
                row = self._step(env, wrapped, model, plan, stream, optimizer, scheduler, params)
                state.step_in_stage += 1
                state.global_step += 1
                state.samples_seen += plan.cfg.global_batch
                state.tokens_seen += row.pop("_tokens")
                row.update(
                    stage=plan.cfg.name,
                    stage_index=plan.index,
                    stage_step=state.step_in_stage,
                    stage_steps=plan.steps,
                    step=state.global_step,
                    samples_seen=state.samples_seen,
                    epoch=loader.epoch,
                )
                metrics.log(row)
                every = cfg.checkpoint.every_steps
                due = (
                    (every and state.global_step % every == 0)
                    or (cfg.checkpoint.at_stage_end and state.step_in_stage == plan.steps)
                    or (stop_at is not None and state.global_step == stop_at)
                )
                if due and last_saved != state.global_step:
                    last_ckpt = self._save(env, writer, model, optimizer, scheduler, loader,
                                           state, model_cfg, tok_hash, plans)
                    last_saved = state.global_step
        finally:
            stream.close()  # stops the DataLoader workers
        return last_ckpt

    def _save(self, env, writer, model, optimizer, scheduler, loader, state, model_cfg,
              tok_hash, plans) -> str:
        return writer.save(
            state.global_step,
            self._state_json(state, model_cfg, tok_hash, plans, env.world_size),
            {"rng": ckpt.rng_state(), "loader": loader.state_dict()},
            model_state=lambda: {k: v.detach().cpu() for k, v in model.state_dict().items()},
            optimizer_state=lambda: {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            },
        )

    # ------------------------------------------------------------------------------ a step
    def _frames(self, batch: dict[str, Any], device: torch.device, model) -> list[torch.Tensor]:
        frames = [f.to(device, non_blocking=True) for f in batch["frames"]]
        if frames and frames[0].dtype == torch.uint8:
            enc = model.cfg.encoder
            frames = [normalize_frames(f, enc.mean, enc.std) for f in frames]
        return frames

    def _step(self, env: DistEnv, wrapped, model, plan: StagePlan, stream: Iterator[dict],
              optimizer, scheduler, params) -> dict[str, Any]:
        t0 = time.perf_counter()
        micro = []
        for _ in range(plan.accum):
            micro.append(next(stream))
        wait = time.perf_counter() - t0

        prepared, n_tok_local = [], 0
        for batch in micro:
            visual = [model.cfg.visual_tokens(int(n)) for n in batch["n_frames"]]
            ids, mask, labels, cut = fit_to_length(batch, visual, plan.cfg.max_seq_len)
            n = answer_tokens(labels)
            prepared.append((batch, ids, mask, labels, cut, n))
            n_tok_local += n
        n_tok_global = env.all_reduce_sum([float(n_tok_local)])[0]
        scale = env.world_size / max(n_tok_global, 1.0)  # DDP averages over ranks

        autocast = (
            torch.autocast("cuda", dtype=torch.bfloat16)
            if self._bf16(env)
            else contextlib.nullcontext()
        )
        loss_sum = 0.0
        tokens = visual_total = truncated = 0
        for i, (batch, ids, mask, labels, cut, n) in enumerate(prepared):
            sync = not env.distributed or i == len(prepared) - 1
            ctx = contextlib.nullcontext() if sync else wrapped.no_sync()
            with ctx:
                frames = self._frames(batch, env.device, model)
                with autocast:
                    out = wrapped(frames, ids.to(env.device), mask.to(env.device),
                                  labels.to(env.device))
                # HF's loss is the mean over this micro-batch's answer tokens; times n = the sum
                part = out.loss.float() * n if n else out.logits.sum() * 0.0
                (part * scale).backward()
            loss_sum += float(part.detach())
            tokens += int(out.attention_mask.sum())
            visual_total += sum(out.n_visual_tokens)
            truncated += cut

        grad_clip = plan.cfg.grad_clip or math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, grad_clip))
        lrs = scheduler.get_last_lr()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if env.device.type == "cuda":
            torch.cuda.synchronize(env.device)
        step_time = time.perf_counter() - t0

        samples_local = sum(len(b["keys"]) for b in micro)
        g_loss, g_tok, g_tokens, g_vis, g_samples, g_wait, g_cut = env.all_reduce_sum(
            [loss_sum, float(n_tok_local), float(tokens), float(visual_total),
             float(samples_local), wait, float(truncated)]
        )
        groups = optimizer.param_groups
        names = [g["name"] for g in groups]
        return {
            "loss": g_loss / max(g_tok, 1.0),
            "lr": plan.cfg.lr * lrs[0] / groups[0]["initial_lr"],  # the stage's base lr now
            "lr_groups": {n: lr for n, lr in zip(names, lrs, strict=True) if "." not in n},
            "grad_norm": grad_norm,
            "answer_tokens": int(g_tok),
            "tokens_per_s": g_tokens / step_time,
            "samples_per_s": g_samples / step_time,
            "visual_tokens_per_sample": g_vis / max(g_samples, 1.0),
            "data_wait_share": min(1.0, g_wait / env.world_size / step_time),
            "step_time_s": step_time,
            "truncated_samples": int(g_cut),
            "_tokens": int(g_tokens),
        }

    def _bf16(self, env: DistEnv) -> bool:
        p = self.cfg.runtime.precision
        return p == "bf16" or (p == "auto" and env.device.type == "cuda")


def batch_stream(loader) -> Iterator[dict[str, Any]]:
    """The loader's batches across epochs. Starting a DataLoader iterator draws its base seed
    from the global torch RNG; doing it under ``fork_rng`` keeps the training RNG stream the
    same whether or not the run was resumed in between."""
    while True:
        it = iter(loader)
        with torch.random.fork_rng(devices=[]):
            try:
                first = next(it)
            except StopIteration:
                continue
        yield first
        yield from it
