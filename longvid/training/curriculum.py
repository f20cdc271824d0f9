"""The short-to-long curriculum: stage configs → what each stage trains, how fast, on what.

* :func:`plan_stages` fixes every stage's loader config, accumulation and length in steps
  before training starts (so the schedule, ``--stop-after half`` and progress lines know the
  totals).
* :func:`apply_stage` sets the encoder resolution, freezes the parts the stage does not train,
  and :func:`make_optimizer` builds AdamW with one parameter group per trained part (its own
  learning rate; decay only on matrices) and the cosine schedule with linear warm-up.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from longvid.errors import ConfigError
from longvid.training.config import PARTS, StageConfig, TrainConfig
from longvid.training.data.catalog import Catalog
from longvid.training.data.config import StageData
from longvid.training.data.images import ImageFolder, StageImages
from longvid.training.data.plan import component_pools
from longvid.training.model.config import ModelConfig

MIN_TEXT_TOKENS = 32  # room a stage's max_seq_len must leave for text after the visual tokens


@dataclass(frozen=True)
class StagePlan:
    """One stage, resolved against the corpus and the world size."""

    index: int
    cfg: StageConfig
    data: StageData  # the loader's config (micro_batch samples per rank per batch)
    resolution: int
    accum: int  # micro-batches per rank per optimizer step
    steps: int  # optimizer steps of the stage
    epoch_samples: int  # samples drawn per epoch


def warmup_steps(stage: StageConfig, steps: int) -> int:
    """Warm-up length as the Hugging Face trainer computes it: ceil(ratio · steps)."""
    return math.ceil(stage.warmup_ratio * steps)


def cosine_with_warmup(steps: int, warmup: int, min_ratio: float) -> Callable[[int], float]:
    """LR factor of optimizer step ``k`` (0-based): ``k / warmup`` while warming up, then a
    half cosine from 1 down to ``min_ratio`` at the end of the stage (the HF/LLaVA schedule)."""

    def factor(k: int) -> float:
        if k < warmup:
            return k / max(1, warmup)
        progress = (k - warmup) / max(1, steps - warmup)
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))

    return factor


def _loader_config(
    cfg: TrainConfig, stage: StageConfig, resolution: int, model_cfg: ModelConfig
) -> StageData:
    d, sd = cfg.data, stage.data
    return StageData(
        stage=stage.name,
        corpora=list(d.corpus),
        mixture=sd.mixture,
        num_samples=sd.num_samples,
        seed=cfg.seed,
        batch_size=stage.micro_batch,
        tail=sd.tail,
        t_min=sd.t_min,
        t_max=sd.t_max,
        resolution=resolution,
        mean=model_cfg.encoder.mean,
        std=model_cfg.encoder.std,
        frames_dtype=d.frames_dtype,
        question=sd.question,
        frame_times_prompt=sd.frame_times_prompt,
        template=sd.template,
        max_text_len=stage.max_seq_len,
        max_substitutes=sd.max_substitutes,
        num_workers=d.num_workers,
        prefetch_factor=d.prefetch_factor,
        pin_memory=bool(d.pin_memory),
        decode_backend=d.decode_backend,
        decode_device=d.decode_device,
        decode_threads=d.decode_threads,
        s3=cfg.s3,
    )


def plan_stages(
    cfg: TrainConfig,
    model_cfg: ModelConfig,
    catalog: Catalog,
    world_size: int,
    images: Mapping[str, ImageFolder] | None = None,
) -> list[StagePlan]:
    """Every stage's plan; ConfigError naming the stage when one cannot run as configured.
    ``images``: the image folders the stages' image components name (read here when absent)."""
    plans = []
    for i, stage in enumerate(cfg.stages):
        per_step = stage.micro_batch * world_size
        if stage.global_batch % per_step:
            raise ConfigError(
                f"stage {stage.name}: global_batch {stage.global_batch} is not a multiple of "
                f"micro_batch {stage.micro_batch} x world size {world_size}"
            )
        resolution = stage.resolution or model_cfg.encoder.img_size
        visual = model_cfg.visual_tokens(stage.data.t_max)
        if visual + MIN_TEXT_TOKENS > stage.max_seq_len:
            raise ConfigError(
                f"stage {stage.name}: {stage.data.t_max} frames give {visual} visual tokens, "
                f"which leaves less than {MIN_TEXT_TOKENS} of max_seq_len {stage.max_seq_len} "
                "for text; lower data.t_max or raise max_seq_len"
            )
        data = _loader_config(cfg, stage, resolution, model_cfg)
        pools = component_pools(catalog, data, StageImages(data, images or {}, len(catalog)))
        eligible = int(sum(len(p) for p in pools))
        if stage.data.fraction is not None:
            data = data.model_copy(
                update={"num_samples": max(1, round(stage.data.fraction * eligible))}
            )
        epoch_samples = data.num_samples or eligible
        if stage.steps is not None:
            steps = stage.steps
        elif stage.samples is not None:
            steps = -(-stage.samples // stage.global_batch)
        else:
            steps = epoch_samples // stage.global_batch  # one epoch, the tail dropped
        if steps < 1:
            raise ConfigError(
                f"stage {stage.name}: one epoch of {epoch_samples} samples does not fill one "
                f"global batch of {stage.global_batch}; set steps, samples or a smaller batch"
            )
        plans.append(
            StagePlan(
                index=i,
                cfg=stage,
                data=data,
                resolution=resolution,
                accum=stage.global_batch // per_step,
                steps=steps,
                epoch_samples=epoch_samples,
            )
        )
    return plans


def set_resolution(model: Any, size: int) -> None:
    """Run the model's encoder at ``size`` pixels: the UMT sin-cos table (a fixed buffer) is
    rebuilt for the new grid, as VideoChat-Flash does for its 448 px stage."""
    from longvid.training.model.encoder import UMTEncoder, umt_pos_embed

    enc_cfg = model.cfg.encoder
    if enc_cfg.img_size == size:
        return
    if not isinstance(model.encoder, UMTEncoder):
        raise ConfigError(
            f"resolution {size}: only the umt encoder can change its input size "
            f"(this one runs at {enc_cfg.img_size})"
        )
    if size % enc_cfg.patch_size:
        raise ConfigError(f"resolution {size} is not a multiple of patch {enc_cfg.patch_size}")
    new = enc_cfg.model_copy(update={"img_size": size})
    model.cfg = model.cfg.model_copy(update={"encoder": new})
    model.encoder.cfg = new
    pos = umt_pos_embed(
        new.clip_len,
        new.grid,
        new.width,
        new.pretrain_clip_len,
        new.pretrain_img_size // new.patch_size,
    )
    buf = model.encoder.pos_embed
    model.encoder.pos_embed = pos.to(device=buf.device, dtype=buf.dtype)


def apply_stage(model: Any, plan: StagePlan) -> dict[str, list[nn.Parameter]]:
    """Resolution and freezing for ``plan``; returns the trained parameters by part."""
    set_resolution(model, plan.resolution)
    groups = model.parameter_groups()
    trained = {}
    for part in PARTS:
        on = part in plan.cfg.trainable
        for p in groups[part]:
            p.requires_grad_(on)
        if on:
            trained[part] = groups[part]
    return trained


def make_optimizer(
    trained: dict[str, list[nn.Parameter]], plan: StagePlan, fused: bool | None = None
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW with groups ``<part>`` (matrices, decayed) and ``<part>.no_decay`` (biases, norms),
    each at its part's peak lr; the LambdaLR scales all by the cosine-with-warm-up factor."""
    stage = plan.cfg
    groups: list[dict[str, Any]] = []
    for part, params in trained.items():
        decay = [p for p in params if p.ndim >= 2]
        rest = [p for p in params if p.ndim < 2]
        lr = stage.lr_of(part)
        if decay:
            groups.append(
                {"name": part, "params": decay, "lr": lr, "weight_decay": stage.weight_decay}
            )
        if rest:
            groups.append({"name": f"{part}.no_decay", "params": rest, "lr": lr, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=stage.lr, betas=stage.betas, eps=stage.eps, fused=fused)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        cosine_with_warmup(plan.steps, warmup_steps(stage, plan.steps), stage.min_lr_ratio),
    )
    return opt, sched
