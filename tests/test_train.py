"""Offline training: config, sampling, learning, DDP equivalence, resume, divergence, CLI."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from masktrack.augment.transforms import AugmentConfig
from masktrack.cli import build_parser, main
from masktrack.cli.train import train_settings
from masktrack.data.masks import write_mask
from masktrack.errors import InputError
from masktrack.model import load_checkpoint
from masktrack.train import STATE_FILE, TrainConfig, TrainingDiverged, train
from masktrack.train import loop
from masktrack.train.dataset import EpochSampler, MaskTrackSamples, index_samples, open_source

DAVIS2016 = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016"
TINY_MODEL = {"backbone": "mobilenet_v2", "output_stride": 16, "head_channels": 16, "low_level_skip": True}


@pytest.fixture(autouse=True)
def one_thread():
    """One torch thread: fast on a shared 2-core machine, and the same in every run of a test."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_config(data: list[str], **changes) -> TrainConfig:
    """A few-second training run at 48x64 without validation (unless ``changes`` ask for it)."""
    values = {"data": data, "model": TINY_MODEL, "height": 48, "width": 64, "batch_size": 4, "steps": 6,
              "optimizer": "sgd", "lr": 0.01, "warmup_steps": 2, "workers": 0, "val_fraction": 0.0,
              "checkpoint_every": 2, "log_every": 1}
    return TrainConfig.from_dict({**values, **changes})


def shapes_folder(root: Path, count: int = 40, size: int = 64, seed: int = 0) -> Path:
    """An ``images/`` + ``masks/`` folder: two bright ellipses (objects 1, 2) on dark noise per image."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    ys, xs = np.mgrid[:size, :size]
    for index in range(count):
        image = rng.uniform(0, 0.35, (size, size, 3))
        labels = np.zeros((size, size), np.uint8)
        for object_id in (1, 2):
            (cy, cx), (ry, rx) = rng.uniform(0.25, 0.75, 2) * size, rng.uniform(0.15, 0.3, 2) * size
            inside = ((ys - cy) / ry) ** 2 + ((xs - cx) / rx) ** 2 <= 1
            image[inside] = rng.uniform(0.6, 1.0, 3) * rng.uniform(0.85, 1.0, (inside.sum(), 1))
            labels[inside] = object_id
        Image.fromarray((image * 255).astype(np.uint8)).save(root / "images" / f"{index:03d}.jpg")
        write_mask(root / "masks" / f"{index:03d}.png", labels)
    return root


def metric_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_config_yaml_roundtrip_and_flag_precedence(tmp_path: Path) -> None:
    config = tiny_config(["a", "b:val"], val_sequences=["bear"])
    assert TrainConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict()))) == config

    base, variant = tmp_path / "base.yaml", tmp_path / "variant.yaml"
    base.write_text(yaml.safe_dump({"lr": 0.5, "steps": 100, "batch_size": 4,
                                    "model": {"backbone": "resnet18", "output_stride": 16}, "deform": {"tps_prob": 0.5}}))
    variant.write_text(yaml.safe_dump({"batch_size": 2, "deform": {"affine_prob": 0.0}}))
    args = build_parser().parse_args(["train", "--out", "run", "--config", str(base), "--config", str(variant),
                                      "--data", "d", "--epochs", "3", "--size", "240", "--backbone", "resnet34"])
    merged = train_settings(args)
    assert (merged.lr, merged.steps, merged.epochs, merged.height, merged.width) == (0.5, None, 3, 240, None)
    assert (merged.model.backbone, merged.model.output_stride) == ("resnet34", 16)
    assert (merged.batch_size, merged.deform.affine_prob, merged.deform.tps_prob) == (2, 0.0, 0.5)
    with pytest.raises(InputError, match="unknown setting"):
        TrainConfig.from_dict({"learning_rate": 1.0})
    with pytest.raises(InputError, match="batch_size"):
        TrainConfig.from_dict({"batch_size": 6, "accumulate": 4})


def test_sampler_global_batches_do_not_depend_on_world_size() -> None:
    dataset = list(range(23))
    single = list(EpochSampler(dataset, world_size=1, rank=0, seed=3))
    ranks = [list(EpochSampler(dataset, world_size=2, rank=rank, seed=3)) for rank in (0, 1)]
    for step in range(len(dataset) // 4):  # a global batch of 4 = 2 samples from each rank
        together = ranks[0][2 * step: 2 * step + 2] + ranks[1][2 * step: 2 * step + 2]
        assert sorted(together) == sorted(single[4 * step: 4 * step + 4])
    whole_epoch = list(_at(dataset, epoch=1, start=0))
    assert list(_at(dataset, epoch=1, start=5)) == whole_epoch[5:] and whole_epoch != single


def _at(dataset: list[int], epoch: int, start: int) -> EpochSampler:
    sampler = EpochSampler(dataset, world_size=1, rank=0, seed=3)
    sampler.set_position(epoch, start)
    return sampler


def test_samples_hold_the_objects_mask_and_a_deform_seed_fixed_in_validation(synthetic_davis: Path) -> None:
    sequences = open_source(f"{synthetic_davis}:train")
    index = index_samples(sequences, progress=False)
    size = tuple(sequences[0].size)
    training, validation = MaskTrackSamples(index, size, AugmentConfig.off(), seed=0), MaskTrackSamples(index, size, None, seed=0)
    s, frame, object_id = (int(v) for v in index.rows[5])
    image, mask, seed = training[(0, 5)]
    assert image.shape == (3, *size) and mask.dtype == torch.uint8
    assert torch.equal(mask, torch.from_numpy(sequences[s].read_annotation(frame) == object_id).to(torch.uint8))
    assert training[(1, 5)][2] != seed and validation[(0, 5)][2] == validation[(1, 5)][2]


def test_model_learns_to_beat_its_deformed_input(tmp_path: Path) -> None:
    """Held-out validation IoU of the predictions ends above that of the deformed input masks."""
    data = shapes_folder(tmp_path / "shapes")
    config = tiny_config([str(data)], height=64, width=64, steps=100, optimizer="adamw", model={**TINY_MODEL, "head_channels": 32}, lr=0.01, warmup_steps=5,
                         val_fraction=0.25, checkpoint_every=0, log_every=10)
    final = train(config, tmp_path / "run", progress=False)
    _, metadata = load_checkpoint(final)
    assert metadata["step"] == 100
    assert metadata["val_iou"] > metadata["val_input_iou"] + 0.03, metadata
    validations = [row for row in metric_rows(tmp_path / "run") if row["phase"] == "val"]
    assert float(validations[-1]["iou"]) > float(validations[0]["iou"])
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert TrainConfig.from_dict(saved) == config


def test_init_starts_from_a_trained_checkpoint(synthetic_davis: Path, tmp_path: Path) -> None:
    """``init`` loads a trained network (backbone batch norms then stay frozen); another network is refused."""
    data = [f"{synthetic_davis}:train"]
    parent = train(tiny_config(data, model={**TINY_MODEL, "head_channels": 8}), tmp_path / "parent", progress=False)
    trained, _ = load_checkpoint(parent)
    runs = {}
    for name, init in (("init", str(parent)), ("fresh", None)):
        final = train(tiny_config(data, model={**TINY_MODEL, "head_channels": 8}, steps=1, lr=1e-9, init=init),
                      tmp_path / name, progress=False)
        runs[name] = load_checkpoint(final)[0].state_dict()
    backbone = [key for key in runs["init"] if key.startswith("backbone.")]
    assert all(torch.allclose(runs["init"][key], trained.state_dict()[key], atol=1e-6) for key in backbone)
    assert not all(torch.allclose(runs["fresh"][key], trained.state_dict()[key], atol=1e-6) for key in backbone)
    assert TrainConfig.from_dict({"init": str(parent)}).freeze_batch_norm
    with pytest.raises(InputError, match=r"parent.*head_channels 8 \(not 16\)"):
        train(tiny_config(data, init=str(parent)), tmp_path / "mismatch", progress=False)
    with pytest.raises(InputError, match="exclusive"):
        TrainConfig.from_dict({"init": str(parent), "pretrained": "imagenet"})


def test_two_processes_train_the_same_model_as_one(synthetic_davis: Path, tmp_path: Path) -> None:
    """`torchrun --nproc-per-node 2` (gloo, 2 samples per process) = one process with the same total batch."""
    config = tiny_config([f"{synthetic_davis}:train", f"{synthetic_davis}:val"], steps=4, batch_norm="frozen",
                         workers=1, val_sequences=["synth-003"], val_samples=8)
    settings = tmp_path / "settings.yaml"
    settings.write_text(yaml.safe_dump(config.to_dict()))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               "-m", "masktrack", "train", "--config", str(settings), "--out", str(tmp_path / "ddp"), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    single = train(config, tmp_path / "single", progress=False)
    expected, actual = load_file(single), load_file(tmp_path / "ddp" / "model.safetensors")
    assert expected.keys() == actual.keys()
    for name in expected:
        torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)
    assert float(metric_rows(tmp_path / "ddp")[-1]["iou"]) == pytest.approx(float(metric_rows(tmp_path / "single")[-1]["iou"]), abs=1e-4)


def test_resumed_run_ends_bitwise_equal_to_an_uninterrupted_one(synthetic_davis: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    config = tiny_config([f"{synthetic_davis}:train"])
    reference = load_file(train(config, tmp_path / "reference", progress=False))

    original = loop.loss_backward
    calls = []

    def crash_in_step_5(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")
        return original(*args, **kwargs)

    monkeypatch.setattr(loop, "loss_backward", crash_in_step_5)
    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / "model.safetensors").exists()
    assert torch.load(tmp_path / "run" / STATE_FILE, weights_only=True)["step"] == 4
    monkeypatch.setattr(loop, "loss_backward", original)

    resumed = load_file(train(config, tmp_path / "run", resume=True, progress=False))
    assert all(torch.equal(resumed[name], reference[name]) for name in reference)
    assert [int(row["step"]) for row in metric_rows(tmp_path / "run")] == [1, 2, 3, 4, 5, 6]


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(synthetic_davis: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    original = loop.loss_backward
    calls = []

    def nan_from_step_4(*args, **kwargs):
        calls.append(1)
        loss = original(*args, **kwargs)
        return loss * float("nan") if len(calls) >= 4 else loss

    monkeypatch.setattr(loop, "loss_backward", nan_from_step_4)
    run = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="diverged at step 4") as raised:
        train(tiny_config([f"{synthetic_davis}:train"]), run, progress=False)
    assert "\n" not in str(raised.value) and str(run / STATE_FILE) in str(raised.value)
    state = torch.load(run / STATE_FILE, weights_only=True)
    assert state["step"] == 2
    assert all(torch.isfinite(value).all() for value in state["model"].values() if value.is_floating_point())
    assert not (run / "model.safetensors").exists()

    monkeypatch.setattr(loop, "loss_backward", original)  # continue it with a lower learning rate
    with pytest.raises(InputError, match="batch_size"):
        train(tiny_config([f"{synthetic_davis}:train"], batch_size=2), run, resume=True, progress=False)
    train(tiny_config([f"{synthetic_davis}:train"], lr=0.001), run, resume=True, progress=False)
    resumed = [row for row in metric_rows(run) if row["phase"] == "train"]
    schedule = loop.poly_schedule(2, 6, TrainConfig().poly_power)
    assert [int(row["step"]) for row in resumed] == [1, 2, 3, 4, 5, 6]
    lrs = [float(row["lr"]) for row in resumed]  # each row: the rate after its step's schedule update
    assert lrs == pytest.approx([0.01 * schedule(step) for step in (1, 2)] + [0.001 * schedule(step) for step in (3, 4, 5)] + [0.0])
    assert yaml.safe_load((run / "config.yaml").read_text())["lr"] == 0.001  # a further --resume keeps it


def test_cli_refuses_a_missing_data_folder(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "run"), "--backbone", "resnet18"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in error and "missing" in error and "not found" in error
    assert not (tmp_path / "run").exists()
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--size", "2x"]) == 2


def test_cli_help_has_examples(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "torchrun --nproc-per-node" in capsys.readouterr().out


@pytest.mark.skipif(not DAVIS2016.is_dir(), reason="DAVIS 2016 not available at ../shared/data/davis2016")
def test_davis2016_train_split_opens() -> None:
    sequences = open_source(f"{DAVIS2016}:train")
    assert len(sequences) == 30 and sequences[0].size == (240, 427)
