"""MaskTrackNet checkpoints: safetensors files whose header carries the model config.

The header metadata holds ``masktrack_config`` (``ModelConfig.to_dict()`` as JSON) and
``masktrack_metadata`` (the caller's JSON-serialisable dict), so a checkpoint rebuilds its
own network and never needs pickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from masktrack.atomic import atomic_file
from masktrack.errors import InputError
from masktrack.model.files import UNSAFE_FILE, load_torch_file
from masktrack.model.network import MaskTrackNet, ModelConfig

CONFIG_KEY = "masktrack_config"
METADATA_KEY = "masktrack_metadata"
PICKLE_MAGIC = (b"PK\x03\x04", b"\x80")  # a torch.save zip file, a pickle


def save_checkpoint(path: str | Path, model: MaskTrackNet, metadata: dict[str, Any] | None = None) -> None:
    """Write ``model``'s weights, config and ``metadata`` (JSON-serialisable) to ``path`` atomically."""
    if model.inference_only:
        raise ValueError("cannot save a model prepared for inference (batch norms folded); save the original")
    header = {CONFIG_KEY: json.dumps(model.config.to_dict()), METADATA_KEY: json.dumps(metadata or {})}
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    with atomic_file(path) as temporary:
        save_file(tensors, temporary, metadata=header)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> tuple[MaskTrackNet, dict[str, Any]]:
    """Rebuild the model saved at ``path`` (in eval mode, on ``map_location``) and its metadata.

    Raises InputError for a missing or unreadable file, or one that is not a masktrack checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: checkpoint not found")
    try:
        with safe_open(path, framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            state = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as error:  # safetensors raises its own error types for truncated or foreign files
        if _starts_with(path, PICKLE_MAGIC):
            raise InputError(f"{path}: not a safe checkpoint (expected a masktrack .safetensors file)") from None
        raise InputError(f"{path}: not a safetensors checkpoint ({error})") from None
    broken = [name for name, tensor in state.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if broken:
        raise InputError(f"{path}: {len(broken)} weight tensor(s) hold NaN or infinite values (e.g. {broken[0]}); "
                         "the checkpoint is broken")
    if CONFIG_KEY not in header:
        raise InputError(f"{path}: no masktrack model config in the file (not a masktrack checkpoint)")
    try:
        values = json.loads(header[CONFIG_KEY])
        metadata = json.loads(header.get(METADATA_KEY, "{}"))
        if not isinstance(values, dict) or not isinstance(metadata, dict):
            raise ValueError("config and metadata must be JSON objects")
        config = ModelConfig.from_dict(values, source=f"{path}: model config")
    except (ValueError, TypeError) as error:
        raise InputError(f"{path}: bad masktrack model config ({error})") from error
    model = MaskTrackNet(config)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        summary = " ".join(str(error).split())[:300]
        raise InputError(f"{path}: weights do not match the stored model config ({summary})") from error
    return model.to(map_location).eval(), metadata


def checkpoint_weights(path: str | Path, config: ModelConfig) -> dict[str, torch.Tensor]:
    """The weights of the checkpoint at ``path``, which must hold a network built with ``config``.

    Raises InputError (naming the file and the settings that differ) for any other network.
    """
    model, _ = load_checkpoint(path)
    stored, wanted = model.config.to_dict(), config.to_dict()
    differences = [f"{key} {stored[key]} (not {wanted[key]})" for key in wanted if stored[key] != wanted[key]]
    if differences:
        raise InputError(f"{path}: the checkpoint's network has {', '.join(differences)}; set model: to match it")
    return model.state_dict()


def _starts_with(path: Path, prefixes: tuple[bytes, ...]) -> bool:
    with path.open("rb") as handle:
        return handle.read(4).startswith(prefixes)




def check_weights_file(path: str | Path) -> None:
    """InputError naming ``path`` unless it is a weights file that loads without running code: safetensors, or a
    ``torch.save`` file whose pickle names only what ``weights_only`` allows (learned without reading tensors)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        return
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - not a zip torch file (a legacy one, or no torch file): loading tells
        load_torch_file(path)
        return
    if unsafe:
        raise InputError(f"{path}: {UNSAFE_FILE}")
