"""The HiCo video LLM: UMT/open_clip encoder, clip-level token merge, projector, Qwen2 LLM,
progressive visual dropout at inference."""

from longvid.training.model.config import (
    DropoutConfig,
    EncoderConfig,
    LLMConfig,
    MergeConfig,
    ModelConfig,
    RopeScalingConfig,
)
from longvid.training.model.hico import HiCoModel, ModelOutput

__all__ = [
    "DropoutConfig",
    "EncoderConfig",
    "HiCoModel",
    "LLMConfig",
    "MergeConfig",
    "ModelConfig",
    "ModelOutput",
    "RopeScalingConfig",
]
