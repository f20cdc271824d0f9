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
from longvid.training.data import LoaderError, StatefulLoader, make_loader, normalize_frames
from longvid.training.data.catalog import Catalog, load_catalog
from longvid.training.data.images import ImageFolder, load_image_folders
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

    The run is state on the trainer, built once by :meth:`_setup`: ``env``, ``catalog``,
    ``tokenizer``, ``model``, ``plans``, ``state`` (a :class:`TrainState`), ``metrics`` and
    ``checkpointer``. Entering a stage builds its parts (:meth:`_enter_stage`): ``plan``,
    ``train_model`` (DDP-wrapped when distributed), ``optimizer``, ``scheduler``, ``loader`` and
    ``params``. Steps and saves read them; they take only what varies (the batch stream).
    """

    # the run, built once by _setup
    env: DistEnv
    catalog: Catalog
    images: dict[str, ImageFolder]  # the image folders of the stages' image components
    tokenizer: Any
    model: torch.nn.Module  # longvid.training.model.hico.HiCoModel
    model_cfg: ModelConfig  # the model's config before any stage changed its resolution
    tok_hash: str
    plans: list[StagePlan]
    total_steps: int
    stop_at: int | None  # global step --stop-after ends at
    state: TrainState
    resume_from: ckpt.LoadedCheckpoint | None  # until the stage it belongs to is entered
    metrics: MetricsLog
    checkpointer: ckpt.CheckpointWriter
    last_checkpoint: str | None  # the newest checkpoint written or resumed from
    # the current stage, built by _enter_stage
    plan: StagePlan
    train_model: torch.nn.Module  # the model, DDP-wrapped when distributed
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    loader: StatefulLoader
    params: list[torch.nn.Parameter]  # the trained parameters (gradient clipping)

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

    # ------------------------------------------------------------------------------ the run
    def run(self) -> TrainResult:
        self.env = init_distributed(self.cfg.distributed, self.cfg.runtime)
        try:
            self._setup()
            return self._train()
        finally:
            shutdown(self.env)

    def _setup(self) -> None:
        """Build the run. The order is part of exact resume: the seed is set before the model
        is built, and the checkpoint's RNG state is restored last."""
        from longvid.training.model.hico import HiCoModel

        env = self.env
        configure_runtime(self.cfg.runtime, env)
        if self.cfg.s3 is not None:
            storage.configure(self.cfg.s3)
        if self.cfg.data.pin_memory is None:
            data = self.cfg.data.model_copy(update={"pin_memory": env.device.type == "cuda"})
            self.cfg = self.cfg.model_copy(update={"data": data})
        cfg = self.cfg
        if env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        env.barrier()
        ref = self._find_checkpoint()
        self.catalog = load_catalog(cfg.data.corpus, cfg.data.catalog_cache)
        self.images = load_image_folders(cfg.image_roots())

        # model and tokenizer: identical on every rank (same seed; DDP also broadcasts rank 0's)
        torch.manual_seed(cfg.seed)
        if cfg.init is not None:
            self.model = HiCoModel.from_pretrained(resolve_path(cfg.init, self.config_dir))
            self.tokenizer = self.model.tokenizer
        else:
            self.tokenizer = self._tokenizer()
            self.model = HiCoModel(self._model_config(), self.tokenizer)
        self.model_cfg = self.model.cfg  # before any stage changes the resolution
        self.tok_hash = tokenizer_hash(self.tokenizer)
        self.model.set_gradient_checkpointing(cfg.runtime.llm_checkpointing)
        if hasattr(self.model.encoder, "set_grad_checkpointing"):
            self.model.encoder.set_grad_checkpointing(cfg.runtime.encoder_checkpointing)
        else:
            self.model.encoder.grad_checkpointing = cfg.runtime.encoder_checkpointing
        self.plans = plan_stages(cfg, self.model_cfg, self.catalog, env.world_size, self.images)
        self.total_steps = sum(p.steps for p in self.plans)
        self.stop_at = parse_stop_after(self.stop_after_arg, self.total_steps)

        # the checkpoint resumes the model now, and its stage's optimizer/loader on entering it
        self.resume_from = ckpt.load_checkpoint(ref, env.rank) if ref is not None else None
        if self.resume_from is not None:
            self.state = self._check_resume(self.resume_from.state)
            self.model.load_state_dict(self.resume_from.model, strict=True)
        else:
            self.state = TrainState()
        self.model.to(env.device).train()

        if env.is_main:
            self._print_plan()
        self.metrics = MetricsLog(
            self.out,
            env.is_main,
            resume_step=self.state.global_step if self.resume_from is not None else None,
            tensorboard=cfg.metrics.tensorboard,
            log_every=cfg.metrics.log_every,
            total_steps=self.total_steps,
        )
        self.checkpointer = ckpt.CheckpointWriter(
            self.ckpt_dir, env.rank, env.world_size, cfg.checkpoint.keep_last, env.barrier
        )
        self.last_checkpoint = ref.uri if ref is not None else None
        if self.resume_from is not None:
            ckpt.set_rng_state(self.resume_from.rank["rng"])  # last thing before the loop

    def _train(self) -> TrainResult:
        env, state, plans = self.env, self.state, self.plans
        try:
            for plan in plans[state.stage_index :]:
                if self._stop_reached():
                    break
                self._run_stage(plan)
        finally:
            self.metrics.close()

        finished = state.stage_index == len(plans) - 1 and state.step_in_stage == plans[-1].steps
        if finished and self.cfg.checkpoint.export_model and env.is_main:
            self.model.save_pretrained(self.out / MODEL_DIR)
        env.barrier()
        summary = stage_summary(read_metrics(self.out / "metrics.jsonl")) if env.is_main else []
        if env.is_main:
            if finished:
                print(f"[train] finished {self.total_steps} steps; loss per stage:")
            else:
                print(
                    f"[train] stopped after step {state.global_step} of {self.total_steps} "
                    f"(checkpoint {self.last_checkpoint}); continue with --resume auto; "
                    "loss so far:"
                )
            print(format_summary(summary), flush=True)
        return TrainResult(
            self.out, state.global_step, self.total_steps, finished, self.last_checkpoint, summary
        )

    def _stop_reached(self) -> bool:
        return self.stop_at is not None and self.state.global_step >= self.stop_at

    # -------------------------------------------------------------------------- setup parts
    def _model_config(self) -> ModelConfig:
        m = self.cfg.model
        if isinstance(m, ModelConfig):
            return m
        path = resolve_path(m, self.config_dir)
        return validate_config(read_yaml(path), ModelConfig, str(path))

    def _tokenizer(self):
        if self.cfg.data.tokenizer is not None:
            return load_tokenizer(resolve_path(self.cfg.data.tokenizer, self.config_dir))
        tok_dir = self.out / TOKENIZER_DIR
        if self.env.is_main and not (tok_dir / "tokenizer.json").exists():
            # deterministic input: captions in catalog (key) order, then the stage questions
            texts = [c or "" for c in self.catalog.captions]
            for folder in self.images.values():  # image captions, in folder and line order
                texts += [c for c in folder.captions.to_pylist() if c is not None]
            texts += [s.data.question for s in self.cfg.stages]
            build_tokenizer(texts, tok_dir, vocab_size=self.cfg.data.tokenizer_vocab)
        self.env.barrier()
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

    def _check_resume(self, saved: dict[str, Any]) -> TrainState:
        """Refuse a checkpoint whose started stages, model, seed or tokenizer differ."""
        problems = []
        if saved.get("seed") != self.cfg.seed:
            problems.append(f"seed: {saved.get('seed')!r} → {self.cfg.seed!r}")
        problems += [f"model.{d}" for d in config_diff(saved["model_config"],
                                                        self.model_cfg.model_dump(mode="json"))]
        if saved.get("tokenizer") != self.tok_hash:
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
        world = self.env.world_size
        if saved.get("world_size") != world:
            log.warning(
                "resuming a %s-process checkpoint with %s processes: same data order, but the "
                "gradient sums are grouped differently (not bitwise equal)",
                saved.get("world_size"),
                world,
            )
        return state

    def _print_plan(self) -> None:
        env, loaded = self.env, self.resume_from
        start = (
            f"resuming from {loaded.ref.uri} (step {loaded.ref.step})"
            if loaded is not None
            else "starting a new run"
        )
        print(f"[train] {start}; {env.world_size} process(es) on {env.device}", flush=True)
        for p in self.plans:
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
    def _run_stage(self, plan: StagePlan) -> None:
        state = self.state
        if state.stage_index != plan.index:  # entering the next stage
            state.stage_index, state.step_in_stage = plan.index, 0
        # the checkpoint belongs to the first stage this run enters (its stage_index)
        resume, self.resume_from = self.resume_from, None
        if state.step_in_stage >= plan.steps:  # resumed from this stage's final checkpoint
            return
        self._enter_stage(plan, resume)
        stream = batch_stream(self.loader)
        last_saved = state.global_step if resume is not None else None
        try:
            while state.step_in_stage < plan.steps and not self._stop_reached():
                row = self._step(stream)
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
                    epoch=self.loader.epoch,
                )
                self.metrics.log(row)
                if self._checkpoint_due() and last_saved != state.global_step:
                    self.last_checkpoint = self._save()
                    last_saved = state.global_step
        finally:
            stream.close()  # stops the DataLoader workers

    def _enter_stage(self, plan: StagePlan, resume: ckpt.LoadedCheckpoint | None) -> None:
        """This stage's trainable parts, optimizer, schedule and loader (resumed from
        ``resume`` when the run restarts inside this stage)."""
        env = self.env
        self.plan = plan
        trained = apply_stage(self.model, plan)
        if env.distributed:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[env.device.index] if env.device.type == "cuda" else None
            )
        else:
            self.train_model = self.model
        self.optimizer, self.scheduler = make_optimizer(trained, plan)
        self.loader = make_loader(
            plan.data,
            env.rank,
            env.world_size,
            self.tokenizer,
            catalog=self.catalog,
            images=self.images,
        )
        if resume is not None:
            self.optimizer.load_state_dict(resume.optimizer["optimizer"])
            self.scheduler.load_state_dict(resume.optimizer["scheduler"])
            self.loader.load_state_dict(resume.rank["loader"])
        self.params = [p for ps in trained.values() for p in ps]

    def _checkpoint_due(self) -> bool:
        every = self.cfg.checkpoint.every_steps
        state = self.state
        return bool(
            (every and state.global_step % every == 0)
            or (self.cfg.checkpoint.at_stage_end and state.step_in_stage == self.plan.steps)
            or (self.stop_at is not None and state.global_step == self.stop_at)
        )

    def _save(self) -> str:
        return self.checkpointer.save(
            self.state.global_step,
            self._state_json(),
            {"rng": ckpt.rng_state(), "loader": self.loader.state_dict()},
            model_state=lambda: {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            optimizer_state=lambda: {
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
            },
        )

    def _state_json(self) -> dict[str, Any]:
        state = self.state
        return {
            "train_state": asdict(state),
            "stage": self.plans[state.stage_index].cfg.name,
            "seed": self.cfg.seed,
            "world_size": self.env.world_size,
            "model_config": self.model_cfg.model_dump(mode="json"),
            "tokenizer": self.tok_hash,
            "stages": [s.fingerprint_fields() for s in self.cfg.stages[: state.stage_index + 1]],
            "stage_steps": [p.steps for p in self.plans],
        }

    # ------------------------------------------------------------------------------ a step
    def _step(self, stream: Iterator[dict[str, Any]]) -> dict[str, Any]:
        """One optimizer step of the current stage: ``accum`` micro-batches from ``stream``.
        Returns the step's metrics row (global over ranks)."""
        env, model, plan = self.env, self.model, self.plan
        t0 = time.perf_counter()
        micro = [next(stream) for _ in range(plan.accum)]
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
            if self._bf16()
            else contextlib.nullcontext()
        )
        loss_sum = 0.0
        tokens = visual_total = truncated = 0
        for i, (batch, ids, mask, labels, cut, n) in enumerate(prepared):
            sync = not env.distributed or i == len(prepared) - 1
            ctx = contextlib.nullcontext() if sync else self.train_model.no_sync()
            with ctx:
                frames = self._frames(batch)
                with autocast:
                    out = self.train_model(frames, ids.to(env.device), mask.to(env.device),
                                           labels.to(env.device))
                # HF's loss is the mean over this micro-batch's answer tokens; times n = the sum
                part = out.loss.float() * n if n else out.logits.sum() * 0.0
                (part * scale).backward()
            loss_sum += float(part.detach())
            tokens += int(out.attention_mask.sum())
            visual_total += sum(out.n_visual_tokens)
            truncated += cut

        grad_clip = plan.cfg.grad_clip or math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, grad_clip))
        lrs = self.scheduler.get_last_lr()
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if env.device.type == "cuda":
            torch.cuda.synchronize(env.device)
        step_time = time.perf_counter() - t0

        samples_local = sum(len(b["keys"]) for b in micro)
        images_local = sum(int(b["is_image"].sum()) for b in micro)
        g_loss, g_tok, g_tokens, g_vis, g_samples, g_wait, g_cut, g_img = env.all_reduce_sum(
            [loss_sum, float(n_tok_local), float(tokens), float(visual_total),
             float(samples_local), wait, float(truncated), float(images_local)]
        )
        groups = self.optimizer.param_groups
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
            "image_samples": int(g_img),  # samples of the step that were still images
            "_tokens": int(g_tokens),
        }

    def _frames(self, batch: dict[str, Any]) -> list[torch.Tensor]:
        """The batch's clips on the device, each ``[T, 3, S, S]``, normalised for the encoder."""
        frames = [f.to(self.env.device, non_blocking=True) for f in batch["frames"]]
        if frames and frames[0].dtype == torch.uint8:
            enc = self.model.cfg.encoder
            frames = [normalize_frames(f, enc.mean, enc.std) for f in frames]
        return frames

    def _bf16(self) -> bool:
        p = self.cfg.runtime.precision
        return p == "bf16" or (p == "auto" and self.env.device.type == "cuda")


def batch_stream(loader) -> Iterator[dict[str, Any]]:
    """The loader's batches across epochs. Starting a DataLoader iterator draws its base seed
    from the global torch RNG; doing it under ``fork_rng`` keeps the training RNG stream the
    same whether or not the run was resumed in between."""
    empty = 0
    while True:
        it = iter(loader)
        with torch.random.fork_rng(devices=[]):
            try:
                first = next(it)
            except StopIteration:
                # An epoch with no batch would make this loop spin forever: stop instead.
                empty += 1
                if empty > 1:
                    raise LoaderError(
                        f"the loader yielded no batch in {empty} epochs in a row: nothing to train on"
                    ) from None
                continue
        empty = 0
        yield first
        yield from it
