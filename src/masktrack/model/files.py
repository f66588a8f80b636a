"""Reading ``torch.save`` files safely: tensors and plain containers, never code."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from masktrack.errors import InputError

UNSAFE_FILE = "not a safe checkpoint (expected safetensors or a weights-only torch file)"

def load_torch_file(path: str | Path) -> Any:
    """The contents of a ``torch.save`` file, read with ``weights_only=True``: tensors and plain containers, never
    code. InputError naming the file when it is missing, unreadable or a pickle of anything else."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # PyTorch's message advises weights_only=False: never do that
        raise InputError(f"{path}: {UNSAFE_FILE}") from None
    except Exception as error:  # noqa: BLE001 - truncated, not a torch file: one line either way
        raise InputError(f"{path}: cannot read ({' '.join(str(error).split())[:200]})") from None
