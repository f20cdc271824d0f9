"""The alternative encoder: an open_clip ViT image tower applied to every frame.

Each frame is encoded on its own (no temporal attention); its patch tokens (CLS dropped) from
block ``select_layer`` after the tower's final LayerNorm are grouped into clips of ``clip_len``
frames, so the same clip-level merge applies: [B, 3, clip_len, H, W] -> [B, clip_len * P, width].

``openclip_model: custom`` builds a ``VisionTransformer`` from the encoder sizes (tests, no
download); any other name goes through ``open_clip.create_model`` with ``openclip_pretrained`` as a
local weights path (None = random init, nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from longvid.errors import NotFoundError
from longvid.training.model.config import EncoderConfig


def build_openclip_tower(cfg: EncoderConfig) -> nn.Module:
    import open_clip
    from open_clip.transformer import VisionTransformer

    if cfg.openclip_model == "custom":
        return VisionTransformer(
            image_size=cfg.img_size,
            patch_size=cfg.patch_size,
            width=cfg.width,
            layers=cfg.depth,
            heads=cfg.heads,
            mlp_ratio=cfg.mlp_ratio,
            output_dim=cfg.width,
        )
    pretrained = cfg.openclip_pretrained
    if pretrained is not None and not Path(pretrained).is_file():
        raise NotFoundError(f"{pretrained}: open_clip weights not found")
    model = open_clip.create_model(cfg.openclip_model, pretrained=pretrained)
    return model.visual


class OpenClipFrameEncoder(nn.Module):
    """Clips [B, 3, T, H, W] -> tokens [B, T * P, width], each frame encoded independently."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.tower = build_openclip_tower(cfg)
        self.width = self.tower.transformer.width
        self.num_heads = cfg.heads
        depth = len(self.tower.transformer.resblocks)
        layer = cfg.select_layer
        self.take_index = layer if layer >= 0 else depth + layer

    def forward(self, clips: Tensor) -> Tensor:
        b, c, t, h, w = clips.shape
        frames = clips.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
        dtype = self.tower.conv1.weight.dtype
        out = self.tower.forward_intermediates(
            frames.to(dtype),
            indices=[self.take_index],
            stop_early=True,
            normalize_intermediates=True,  # the tower's ln_post, like UMT's final LayerNorm
            intermediates_only=True,
            output_fmt="NLC",
        )
        tokens = out["image_intermediates"][0]  # [B*T, P, width], CLS already removed
        return tokens.reshape(b, t * tokens.shape[1], tokens.shape[2])

    def set_grad_checkpointing(self, enabled: bool) -> None:
        self.tower.set_grad_checkpointing(enabled)
