"""bf16 autocast for the forward passes of training, online fine-tuning and propagation.

On GPUs with bf16 and on CPUs with native bf16 instructions (AVX512-BF16, AMX) the network runs
faster in bf16 (docs/results.md); where bf16 is emulated it may be slower than fp32.
Weights, optimiser state and losses stay fp32.
"""

from __future__ import annotations

import torch

from masktrack.errors import InputError


def require_bf16(device: torch.device | str) -> None:
    """InputError when ``device`` is a CUDA GPU without bfloat16 support (CPUs run bf16 everywhere)."""
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise InputError(f"amp: {torch.cuda.get_device_name(device)} does not support bfloat16")


def bf16_autocast(device: torch.device | str, enabled: bool = True) -> torch.autocast:
    """A ``torch.autocast`` context in bfloat16 for ``device``'s type (a no-op when not ``enabled``)."""
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=enabled)
