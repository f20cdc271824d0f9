"""UMT-style video ViT: one clip of ``clip_len`` frames per batch element.

Patch 16, tubelet 1 (a Conv3d with kernel (1, 16, 16) embeds each frame's patches), no CLS
token, joint space-time attention over all the clip's tokens, fixed 1-D sin-cos position table
over (frame, row, column) interpolated from the pretraining grid (14 x 14 at 224 px) to the input
grid (28 x 28 at 448 px). Features are the output of block ``select_layer`` (the second-to-last
by default; later blocks are not built) followed by a LayerNorm, as in VideoChat-Flash.

``load_umt_checkpoint`` reads the released UMT weights. Key names were taken from the public
VideoChat-Flash code (``llava/model/multimodal_encoder/umt/vit.py`` and its ``build_vit``, which
loads ``UMT-L_f4_vision.pt``). Mapping, released name -> ours:

    encoder.patch_embed.proj.{weight,bias}         -> patch_embed.proj.{weight,bias}
    encoder.blocks.{i}.norm1.{weight,bias}          -> blocks.{i}.norm1.{weight,bias}
    encoder.blocks.{i}.attn.qkv.weight              -> blocks.{i}.attn.qkv.weight  (no bias)
    encoder.blocks.{i}.attn.q_bias / .v_bias        -> blocks.{i}.attn.q_bias / .v_bias
    encoder.blocks.{i}.attn.proj.{weight,bias}      -> blocks.{i}.attn.proj.{weight,bias}
    encoder.blocks.{i}.norm2.{weight,bias}          -> blocks.{i}.norm2.{weight,bias}
    encoder.blocks.{i}.mlp.fc1/fc2.{weight,bias}    -> blocks.{i}.mlp.fc1/fc2.{weight,bias}
    encoder.norm.{weight,bias}                      -> norm.{weight,bias}
      (VideoChat-Flash renames it encoder.vision_layernorm; both spellings are accepted)

Blocks past ``select_layer`` (block 23 of UMT-L), the fixed ``pos_embed`` tables and anything
outside ``encoder.`` (distillation heads) are ignored. The prefixes ``module.`` and
``[model.]vision_tower.vision_tower.`` (a full VideoChat-Flash checkpoint) are stripped first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from longvid.errors import FormatError, NotFoundError
from longvid.training.model.config import EncoderConfig


def sincos_table(n_pos: int, dim: int) -> Tensor:
    """[n_pos, dim] 1-D sinusoid table: angle = pos / 10000^(2*(j//2)/dim); sin on even j, cos on
    odd j (the layout of the UMT code)."""
    pos = torch.arange(n_pos, dtype=torch.float64)[:, None]
    j = torch.arange(dim)
    angle = pos / torch.pow(10000.0, (2 * (j // 2)).double() / dim)
    return torch.where(j % 2 == 0, angle.sin(), angle.cos()).float()


def umt_pos_embed(
    clip_len: int, grid: int, dim: int, pretrain_clip_len: int = 4, pretrain_grid: int = 14
) -> Tensor:
    """[clip_len * grid * grid, dim]: the pretraining table (pretrain_clip_len frames of a
    pretrain_grid^2 grid), resized bicubically per frame, then linearly along time."""
    t0, g0 = pretrain_clip_len, pretrain_grid
    table = sincos_table(t0 * g0 * g0, dim).reshape(t0, g0, g0, dim)
    if grid != g0:
        table = F.interpolate(
            table.permute(0, 3, 1, 2), size=(grid, grid), mode="bicubic", align_corners=False
        ).permute(0, 2, 3, 1)  # [t0, grid, grid, dim]
    if clip_len != t0:
        flat = table.permute(1, 2, 3, 0).reshape(grid * grid, dim, t0)
        flat = F.interpolate(flat, size=clip_len, mode="linear")  # [grid^2, dim, clip_len]
        table = flat.reshape(grid, grid, dim, clip_len).permute(3, 0, 1, 2)
    return table.reshape(clip_len * grid * grid, dim).contiguous()


class PatchEmbed(nn.Module):
    def __init__(self, patch: int, width: int):
        super().__init__()
        self.proj = nn.Conv3d(3, width, kernel_size=(1, patch, patch), stride=(1, patch, patch))

    def forward(self, x: Tensor) -> Tensor:
        """[B, 3, T, H, W] -> [B, T*(H/p)*(W/p), C] in (frame, row, column) order."""
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention; q and v carry a bias, k none (the UMT layout)."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=False)
        self.q_bias = nn.Parameter(torch.zeros(width))
        self.v_bias = nn.Parameter(torch.zeros(width))
        self.proj = nn.Linear(width, width)

    def forward(self, x: Tensor) -> Tensor:
        b, n, c = x.shape
        bias = torch.cat([self.q_bias, torch.zeros_like(self.v_bias), self.v_bias])
        qkv = F.linear(x, self.qkv.weight, bias).reshape(b, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)  # each [B, heads, N, d]
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=1e-6)
        self.attn = Attention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=1e-6)
        self.mlp = Mlp(width, int(width * mlp_ratio))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class UMTEncoder(nn.Module):
    """Clips [B, 3, clip_len, H, W] -> tokens [B, clip_len * (H/16) * (W/16), width]."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.width = cfg.width
        self.num_heads = cfg.heads
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.width)
        self.blocks = nn.ModuleList(
            Block(cfg.width, cfg.heads, cfg.mlp_ratio) for _ in range(cfg.blocks_used)
        )
        self.norm = nn.LayerNorm(cfg.width, eps=1e-12)
        pos = umt_pos_embed(
            cfg.clip_len,
            cfg.grid,
            cfg.width,
            cfg.pretrain_clip_len,
            cfg.pretrain_img_size // cfg.patch_size,
        )
        self.register_buffer("pos_embed", pos, persistent=False)  # fixed, rebuilt from config
        # an image goes through as T = 1 with its own table: the pretraining grid of one frame
        # (positions 0..195 of the 1-D table at 224 px), resized to the input grid
        img_pos = umt_pos_embed(1, cfg.grid, cfg.width, 1, cfg.pretrain_img_size // cfg.patch_size)
        self.register_buffer("img_pos_embed", img_pos, persistent=False)
        self.grad_checkpointing = False
        self.apply(_init_weights)

    def forward(self, clips: Tensor) -> Tensor:
        """Clips [B, 3, clip_len, H, W], or images [B, 3, 1, H, W] (the image position table)."""
        _, _, t, h, w = clips.shape
        if t not in (1, self.cfg.clip_len) or (h, w) != (self.cfg.img_size, self.cfg.img_size):
            raise ValueError(
                f"UMT encoder expects clips of {self.cfg.clip_len} frames (or images) at "
                f"{self.cfg.img_size}x{self.cfg.img_size}, got {t} frames at {h}x{w}"
            )
        x = self.patch_embed(clips.to(self.patch_embed.proj.weight.dtype))
        table = self.img_pos_embed if t == 1 and self.cfg.clip_len != 1 else self.pos_embed
        x = x + table.to(x.dtype)
        for blk in self.blocks:
            if self.grad_checkpointing and self.training:
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return self.norm(x)


def _init_weights(m: nn.Module) -> None:
    # the UMT initialisation: xavier-uniform linears with zero bias, unit LayerNorms
    if isinstance(m, nn.Linear):
        nn.init.xavier_uniform_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


# ---------------------------------------------------------------- released checkpoint loading

_STRIP_PREFIXES = ("module.", "model.vision_tower.vision_tower.", "vision_tower.vision_tower.")
_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


@dataclass
class LoadReport:
    """What ``load_umt_checkpoint`` did: tensors loaded, released names it ignored (and why)."""

    loaded: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)


def map_umt_key(name: str, blocks_used: int) -> tuple[str | None, str]:
    """Released name -> (our name or None, reason when None)."""
    for prefix in _STRIP_PREFIXES:
        if name.startswith(prefix):
            name = name[len(prefix) :]
    if not name.startswith("encoder."):
        return None, "outside the encoder"
    name = name[len("encoder.") :]
    for final in ("norm.", "vision_layernorm."):
        if name.startswith(final):
            return "norm." + name[len(final) :], ""
    if name.startswith(("pos_embed", "img_pos_embed")):
        return None, "fixed sin-cos table (rebuilt from config)"
    m = _BLOCK.match(name)
    if m:
        if int(m.group(1)) >= blocks_used:
            return None, f"block past select_layer (only {blocks_used} blocks are used)"
        return name, ""
    if name.startswith("patch_embed."):
        return name, ""
    return None, "not part of the UMT vision encoder"


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors come in many types
        raise FormatError(f"{path}: not a readable torch checkpoint ({exc})") from None
    for wrapper in ("model", "module", "state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise FormatError(f"{path}: expected a dict of tensors (a state dict)")
    return obj


def load_umt_checkpoint(model: UMTEncoder, path: str | Path) -> LoadReport:
    """Load released UMT weights (e.g. ``UMT-L_f4_vision.pt``) into ``model``.

    Every parameter of ``model`` must be found with the right shape, else FormatError naming the
    file and key; extra released tensors are reported in ``LoadReport.ignored``."""
    p = Path(path)
    if not p.is_file():
        raise NotFoundError(f"{p}: UMT checkpoint not found")
    released = _read_state_dict(p)
    ours = model.state_dict()
    report = LoadReport()
    mapped: dict[str, Tensor] = {}
    for name, tensor in released.items():
        target, why = map_umt_key(name, len(model.blocks))
        if target is None:
            report.ignored[name] = why
            continue
        if target not in ours:
            raise FormatError(f"{p}: {name} maps to {target}, which this encoder does not have")
        if tuple(tensor.shape) != tuple(ours[target].shape):
            raise FormatError(
                f"{p}: {name} has shape {tuple(tensor.shape)}, the encoder expects "
                f"{tuple(ours[target].shape)} (check encoder width/depth/patch_size)"
            )
        mapped[target] = tensor
        report.loaded.append(name)
    missing = sorted(set(ours) - set(mapped))
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FormatError(f"{p}: {len(missing)} encoder tensors missing from checkpoint: {shown}")
    model.load_state_dict(mapped, strict=True)
    return report


def released_state_dict(model: UMTEncoder, depth: int | None = None) -> dict[str, Tensor]:
    """Our weights under the released names (``encoder.`` prefix, ``encoder.norm``). With
    ``depth`` larger than the blocks built, extra random blocks are added, as the released file
    holds all blocks; used to write release-format checkpoints in tests and conversions."""
    out = {f"encoder.{k}": v.clone() for k, v in model.state_dict().items()}
    width = model.width
    for i in range(len(model.blocks), depth or 0):
        extra = Block(width, model.num_heads, model.cfg.mlp_ratio).state_dict()
        out.update({f"encoder.blocks.{i}.{k}": v for k, v in extra.items()})
    return out
