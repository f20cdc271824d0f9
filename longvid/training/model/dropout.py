"""Progressive visual dropout in the LLM prefill, and the layer-by-layer runner it needs.

The runner drives the decoder layers of a transformers causal LM (Qwen2 layout: ``model.layers``,
``model.rotary_emb``, ``model.norm``, ``lm_head``) itself, so it can shrink the sequence between
layers, as VideoChat-Flash does. After ``uniform_layer`` layers it keeps visual tokens at
``linspace(0, n - 1, keep)`` (both ends included); after ``text_layer`` layers it scores the visual
tokens with the *next* layer's input norm and q/k projections applied to the current hidden states
(the attention the last prompt token would pay them in that layer, softmax over the whole
sequence, averaged over heads) and keeps the highest. Kept tokens stay in temporal order and positions are renumbered 0..L'-1, so
every layer's key/value cache holds a compact sequence; in decoding, a new token's position in
a layer is simply that layer's cache length (shallow layers see the long sequence, deep layers the
short one). Used at inference only; training calls the LLM's own forward.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from longvid.training.model.config import DropoutConfig


@dataclass(frozen=True)
class DropStep:
    """Before decoder layer ``layer`` (0-based, i.e. after ``layer`` layers), keep ``keep`` visual
    tokens, chosen ``uniform``-ly or by ``text`` attention."""

    layer: int
    keep: int
    kind: Literal["uniform", "text"]


def plan_dropout(cfg: DropoutConfig, n_visual: int, num_layers: int) -> list[DropStep]:
    """The drop steps for ``n_visual`` tokens in a ``num_layers``-layer LLM ([] when disabled)."""
    if not cfg.enabled or n_visual == 0:
        return []
    if cfg.text_layer >= num_layers:
        raise ValueError(f"dropout text_layer {cfg.text_layer} needs more than {num_layers} layers")
    # floor with a 1e-6 guard, as the released code counts kept tokens
    uniform = max(1, int(n_visual * cfg.uniform_keep + 1e-6))
    text = max(1, int(n_visual * cfg.text_keep + 1e-6))
    return [
        DropStep(cfg.uniform_layer, uniform, "uniform"),
        DropStep(cfg.text_layer, text, "text"),
    ]


def uniform_keep_indices(n: int, keep: int, device: torch.device | None = None) -> Tensor:
    """[keep] indices spread evenly over range(n), first and last included:
    ``linspace(0, n - 1, keep)`` truncated to integers, as the released code."""
    return torch.linspace(0, n - 1, keep, dtype=torch.long, device=device)


def text_keep_indices(scores: Tensor, keep: int) -> Tensor:
    """[keep] indices of the highest ``scores`` ([n]), returned in ascending (temporal) order."""
    top = torch.topk(scores.float(), keep, sorted=False).indices
    return top.sort().values


def _rotate_half(x: Tensor) -> Tensor:
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class SegmentedKVCache:
    """Key/value store with one entry per layer; layers after a drop hold shorter sequences.

    Implements the one method transformers' attention calls (``update``)."""

    def __init__(self, num_layers: int):
        self.keys: list[Tensor | None] = [None] * num_layers
        self.values: list[Tensor | None] = [None] * num_layers

    def update(self, key: Tensor, value: Tensor, layer_idx: int, *args, **kwargs):
        """Append [B, kv_heads, q, d] to layer ``layer_idx``; return the whole [B, kv, L, d]."""
        if self.keys[layer_idx] is not None:
            key = torch.cat([self.keys[layer_idx], key], dim=-2)
            value = torch.cat([self.values[layer_idx], value], dim=-2)
        self.keys[layer_idx], self.values[layer_idx] = key, value
        return key, value

    def length(self, layer_idx: int) -> int:
        k = self.keys[layer_idx]
        return 0 if k is None else k.shape[-2]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.length(layer_idx)


@dataclass
class PrefillResult:
    """logits: [B, vocab] at the last prompt position; ``visual_per_layer[i]``: visual tokens
    layer i saw; ``kept``: indices (into the original visual tokens) left after the last drop."""

    logits: Tensor
    cache: SegmentedKVCache
    visual_per_layer: list[int]
    kept: Tensor
    seq_per_layer: list[int] = field(default_factory=list)


class LayerRunner:
    """Prefill and decode a transformers causal LM layer by layer."""

    def __init__(self, llm: nn.Module):
        self.llm = llm
        self.base = llm.model
        self.layers = list(self.base.layers)
        params = inspect.signature(self.layers[0].forward).parameters
        # transformers renamed the cache argument (past_key_values -> cache)
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.eager = getattr(llm.config, "_attn_implementation", "sdpa") == "eager"

    def _rope(self, h: Tensor, positions: Tensor) -> tuple[Tensor, Tensor]:
        return self.base.rotary_emb(h, positions[None])  # each [1, q, head_dim]

    def _mask(self, h: Tensor) -> Tensor | None:
        # sdpa/flash run causal on their own when no mask is given; eager needs one
        if not self.eager or h.shape[1] == 1:
            return None
        n = h.shape[1]
        mask = torch.full((n, n), torch.finfo(h.dtype).min, device=h.device, dtype=h.dtype)
        return mask.triu(1)[None, None]

    def _layer(self, i: int, h: Tensor, positions: Tensor, rope, mask, cache) -> Tensor:
        out = self.layers[i](
            h,
            attention_mask=mask,
            position_ids=positions[None],
            position_embeddings=rope,
            use_cache=True,
            **{self.cache_kw: cache},
        )
        return out[0] if isinstance(out, tuple) else out

    def text_scores(self, i: int, h: Tensor, rope: tuple[Tensor, Tensor]) -> Tensor:
        """[B, L] attention the last position would pay every position in layer ``i``, computed
        from the hidden states ``h`` [B, L, D] entering that layer: its input norm, q/k
        projections and RoPE, softmax over the whole sequence, mean over heads."""
        layer = self.layers[i]
        attn = layer.self_attn
        x = layer.input_layernorm(h)
        b, n, _ = x.shape
        d = attn.head_dim
        q = attn.q_proj(x[:, -1:]).view(b, 1, -1, d).transpose(1, 2)  # [B, H, 1, d]
        k = attn.k_proj(x).view(b, n, -1, d).transpose(1, 2)  # [B, kv, L, d]
        cos, sin = rope  # each [1, L, d]
        q = q * cos[:, None, -1:] + _rotate_half(q) * sin[:, None, -1:]
        k = k * cos[:, None] + _rotate_half(k) * sin[:, None]
        k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)  # [B, H, L, d]
        w = (q.float() @ k.float().transpose(-1, -2)) * (d**-0.5)  # [B, H, 1, L]
        return w.softmax(dim=-1).mean(dim=1)[:, 0]

    @torch.no_grad()
    def prefill(
        self, embeds: Tensor, visual_start: int, n_visual: int, steps: list[DropStep]
    ) -> PrefillResult:
        """Run the prompt ``embeds`` [1, L, D] whose visual tokens are
        ``[visual_start, visual_start + n_visual)``, dropping per ``steps``."""
        if embeds.shape[0] != 1:
            raise ValueError("layer-by-layer prefill takes one sequence at a time")
        h = embeds
        device = h.device
        cache = SegmentedKVCache(len(self.layers))
        kept = torch.arange(n_visual, device=device)
        by_layer = {s.layer: s for s in steps}
        positions = torch.arange(h.shape[1], device=device)
        rope, mask = self._rope(h, positions), self._mask(h)
        visual_per_layer: list[int] = []
        seq_per_layer: list[int] = []
        for i in range(len(self.layers)):
            step = by_layer.get(i)
            if step is not None and step.keep < kept.numel():
                n = kept.numel()
                if step.kind == "uniform":
                    sel = uniform_keep_indices(n, step.keep, device)
                else:
                    scores = self.text_scores(i, h, rope)  # [1, L]
                    sel = text_keep_indices(scores[0, visual_start : visual_start + n], step.keep)
                vis = h[:, visual_start : visual_start + n]
                h = torch.cat([h[:, :visual_start], vis[:, sel], h[:, visual_start + n :]], dim=1)
                kept = kept[sel]
                positions = torch.arange(h.shape[1], device=device)  # renumbered
                rope, mask = self._rope(h, positions), self._mask(h)
            h = self._layer(i, h, positions, rope, mask, cache)
            visual_per_layer.append(kept.numel())
            seq_per_layer.append(h.shape[1])
        logits = self.llm.lm_head(self.base.norm(h[:, -1:]))[:, -1]
        return PrefillResult(logits, cache, visual_per_layer, kept, seq_per_layer)

    @torch.no_grad()
    def decode(self, token_ids: Tensor, cache: SegmentedKVCache) -> Tensor:
        """One step: token_ids [1, 1] -> logits [1, vocab]; each layer places the token right
        after its own (possibly shortened) cache."""
        h = self.base.embed_tokens(token_ids)
        ropes: dict[int, tuple[Tensor, Tensor]] = {}
        for i in range(len(self.layers)):
            pos = cache.length(i)
            if pos not in ropes:
                ropes[pos] = self._rope(h, torch.tensor([pos], device=h.device))
            positions = torch.tensor([pos], device=h.device)
            h = self._layer(i, h, positions, ropes[pos], None, cache)
        return self.llm.lm_head(self.base.norm(h))[:, -1]
