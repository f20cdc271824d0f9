"""One process or many under ``torchrun``: rank, device, process group, determinism switches.

``torchrun`` sets RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_WORLD_SIZE and the rendezvous; a plain
``longvid train`` is rank 0 of 1 and starts no process group. Backend ``auto`` picks NCCL when
the ranks train on GPUs and gloo on CPU.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from longvid.errors import ConfigError
from longvid.training.config import DistributedConfig, RuntimeConfig


@dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            if self.device.type == "cuda":
                dist.barrier(device_ids=[self.device.index])
            else:
                dist.barrier()

    def all_reduce_sum(self, values: list[float]) -> list[float]:
        """Sums over ranks of a few numbers (float64, one collective)."""
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        if self.distributed:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t.tolist()


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from None


def init_distributed(dcfg: DistributedConfig, rcfg: RuntimeConfig) -> DistEnv:
    """Read the torchrun environment, pick the device, start the process group when needed."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local_rank = _env_int("LOCAL_RANK", 0)
    local_world = _env_int("LOCAL_WORLD_SIZE", world)
    if rcfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("runtime.device is cuda but no CUDA device is available")
    use_cuda = rcfg.device == "cuda" or (rcfg.device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) here"
            )
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        backend = dcfg.backend
        if backend == "auto":
            backend = "nccl" if use_cuda else "gloo"
        if backend == "nccl" and not use_cuda:
            raise ConfigError("distributed.backend nccl needs GPUs; use gloo on CPU")
        dist.init_process_group(
            backend=backend,
            timeout=datetime.timedelta(seconds=dcfg.timeout_s),
            device_id=device if use_cuda else None,
        )
    return DistEnv(rank, world, local_rank, local_world, device)


def configure_runtime(rcfg: RuntimeConfig, env: DistEnv) -> None:
    """Threads and determinism. Bitwise-exact resume on CPU needs the same thread count in
    both runs: it is fixed here (``threads``, else the cores shared by the local ranks)."""
    threads = rcfg.threads or max(1, (os.cpu_count() or 1) // env.local_world_size)
    torch.set_num_threads(threads)
    if rcfg.deterministic:
        if env.device.type == "cuda":
            # cuBLAS needs a fixed workspace for deterministic GEMMs; some CUDA kernels have no
            # deterministic version, so those only warn there (CPU is strict).
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.backends.cudnn.benchmark = False
            torch.use_deterministic_algorithms(True, warn_only=True)
        else:
            torch.use_deterministic_algorithms(True)


def shutdown(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()
