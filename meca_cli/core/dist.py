"""Distributed runs under torchrun, read from the environment (RANK, WORLD_SIZE, LOCAL_RANK).

Without torchrun every function here is a no-op: rank 0 of a world of 1.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as tdist


def launcher() -> list[str]:
    """The command that starts torchrun from this Python environment."""
    import sys
    from pathlib import Path

    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun)] if torchrun.exists() else [sys.executable, "-m", "torch.distributed.run"]


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_primary() -> bool:
    return rank() == 0


def init(device: torch.device) -> None:
    """Join the process group once, NCCL on GPU and gloo on CPU, and leave it at exit."""
    if world_size() > 1 and not tdist.is_initialized():
        tdist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        import atexit

        atexit.register(_leave)


def _leave() -> None:
    # A group left to interpreter shutdown can abort the process (gloo's worker threads
    # outlive Python: "terminate called without an active exception", exit code -6).
    # No barrier first: it would hang at exit if another rank has died.
    if tdist.is_initialized():
        tdist.destroy_process_group()


def wrap_ddp(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    if world_size() == 1:
        return model
    init(device)
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def barrier() -> None:
    if world_size() > 1 and tdist.is_initialized():
        tdist.barrier()


def shard_range(n: int, part: int, parts: int) -> tuple[int, int]:
    """Contiguous [start, stop) of shard `part` of `parts` over n items: disjoint and complete."""
    return n * part // parts, n * (part + 1) // parts


def gather_scores(scores, n: int):
    """Join every rank's contiguous shard of per-sample scores into the full set, in index order."""
    if world_size() == 1:
        return scores
    if not tdist.is_initialized():
        raise RuntimeError("gather_scores under torchrun needs the process group: call dist.init first")
    parts: list = [None] * world_size()
    tdist.all_gather_object(parts, scores)
    joined = type(scores)(*(torch.cat([getattr(p, f) for p in parts]) for f in ("kl", "pred", "loss", "conf")))
    assert len(joined.kl) == n, "shards must cover every sample exactly once"
    return joined
