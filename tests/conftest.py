"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from masktrack.data.synth import generate_dataset

SYNTHETIC_DAVIS = {"num_videos": 4, "num_frames": 12, "size": (96, 128), "seed": 0}
SYNTHETIC_PARENT = {"train_steps": 300, "batch_size": 8}  # the demo recipe


@pytest.fixture(scope="session")
def synthetic_davis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic dataset in the DAVIS 2017 layout; returns its root.

    Sequences ``synth-000`` .. ``synth-003`` (12 frames at 96x128, under ``96p``), 2-3 objects
    each; train = synth-000..002, val = synth-003. synth-001 and synth-003 have an object that
    appears mid-video; synth-002 has one that leaves the frame. Treat it as read-only.
    """
    return generate_dataset(tmp_path_factory.mktemp("synthetic_davis"), **SYNTHETIC_DAVIS)


@pytest.fixture(scope="session")
def synthetic_parent(synthetic_davis: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo's parent network recipe trained (one CPU thread) on ``synthetic_davis``'s train split.

    Returns the weights; shared by the demo tests and the synthetic accuracy test of `segment`.
    """
    import torch

    from masktrack.demo import DemoSettings, train_parent

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        settings = DemoSettings(size=SYNTHETIC_DAVIS["size"], **SYNTHETIC_PARENT)
        return train_parent(synthetic_davis, tmp_path_factory.mktemp("synthetic_parent") / "run", settings, progress=False)
    finally:
        torch.set_num_threads(threads)
