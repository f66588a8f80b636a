"""The device to run on and the CPU threads to use."""

from __future__ import annotations

import os

import torch

from masktrack.errors import InputError


def choose_device(name: str | None) -> str:
    """``name``, or CUDA when available else CPU; an unavailable CUDA device is an input error."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"--device {name}: CUDA is not available on this machine")
    if name != "cpu" and not name.startswith("cuda"):
        raise InputError(f"--device {name}: expected cpu, cuda or cuda:N")
    return name


def set_threads(threads: int | None, world_size: int, device: str) -> None:
    """CPU threads: ``threads`` if given, else this machine's cores shared by the ``world_size`` processes."""
    if device != "cpu":
        return
    if threads is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        threads = max(1, cores // world_size)
    if threads < 1:
        raise InputError(f"--threads must be >= 1, got {threads}")
    torch.set_num_threads(threads)


def device_name(device: str) -> str:
    """A human-readable device description for timings."""
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    threads = torch.get_num_threads()
    return f"cpu ({threads} thread{'s' * (threads != 1)})"
