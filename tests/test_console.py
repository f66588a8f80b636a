"""Console output: one progress bar over a run's work, warnings as one clean line, `train --resume` says so."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tqdm import tqdm

from masktrack.api.predictor import Predictor
from masktrack.app.pipeline import progress_bar, segment_sequence
from masktrack.data.masks import write_mask
from masktrack.data.sources import first_appearances, open_frame_folder
from masktrack.data.synth import generate_video
from masktrack.errors import InputError
from masktrack.train import TrainConfig, train

FRAMES, SIZE = 5, (48, 64)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """A frame folder of two objects, and its first frame's labels."""
    video = generate_video(5, num_frames=FRAMES, size=SIZE, num_objects=2)
    frames = tmp_path_factory.mktemp("clip") / "clip"
    frames.mkdir()
    for t, frame in enumerate(video.frames):
        Image.fromarray(frame).save(frames / f"{t:05d}.png")
    return frames, video.labels[0]


def test_one_bar_counts_every_finetuning_step_and_frame(weights: Path, clip: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    frames, labels = clip
    write_mask(tmp_path / "00000.png", labels)
    sequence = open_frame_folder(frames, [tmp_path / "00000.png"])
    predictor = Predictor(weights, device="cpu", finetune={"steps": 3})
    assert predictor.finetune_steps(2) == 6  # one network per object
    assert Predictor(weights, device="cpu", finetune={"steps": 3, "mode": "shared"}).finetune_steps(2) == 3
    assert Predictor(weights, device="cpu", finetune={"steps": 3}, motion={"weight": 0.3, "steps": 2}).finetune_steps(2) == 10
    updates: list[tuple[int, str]] = []
    bar = progress_bar(predictor, [(sequence, first_appearances(sequence))])
    original = bar.update
    bar.update = lambda n=1: (updates.append((n, bar.postfix)), original(n))[1]  # type: ignore[method-assign]
    with bar:
        segment_sequence(predictor, sequence, tmp_path / "run", progress=bar)
    assert bar.total == bar.n == 6 + FRAMES
    assert sum(n for n, stage in updates if "fine-tuning 2 objects" in stage) == 6
    assert [stage for n, stage in updates if "frame" in stage][-1] == f"clip: frame {FRAMES}/{FRAMES}"


def test_a_sequence_gets_its_own_bar_naming_it(weights: Path, clip: tuple[Path, np.ndarray], tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    frames, labels = clip
    write_mask(tmp_path / "00000.png", labels)
    sequence = open_frame_folder(frames, [tmp_path / "00000.png"])
    bars: list[tqdm] = []
    monkeypatch.setattr("masktrack.app.pipeline.progress_bar", lambda *args: bars.append(progress_bar(*args)) or bars[-1])
    segment_sequence(Predictor(weights, device="cpu", finetune={"steps": 1}), sequence, tmp_path / "run", progress=True)
    [bar] = bars
    assert bar.n == bar.total == 2 + FRAMES and bar.postfix.startswith("clip: ")
    segment_sequence(Predictor(weights, device="cpu", finetune={"steps": 1}), sequence, tmp_path / "quiet", progress=False)
    assert len(bars) == 1


def test_a_mask_of_the_frames_aspect_ratio_is_resized_with_one_line(clip: tuple[Path, np.ndarray], tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    frames, labels = clip
    write_mask(tmp_path / "00000.png", np.kron(labels, np.ones((2, 2), np.uint8)))  # a 2x larger mask (480p for 240p)
    with caplog.at_level(logging.WARNING, logger="masktrack"):
        resized = open_frame_folder(frames, [tmp_path / "00000.png"]).read_annotation(0)
    assert np.array_equal(resized, labels)
    [record] = caplog.records
    assert record.getMessage() == f"{tmp_path / '00000.png'}: mask is 128x96 but the frames are 64x48; resized it (nearest)"
    write_mask(tmp_path / "00000.png", labels[:, :40])  # another aspect ratio
    with pytest.raises(InputError, match="mask is 40x48 but the frames are 64x48 .another aspect ratio"):
        open_frame_folder(frames, [tmp_path / "00000.png"]).read_annotation(0)


def test_the_cli_prints_a_warning_as_one_line(weights: Path, clip: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    frames, labels = clip
    write_mask(tmp_path / "00000.png", labels[:, :-1])  # one column short
    command = [sys.executable, "-m", "masktrack", "segment", str(frames), "--mask", str(tmp_path / "00000.png"),
               "--weights", str(weights), "--out", str(tmp_path / "run"), "--finetune-steps", "0", "--no-report",
               "--device", "cpu", "--threads", "1", "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "resized it" in line]
    assert len(warnings) == 1 and "mask is 63x48 but the frames are 64x48" in warnings[0], result.stderr
    assert "UserWarning" not in result.stderr and "warn(" not in result.stderr, result.stderr


def test_train_resume_says_from_which_step(synthetic_davis: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = TrainConfig.from_dict({
        "data": [f"{synthetic_davis}:train"], "height": 48, "width": 64, "batch_size": 4, "steps": 2, "optimizer": "sgd",
        "lr": 0.01, "warmup_steps": 1, "workers": 0, "val_fraction": 0.0, "checkpoint_every": 2, "log_every": 1,
        "model": {"backbone": "mobilenet_v2", "output_stride": 16, "head_channels": 16, "low_level_skip": True},
    })
    train(config, tmp_path / "run", progress=False)
    assert "resumed" not in capsys.readouterr().out
    train(config, tmp_path / "run", resume=True, progress=False)
    assert f"train: resumed {tmp_path / 'run' / 'checkpoint.pt'} at step 2 of 2" in capsys.readouterr().out


def test_one_bar_for_several_sequences(weights: Path, synthetic_davis: Path, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from masktrack.app.pipeline import segment_sequences
    from masktrack.data.sources import open_davis

    sequences = open_davis(synthetic_davis, sequences=["synth-000", "synth-003"])
    bars: list[tqdm] = []
    monkeypatch.setattr("masktrack.app.pipeline.progress_bar", lambda *args: bars.append(progress_bar(*args)) or bars[-1])
    timings = segment_sequences(Predictor(weights, device="cpu", finetune={"steps": 0}), sequences, tmp_path / "run")
    [bar] = bars
    assert list(timings) == ["synth-000", "synth-003"] and bar.n == bar.total == 24
    assert bar.postfix == "synth-003: frame 12/12"
