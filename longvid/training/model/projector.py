"""Connector MLP from encoder width to LLM width (Linear -> GELU -> Linear)."""

from __future__ import annotations

from torch import Tensor, nn


class Projector(nn.Module):
    """[..., in_dim] -> [..., out_dim]."""

    def __init__(self, in_dim: int, hidden: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x.to(self.fc1.weight.dtype))))
