"""Config of the HiCo video LLM: encoder, clip-level merge, projector, LLM, visual dropout.

Defaults describe the real model (UMT-L encoder, Qwen2-7B-shaped LLM, the published dropout
setting); ``conf/model/tiny.yaml`` is the CPU-sized preset used by tests and the demo.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from longvid.config import Section


class EncoderConfig(Section):
    """The video encoder. ``umt``: a UMT-style ViT over clips of ``clip_len`` frames (joint
    space-time attention inside a clip). ``openclip``: an open_clip ViT image tower applied to each
    frame; its tokens are then grouped into clips for the merge."""

    kind: Literal["umt", "openclip"] = Field("umt", description="umt (video ViT) or openclip")
    img_size: int = Field(224, ge=16, description="square input size in pixels (224 or 448)")
    patch_size: int = Field(16, ge=1, description="patch side in pixels")
    clip_len: int = Field(4, ge=1, description="frames per clip (encoded and merged together)")
    depth: int = Field(24, ge=1, description="transformer blocks of the architecture")
    width: int = Field(1024, ge=8, description="token width")
    heads: int = Field(16, ge=1, description="attention heads")
    mlp_ratio: float = Field(4.0, gt=0, description="MLP hidden width / token width")
    select_layer: int = Field(
        -2,
        description="block whose output is used (-2 = second-to-last); later blocks are not built",
    )
    pretrain_img_size: int = Field(
        224,
        ge=16,
        description="input size the sin-cos table was trained at; interpolated to img_size",
    )
    pretrain_clip_len: int = Field(
        4,
        ge=1,
        description="clip length the sin-cos table was trained at; interpolated to clip_len",
    )
    checkpoint: str | None = Field(
        None,
        description="local path of released UMT weights (e.g. UMT-L_f4_vision.pt); None = random",
    )
    openclip_model: str = Field(
        "custom",
        description="open_clip model name (e.g. ViT-B-16), or 'custom' = a ViT built from "
        "img_size/patch_size/width/depth/heads/mlp_ratio",
    )
    openclip_pretrained: str | None = Field(
        None, description="local path of open_clip weights for openclip_model; None = random"
    )
    mean: tuple[float, float, float] = Field(
        (0.485, 0.456, 0.406), description="per-channel mean for input normalisation (RGB, 0..1)"
    )
    std: tuple[float, float, float] = Field(
        (0.229, 0.224, 0.225), description="per-channel std for input normalisation"
    )
    clips_per_batch: int = Field(
        16, ge=1, description="clips sent through the encoder at once (bounds activation memory)"
    )

    @model_validator(mode="after")
    def _check(self) -> EncoderConfig:
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size {self.img_size} is not a multiple of patch {self.patch_size}"
            )
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if not -self.depth <= self.select_layer < self.depth:
            raise ValueError(f"select_layer {self.select_layer} outside a {self.depth}-block model")
        return self

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.img_size // self.patch_size

    @property
    def tokens_per_frame(self) -> int:
        return self.grid * self.grid

    @property
    def blocks_used(self) -> int:
        """Blocks actually run: up to and including ``select_layer``."""
        return (
            self.select_layer + 1 if self.select_layer >= 0 else self.depth + self.select_layer + 1
        )


class MergeConfig(Section):
    """Clip-level token merge (ToMe bipartite soft matching, size-weighted)."""

    enabled: bool = Field(True, description="merge tokens; false = dense baseline (all tokens)")
    tokens_per_frame: int = Field(16, ge=1, description="token budget per frame after the merge")
    head_chunks: int = Field(
        16, ge=1, description="the merge metric averages the features over this many chunks"
    )


class RopeScalingConfig(Section):
    """Stretch RoPE past the context the LLM was trained at (passed to the Qwen2 config).

    ``yarn``: YaRN interpolation (the released VideoChat-Flash NIAH run uses factor 4 over an
    original 32768 window to reach about 10k frames); ``linear``: position interpolation."""

    type: Literal["yarn", "linear"] = Field("yarn", description="yarn or linear")
    factor: float = Field(4.0, ge=1.0, description="context multiple; 1.0 changes nothing")
    original_max_position_embeddings: int | None = Field(
        None,
        ge=16,
        description="window the LLM was trained at (yarn); None = llm.max_position_embeddings",
    )

    def hf_dict(self, max_position_embeddings: int) -> dict[str, float | int | str]:
        """The ``rope_scaling`` dict transformers reads."""
        out: dict[str, float | int | str] = {"rope_type": self.type, "factor": self.factor}
        if self.type == "yarn":
            out["original_max_position_embeddings"] = (
                self.original_max_position_embeddings or max_position_embeddings
            )
        return out


class LLMConfig(Section):
    """The language model: a local Hugging Face directory, or a Qwen2 built from these sizes."""

    path: str | None = Field(
        None,
        description="local HF model dir; when set the sizes are ignored (rope_scaling, with "
        "max_position_embeddings, still applies)",
    )
    vocab_size: int = Field(152064, ge=8, description="embedding rows (grown to the tokenizer)")
    hidden_size: int = Field(3584, ge=8, description="model width")
    num_layers: int = Field(28, ge=1, description="decoder layers")
    num_heads: int = Field(28, ge=1, description="query heads")
    num_kv_heads: int = Field(4, ge=1, description="key/value heads (grouped-query attention)")
    intermediate_size: int = Field(18944, ge=8, description="MLP hidden width")
    max_position_embeddings: int = Field(
        32768, ge=16, description="longest position (with rope_scaling: the stretched length)"
    )
    rope_theta: float = Field(1_000_000.0, gt=0, description="RoPE base")
    rope_scaling: RopeScalingConfig | None = Field(
        None, description="YaRN / linear RoPE scaling for contexts past the trained window"
    )
    rms_norm_eps: float = Field(1e-6, gt=0, description="RMSNorm epsilon")
    tie_word_embeddings: bool = Field(False, description="share input and output embeddings")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2"] = Field(
        "sdpa", description="attention kernel used by transformers"
    )

    @model_validator(mode="after")
    def _check(self) -> LLMConfig:
        if self.hidden_size % self.num_heads or self.num_heads % self.num_kv_heads:
            raise ValueError("hidden_size must divide by num_heads, num_heads by num_kv_heads")
        return self


class DropoutConfig(Section):
    """Progressive visual dropout in the LLM prefill (inference only).

    After ``uniform_layer`` layers, keep ``uniform_keep`` of the visual tokens at
    ``linspace(0, n - 1, keep)`` (both ends kept); after ``text_layer`` layers keep ``text_keep``
    (of the original count) with the highest attention from the last prompt token, scored with
    the next layer's input norm and q/k on the current hidden states (as VideoChat-Flash). Kept
    tokens stay in temporal order and positions are renumbered."""

    enabled: bool = Field(False, description="apply at inference (never in training)")
    uniform_layer: int = Field(4, ge=1, description="layers run before the uniform drop")
    uniform_keep: float = Field(0.75, gt=0, le=1, description="fraction kept by the uniform drop")
    text_layer: int = Field(18, ge=1, description="layers run before the text-guided drop")
    text_keep: float = Field(
        0.25, gt=0, le=1, description="fraction of the original visual tokens kept by it"
    )

    @model_validator(mode="after")
    def _check(self) -> DropoutConfig:
        if self.text_layer <= self.uniform_layer:
            raise ValueError("text_layer must come after uniform_layer")
        if self.text_keep > self.uniform_keep:
            raise ValueError("text_keep cannot exceed uniform_keep (it keeps a subset)")
        return self


class ModelConfig(Section):
    """The whole HiCo model."""

    encoder: EncoderConfig = Field(default_factory=EncoderConfig, description="video encoder")
    merge: MergeConfig = Field(default_factory=MergeConfig, description="clip-level merge")
    projector_hidden: int | None = Field(
        None, description="hidden width of the projector MLP; None = the LLM width"
    )
    llm: LLMConfig = Field(default_factory=LLMConfig, description="language model")
    dropout: DropoutConfig = Field(
        default_factory=DropoutConfig, description="progressive visual dropout at inference"
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute encoder blocks and LLM layers in backward to save memory"
    )

    def visual_tokens_per_clip(self) -> int:
        """Tokens one clip (or one image) gives to the LLM."""
        dense = self.encoder.tokens_per_frame * self.encoder.clip_len
        if not self.merge.enabled:
            return dense
        return min(dense, self.merge.tokens_per_frame * self.encoder.clip_len)

    def visual_tokens_per_image(self) -> int:
        """Tokens a still image (T = 1, encoded as itself) gives to the LLM: merged to the
        budget of one clip, or all its patches in the dense baseline."""
        return min(self.encoder.tokens_per_frame, self.visual_tokens_per_clip())

    def visual_tokens(self, n_frames: int) -> int:
        """Tokens a video of ``n_frames`` gives to the LLM (frames padded to whole clips; one
        frame is an image)."""
        if n_frames <= 1:
            return self.visual_tokens_per_image()
        clips = -(-n_frames // self.encoder.clip_len)
        return clips * self.visual_tokens_per_clip()
