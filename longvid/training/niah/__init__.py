"""Needle-in-a-haystack evaluation of a HiCo model (``longvid eval niah``): needle images
inserted at given depths of a long haystack video, four-option questions, a grid of frame counts
x depths, scored by teacher-forced answer matching and by option likelihood."""

from longvid.training.niah.config import NiahConfig
from longvid.training.niah.run import run_niah

__all__ = ["NiahConfig", "run_niah"]
