"""Sharding `masktrack segment` over `torchrun` processes that write one shared run folder.

Rank 0 owns the atomic run folder: it creates ``OUT.partial`` (refusing an existing ``OUT``
unless overwriting), every rank writes its own sequences into it, the ranks then exchange
their results, and rank 0 finishes the folder and renames it. If any rank fails, all fail and
the partial folder is removed. Without ``WORLD_SIZE > 1`` everything runs in one process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from masktrack.atomic import atomic_output_dir
from masktrack.errors import InputError

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the ``torchrun`` processes (rank 0 of 1 when run alone)."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, items: list[T]) -> list[T]:
        """The items this rank handles: ``items[rank::world_size]``."""
        return items[self.rank :: self.world_size]

    def gather(self, value: Any) -> list[Any]:
        """Every rank's ``value``, in rank order (a collective call when distributed)."""
        if self.world_size == 1:
            return [value]
        values: list[Any] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values

    def run_everywhere(self, work: Callable[[], T]) -> list[T]:
        """Run ``work`` on every rank and gather the results; if any rank fails, all raise."""
        try:
            outcome: tuple[bool, Any] = (True, work())
        except Exception as error:  # noqa: BLE001 - reported to the other ranks, then re-raised
            failure = error
            outcome = (False, f"{type(error).__name__}: {error}")
        else:
            failure = None
        outcomes = self.gather(outcome)
        if failure is not None:
            raise failure
        for rank, (ok, message) in enumerate(outcomes):
            if not ok:
                raise RuntimeError(f"rank {rank} failed: {message}")
        return [value for _, value in outcomes]


def init_ranks(device: str) -> Ranks:
    """Join the ``torchrun`` process group when ``WORLD_SIZE > 1`` (gloo on CPU, NCCL on CUDA)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Ranks()
    if not dist.is_initialized():
        if device.startswith("cuda"):
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return Ranks(rank=dist.get_rank(), world_size=dist.get_world_size())


def close_ranks(ranks: Ranks) -> None:
    """Leave the process group joined by :func:`init_ranks`."""
    if ranks.world_size > 1 and dist.is_initialized():
        dist.destroy_process_group()


@contextmanager
def shared_output_dir(path: Path, overwrite: bool, ranks: Ranks) -> Iterator[Path]:
    """:func:`~masktrack.atomic.atomic_output_dir` on rank 0; the other ranks get its partial path.

    Callers synchronise the ranks (e.g. with :meth:`Ranks.run_everywhere`) before rank 0 leaves.
    """
    with ExitStack() as stack:
        failure: Exception | None = None
        if ranks.is_main:
            try:
                partial = stack.enter_context(atomic_output_dir(path, overwrite))
            except (InputError, OSError) as refused:
                failure = refused
        error = ranks.gather(str(failure or ""))[0]
        if failure is not None:
            raise failure
        if error:
            raise InputError(error)
        yield partial if ranks.is_main else path.with_name(path.name + ".partial")
