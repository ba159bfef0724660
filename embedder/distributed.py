"""The processes that share one Gibbs chain: ``torch.distributed`` under torchrun, else just this one.

Each process draws the rows of its own share of users and of movies and gathers the others', so it holds
the whole (small) factor matrices but only its own rows' ratings; the few global sums (μ, α, the stopping
rule) are all-reduced. See docs/design.md, "Training on several processes".
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


class Group:
    """The processes of one chain and the few collective operations it needs (outside torchrun: this
    process alone, every operation the identity)."""

    def __init__(self) -> None:
        active = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if active else 0
        self.size = dist.get_world_size() if active else 1

    def shard(self, n: int) -> tuple[int, int]:
        """This process's rows ``[first, end)`` of ``n``: contiguous, equal but for the last."""
        per = -(-n // self.size)
        first = min(n, self.rank * per)
        return first, min(n, first + per)

    def sum(self, *values: float, device: torch.device | str = "cpu") -> list[float]:
        """Each value summed over the processes."""
        if self.size == 1:
            return [float(v) for v in values]
        total = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        return total.tolist()

    def gather(self, rows: torch.Tensor, n: int) -> torch.Tensor:
        """The ``n`` rows of a matrix whose shards (see :meth:`shard`) the processes hold."""
        if self.size == 1:
            return rows
        per = -(-n // self.size)
        padded = rows.new_zeros((per, *rows.shape[1:]))
        padded[: len(rows)] = rows
        parts = [torch.empty_like(padded) for _ in range(self.size)]
        dist.all_gather(parts, padded)
        return torch.cat(parts)[:n]

    def barrier(self) -> None:
        """Wait for every process (nothing to wait for alone)."""
        if self.size > 1:
            dist.barrier()


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that torchrun (or another launcher) started."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def join(device: torch.device) -> Group:
    """Join the process group that torchrun described in the environment: gloo on the CPU, nccl on CUDA
    (each process on the GPU of its local rank). The command line's choice; library code only reads it."""
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Group()


def leave() -> None:
    """Leave the process group joined by :func:`join`, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
