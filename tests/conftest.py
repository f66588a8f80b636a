"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from masktrack.data.synth import generate_dataset
from masktrack.model import ModelConfig, build_model, save_checkpoint

SYNTHETIC_DAVIS = {"num_videos": 4, "num_frames": 12, "size": (96, 128), "seed": 0}


@pytest.fixture(scope="package")  # built once for the whole test folder
def synthetic_davis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset in the DAVIS 2017 layout; returns its root.

    Sequences ``synth-000`` .. ``synth-003`` (12 frames at 96x128, under ``96p``), 2-3 objects
    each; train = synth-000..002, val = synth-003. synth-001 and synth-003 have an object that
    appears mid-video; synth-002 has one that leaves the frame. Treat it as read-only.
    """
    return generate_dataset(tmp_path_factory.mktemp("synthetic_davis"), **SYNTHETIC_DAVIS)



@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random MaskTrackNet checkpoint, for tests of plumbing rather than accuracy."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "tiny.safetensors"
    save_checkpoint(path, build_model(ModelConfig(output_stride=16, head_channels=16)))
    return path


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One CPU thread: small models run faster so on a busy 2-core machine (``pytestmark`` of a module uses it)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
