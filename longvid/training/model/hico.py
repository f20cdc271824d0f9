"""HiCoModel: encoder -> clip-level merge -> projector -> LLM, with the visual tokens spliced in at
the prompt's ``<video>`` placeholder.

Frames: [T, 3, H, W] float, normalised (``preprocess`` makes them from uint8 frames). T is padded
to a whole number of clips by repeating the last frame. An image is T=1 and goes through the
encoder as itself (a 1-frame input with the encoder's image position table, as VideoChat-Flash),
merged to the tokens of one clip (64 with the real model); to feed a picture as a clip instead
(the needle-in-a-haystack convention), repeat it ``clip_len`` times.

Checkpoint layout written by ``save_pretrained(dir)``:
    model.yaml          ModelConfig (encoder.checkpoint / llm.path kept for lineage only)
    llm/config.json     the LLM's transformers config (the architecture is rebuilt from it)
    model.safetensors   every weight (encoder, projector, LLM)
    tokenizer/          the tokenizer, loadable with AutoTokenizer
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from longvid.config import read_yaml, validate_config
from longvid.errors import NotFoundError
from longvid.training.model.config import EncoderConfig, LLMConfig, ModelConfig
from longvid.training.model.dropout import LayerRunner, PrefillResult, plan_dropout
from longvid.training.model.encoder import UMTEncoder, load_umt_checkpoint
from longvid.training.model.merge import merge_clips
from longvid.training.model.projector import Projector
from longvid.training.tokenizer import IGNORE_INDEX, load_tokenizer, stop_token_ids, video_token_id

CONFIG_FILE = "model.yaml"
WEIGHTS_FILE = "model.safetensors"
LLM_DIR = "llm"
TOKENIZER_DIR = "tokenizer"


@dataclass
class ModelOutput:
    """loss: mean cross-entropy over answer tokens (None without labels); logits: [B, L', V];
    n_visual_tokens: per sample; labels / attention_mask: [B, L'] after splicing (labels are
    -100 at visual positions and padding)."""

    loss: Tensor | None
    logits: Tensor
    n_visual_tokens: list[int]
    labels: Tensor | None
    attention_mask: Tensor


def build_encoder(cfg: EncoderConfig, load_weights: bool = True) -> nn.Module:
    if cfg.kind == "openclip":
        from longvid.training.model.openclip_encoder import OpenClipFrameEncoder

        if not load_weights:
            cfg = cfg.model_copy(update={"openclip_pretrained": None})
        return OpenClipFrameEncoder(cfg)
    enc = UMTEncoder(cfg)
    if cfg.checkpoint and load_weights:
        load_umt_checkpoint(enc, cfg.checkpoint)
    return enc


def qwen2_config(cfg: LLMConfig, vocab_size: int, tokenizer: Any):
    from transformers import Qwen2Config

    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_kv_heads,
        max_position_embeddings=cfg.max_position_embeddings,
        rope_theta=cfg.rope_theta,
        rope_scaling=rope_scaling_dict(cfg),
        rms_norm_eps=cfg.rms_norm_eps,
        tie_word_embeddings=cfg.tie_word_embeddings,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
        use_sliding_window=False,
    )


def rope_scaling_dict(cfg: LLMConfig) -> dict | None:
    """transformers' ``rope_scaling`` for the config (None = plain RoPE)."""
    if cfg.rope_scaling is None:
        return None
    return cfg.rope_scaling.hf_dict(cfg.max_position_embeddings)


def apply_rope_scaling(hf_config: Any, cfg: LLMConfig) -> None:
    """Put our RoPE scaling on a loaded transformers config (keeping its RoPE base)."""
    scaling = rope_scaling_dict(cfg)
    hf_config.max_position_embeddings = cfg.max_position_embeddings
    if hasattr(hf_config, "rope_parameters"):  # transformers 5 keeps theta in the same dict
        theta = (hf_config.rope_parameters or {}).get("rope_theta", cfg.rope_theta)
        hf_config.rope_parameters = {**(scaling or {"rope_type": "default"}), "rope_theta": theta}
    else:
        hf_config.rope_scaling = scaling


def build_llm(cfg: LLMConfig, tokenizer: Any, hf_config: Any = None, load_weights: bool = True):
    """A causal LM: from ``hf_config`` (checkpoint reload), a local dir, or the Qwen2 sizes."""
    from transformers import AutoModelForCausalLM

    attn = cfg.attn_implementation
    if hf_config is not None:
        llm = AutoModelForCausalLM.from_config(hf_config, attn_implementation=attn)
    elif cfg.path and load_weights:
        if not Path(cfg.path).is_dir():
            raise NotFoundError(f"{cfg.path}: LLM directory not found")
        from transformers import AutoConfig

        # a local model keeps its own sizes; the long-context settings of our config apply
        local = AutoConfig.from_pretrained(cfg.path, local_files_only=True)
        if cfg.rope_scaling is not None:
            apply_rope_scaling(local, cfg)
        llm = AutoModelForCausalLM.from_pretrained(
            cfg.path,
            config=local,
            local_files_only=True,
            attn_implementation=attn,
            dtype=torch.float32,
        )
    else:
        vocab = max(cfg.vocab_size, len(tokenizer))
        llm = AutoModelForCausalLM.from_config(
            qwen2_config(cfg, vocab, tokenizer), attn_implementation=attn
        )
    if len(tokenizer) > llm.get_input_embeddings().weight.shape[0]:
        llm.resize_token_embeddings(len(tokenizer))
    return llm


class HiCoModel(nn.Module):
    """The video LLM. ``tokenizer`` must contain ``<video>`` (see ``load_tokenizer``)."""

    def __init__(
        self, cfg: ModelConfig, tokenizer: Any, *, hf_config: Any = None, load_weights: bool = True
    ):
        super().__init__()
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.video_token_id = video_token_id(tokenizer)
        self.encoder = build_encoder(cfg.encoder, load_weights=load_weights)
        self.llm = build_llm(cfg.llm, tokenizer, hf_config, load_weights=load_weights)
        d_llm = self.llm.config.hidden_size
        self.projector = Projector(self.encoder.width, cfg.projector_hidden or d_llm, d_llm)
        self.set_gradient_checkpointing(cfg.gradient_checkpointing)

    # ----------------------------------------------------------------------------- utilities
    @property
    def device(self) -> torch.device:
        return self.projector.fc1.weight.device

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        if hasattr(self.encoder, "set_grad_checkpointing"):
            self.encoder.set_grad_checkpointing(enabled)
        else:
            self.encoder.grad_checkpointing = enabled
        # transformers 5 renamed gradient_checkpointing_* to activation_checkpointing_*
        prefix = (
            "activation_checkpointing"
            if hasattr(self.llm, "activation_checkpointing_enable")
            else "gradient_checkpointing"
        )
        if enabled:
            # the checkpoint kwargs are the first parameter under both names
            getattr(self.llm, f"{prefix}_enable")({"use_reentrant": False})
        elif getattr(self, "_llm_checkpointing", False):
            getattr(self.llm, f"{prefix}_disable")()
        self._llm_checkpointing = enabled

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Parameters by part, for per-part learning rates and freezing."""
        return {
            "encoder": list(self.encoder.parameters()),
            "projector": list(self.projector.parameters()),
            "llm": list(self.llm.parameters()),
        }

    def preprocess(self, frames: np.ndarray | Tensor) -> Tensor:
        """uint8 frames [T, H, W, 3] -> normalised float [T, 3, S, S] (S = encoder img_size,
        resized bilinearly when the frames are another size)."""
        x = torch.as_tensor(frames)
        if x.ndim != 4 or x.shape[-1] != 3:
            raise ValueError(f"expected frames [T, H, W, 3], got {tuple(x.shape)}")
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        size = self.cfg.encoder.img_size
        if x.shape[-2:] != (size, size):
            x = F.interpolate(
                x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        mean = torch.tensor(self.cfg.encoder.mean).view(1, 3, 1, 1)
        std = torch.tensor(self.cfg.encoder.std).view(1, 3, 1, 1)
        return (x - mean) / std

    # ---------------------------------------------------------------------------- vision path
    def to_clips(self, frames: Tensor) -> Tensor:
        """[T, 3, H, W] -> [ceil(T / clip_len), 3, clip_len, H, W], the last frame repeated to
        fill the last clip; an image (T = 1) -> [1, 3, 1, H, W]."""
        if frames.ndim != 4 or frames.shape[1] != 3:
            raise ValueError(f"expected frames [T, 3, H, W], got {tuple(frames.shape)}")
        if frames.shape[0] == 1:
            return frames[None].transpose(1, 2)
        n = self.cfg.encoder.clip_len
        pad = (-frames.shape[0]) % n
        if pad:
            frames = torch.cat([frames, frames[-1:].expand(pad, -1, -1, -1)])
        t, c, h, w = frames.shape
        return frames.reshape(t // n, n, c, h, w).transpose(1, 2)

    def encode_clips(self, clips: Tensor) -> Tensor:
        """[N, 3, clip_len, H, W] -> [N, tokens_per_clip, C_enc] (images [N, 3, 1, H, W] ->
        [N, tokens_per_image, C_enc]): encoder then merge, in chunks of ``clips_per_batch``
        moved to the model's device one at a time."""
        out = []
        step = self.cfg.encoder.clips_per_batch
        t = clips.shape[2]
        image = t == 1 and self.cfg.encoder.clip_len != 1
        # an image keeps the budget of a whole clip (e.g. 196 or 784 tokens -> 64)
        budget = self.cfg.visual_tokens_per_clip() if image else self.cfg.merge.tokens_per_frame
        for i in range(0, clips.shape[0], step):
            chunk = clips[i : i + step].to(self.device, non_blocking=True)
            tokens = self.encoder(chunk)  # [n, t * P, C]
            if self.cfg.merge.enabled:
                tokens = merge_clips(tokens, budget, t, self.cfg.merge.head_chunks)
            out.append(tokens)
        return torch.cat(out)

    def encode_video(self, frames: Tensor) -> Tensor:
        """[T, 3, H, W] -> [ceil(T/4) * 64, D_llm] visual embeddings (dense: T/4 * 4P)."""
        feats = self.encode_clips(self.to_clips(frames))
        return self.projector(feats.flatten(0, 1))

    def _encode_many(self, frames: list[Tensor]) -> list[Tensor]:
        """All samples' clips through the encoder together (images in a batch of their own),
        then split per sample."""
        clips = [self.to_clips(f) for f in frames]
        out: list[Tensor | None] = [None] * len(clips)
        for is_image in (False, True):
            picked = [i for i, c in enumerate(clips) if (c.shape[2] == 1) == is_image]
            if not picked:
                continue
            feats = self.encode_clips(torch.cat([clips[i] for i in picked]))
            counts = [clips[i].shape[0] for i in picked]
            for i, f in zip(picked, feats.split(counts), strict=True):
                out[i] = self.projector(f.flatten(0, 1))
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------------------ LLM input
    def splice(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        visual: list[Tensor],
        labels: Tensor | None = None,
    ) -> tuple[Tensor, Tensor, Tensor | None]:
        """Replace each sample's one ``<video>`` by its visual embeddings and re-pad on the right.

        input_ids / attention_mask / labels: [B, L] (right padding); visual[b]: [n_b, D].
        Returns embeds [B, L', D], attention_mask [B, L'], labels [B, L'] with -100 at the
        visual positions and padding."""
        emb = self.llm.get_input_embeddings()(input_ids)  # [B, L, D]
        rows, label_rows = [], []
        for b in range(input_ids.shape[0]):
            valid = attention_mask[b].bool()
            ids = input_ids[b][valid]
            where = (ids == self.video_token_id).nonzero().flatten()
            if where.numel() != 1:
                raise ValueError(
                    f"sample {b}: expected exactly one <video> token, found {where.numel()}"
                )
            p = int(where[0])
            e = emb[b][valid]
            vis = visual[b].to(e.dtype)
            rows.append(torch.cat([e[:p], vis, e[p + 1 :]]))
            if labels is not None:
                lab = labels[b][valid]
                fill = lab.new_full((vis.shape[0],), IGNORE_INDEX)
                label_rows.append(torch.cat([lab[:p], fill, lab[p + 1 :]]))
        length = max(r.shape[0] for r in rows)
        embeds = emb.new_zeros(len(rows), length, emb.shape[-1])
        mask = attention_mask.new_zeros(len(rows), length)
        new_labels = None if labels is None else labels.new_full((len(rows), length), IGNORE_INDEX)
        for b, r in enumerate(rows):
            embeds[b, : r.shape[0]] = r
            mask[b, : r.shape[0]] = 1
            if new_labels is not None:
                new_labels[b, : r.shape[0]] = label_rows[b]
        return embeds, mask, new_labels

    def forward(
        self,
        frames: list[Tensor],
        input_ids: Tensor,
        attention_mask: Tensor,
        labels: Tensor | None = None,
    ) -> ModelOutput:
        """Training/eval forward. frames[b]: [T_b, 3, H, W]; input_ids etc.: [B, L]."""
        if len(frames) != input_ids.shape[0]:
            raise ValueError(f"{len(frames)} frame tensors for a batch of {input_ids.shape[0]}")
        visual = self._encode_many(frames)
        embeds, mask, new_labels = self.splice(input_ids, attention_mask, visual, labels)
        out = self.llm(
            inputs_embeds=embeds, attention_mask=mask, labels=new_labels, use_cache=False
        )
        return ModelOutput(
            loss=out.loss,
            logits=out.logits,
            n_visual_tokens=[v.shape[0] for v in visual],
            labels=new_labels,
            attention_mask=mask,
        )

    # ------------------------------------------------------------------------------ inference
    @torch.no_grad()
    def prefill(
        self, frames: Tensor, input_ids: Tensor, dropout: bool | None = None
    ) -> PrefillResult:
        """Prefill one prompt ([L] or [1, L]) with its video; progressive visual dropout when
        ``dropout`` (default: the config's ``dropout.enabled``)."""
        ids = input_ids.reshape(1, -1).to(self.device)
        visual = self.encode_video(frames)
        embeds, _, _ = self.splice(ids, torch.ones_like(ids), [visual])
        start = int((ids[0] == self.video_token_id).nonzero()[0])
        dcfg = self.cfg.dropout
        if dropout is not None:
            dcfg = dcfg.model_copy(update={"enabled": dropout})
        steps = plan_dropout(dcfg, visual.shape[0], self.llm.config.num_hidden_layers)
        return LayerRunner(self.llm).prefill(embeds, start, visual.shape[0], steps)

    @torch.no_grad()
    def generate(
        self,
        frames: Tensor,
        input_ids: Tensor,
        max_new_tokens: int = 64,
        dropout: bool | None = None,
        stop_ids: list[int] | None = None,
    ) -> Tensor:
        """Greedy answer: new token ids [n <= max_new_tokens] (the stop token excluded)."""
        was_training = self.training
        self.eval()
        try:
            runner = LayerRunner(self.llm)
            pre = self.prefill(frames, input_ids, dropout)
            stops = set(stop_token_ids(self.tokenizer) if stop_ids is None else stop_ids)
            out: list[int] = []
            logits = pre.logits
            for _ in range(max_new_tokens):
                nxt = int(logits[0].argmax())
                if nxt in stops:
                    break
                out.append(nxt)
                token = torch.tensor([[nxt]], device=self.device)
                logits = runner.decode(token, pre.cache)
            return torch.tensor(out, dtype=torch.long)
        finally:
            self.train(was_training)

    # ---------------------------------------------------------------------------- checkpoints
    def save_pretrained(self, out_dir: str | Path) -> Path:
        """Write config, LLM config, weights (safetensors) and tokenizer to ``out_dir``."""
        from safetensors.torch import save_model

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        header = "# HiCo model config written by HiCoModel.save_pretrained\n"
        dump = yaml.safe_dump(self.cfg.model_dump(mode="json"), sort_keys=False)
        (out / CONFIG_FILE).write_text(header + dump)
        self.llm.config.save_pretrained(str(out / LLM_DIR))
        self.tokenizer.save_pretrained(str(out / TOKENIZER_DIR))
        tmp = out / (WEIGHTS_FILE + ".tmp")
        save_model(self, str(tmp))
        os.replace(tmp, out / WEIGHTS_FILE)  # weights appear whole or not at all
        return out

    @classmethod
    def from_pretrained(
        cls,
        ckpt_dir: str | Path,
        device: str | torch.device = "cpu",
        dtype: torch.dtype | None = None,
    ) -> HiCoModel:
        """Rebuild a model saved by ``save_pretrained`` (no network, no original weights)."""
        from safetensors.torch import load_model
        from transformers import AutoConfig

        d = Path(ckpt_dir)
        for name in (CONFIG_FILE, WEIGHTS_FILE, LLM_DIR, TOKENIZER_DIR):
            if not (d / name).exists():
                raise NotFoundError(f"{d}: not a HiCo checkpoint ({name} missing)")
        cfg = validate_config(read_yaml(d / CONFIG_FILE), ModelConfig, str(d / CONFIG_FILE))
        tokenizer = load_tokenizer(d / TOKENIZER_DIR)
        hf_config = AutoConfig.from_pretrained(str(d / LLM_DIR), local_files_only=True)
        model = cls(cfg, tokenizer, hf_config=hf_config, load_weights=False)
        load_model(model, str(d / WEIGHTS_FILE), strict=True)
        if dtype is None:
            model.to(device)
        else:
            model.to(device=device, dtype=dtype)
        model.eval()
        return model
