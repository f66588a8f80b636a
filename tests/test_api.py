"""The Python API: Predictor and Tracker, presets and settings layering, the CLI as a thin layer over it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import masktrack
from masktrack.api.config import PRESETS, SegmentConfig, flatten, segment_config
from masktrack.cli import main
from masktrack.data.masks import read_mask, write_mask
from masktrack.data.synth import generate_video
from masktrack.errors import InputError

FEW_STEPS = {"finetune": {"steps": 2}, "motion": {"steps": 2}}  # plumbing, not accuracy


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def video():
    return generate_video(5, num_frames=6, size=(48, 64), num_objects=2)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory, video) -> tuple[Path, Path]:
    """The video as a frame folder, and its first frame's mask."""
    root = tmp_path_factory.mktemp("clip")
    frames = root / "frames"
    frames.mkdir()
    for index, frame in enumerate(video.frames):
        Image.fromarray(frame).save(frames / f"{index:05d}.png")
    write_mask(root / "first.png", video.labels[0])
    return frames, root / "first.png"


def test_the_readme_example_segments_a_video_with_the_shipped_model(clip: tuple[Path, Path]) -> None:
    frames, mask = clip
    predictor = masktrack.Predictor(device="cpu", finetune={"steps": 2})  # the shipped model, preset "default"
    results = list(predictor.segment(frames, masks={0: mask}))
    assert [index for index, _ in results] == list(range(6))
    assert all(labels.dtype == np.uint8 and labels.shape == (48, 64) for _, labels in results)
    assert (results[0][1] == read_mask(mask)).all()  # the given frame is the given mask
    assert set(np.unique(results[-1][1])) <= {0, 1, 2}


def test_the_cli_and_the_predictor_give_the_same_masks(tmp_path: Path, weights: Path, clip: tuple[Path, Path]) -> None:
    frames, mask = clip
    out, settings = tmp_path / "run", tmp_path / "settings.yaml"
    settings.write_text("motion: {steps: 2}\n")
    code = main(["segment", str(frames), "--mask", str(mask), "--weights", str(weights), "--preset", "best", "--config",
                 str(settings), "--finetune-steps", "2", "--device", "cpu", "--threads", "1", "--quiet", "--no-report",
                 "--out", str(out)])
    assert code == 0
    predictor = masktrack.Predictor(weights, preset="best", device="cpu", **FEW_STEPS)
    for index, labels in predictor.segment(frames, masks={0: mask}):
        assert (read_mask(out / "frames" / f"{index:05d}.png") == labels).all(), index


def test_a_run_records_at_most_50_settings_and_its_config_yaml_is_reusable(tmp_path: Path, weights: Path,
                                                                           clip: tuple[Path, Path]) -> None:
    frames, mask = clip
    out = tmp_path / "run"
    assert main(["segment", str(frames), "--mask", str(mask), "--weights", str(weights), "--preset", "fast",
                 "--device", "cpu", "--quiet", "--no-report", "--out", str(out)]) == 0
    recorded = yaml.safe_load((out / "config.yaml").read_text())
    assert len(flatten(recorded)) <= 50
    assert SegmentConfig.from_dict(recorded) == segment_config("fast")


def test_presets_layer_under_a_settings_file_and_the_overrides_key_by_key(tmp_path: Path) -> None:
    default, best = segment_config(), segment_config("best")
    assert default == SegmentConfig()  # the settings classes' own defaults are the default preset
    assert best.propagate.flow and best.propagate.flip and best.motion.weight == 0.3 and best.finetune.steps == 400
    assert segment_config("fast").finetune.steps < default.finetune.steps
    settings = tmp_path / "settings.yaml"
    settings.write_text("preset: best\nfinetune: {steps: 100}\npropagate: {threshold: 0.5}\n")
    layered = segment_config(None, settings, {"propagate": {"flip": False}})
    assert (layered.finetune.steps, layered.finetune.batch_size, layered.propagate.threshold) == (100, 2, 0.5)
    assert layered.propagate.flow and not layered.propagate.flip
    assert segment_config("fast", settings).finetune.batch_size == PRESETS["fast"]["finetune"]["batch_size"]  # flag wins


@pytest.mark.parametrize("values, problem", [
    ({"preset": "slow"}, "unknown preset 'slow'"),
    ({"propagate": {"threshold": "high"}}, "propagate: threshold: expected a number, got 'high'"),
    ({"propagate": {"flow": "false"}}, "propagate: flow: expected true or false, got 'false'"),
    ({"finetune": {"steps": "many"}}, "finetune: steps: expected a whole number, got 'many'"),
    ({"seed": 1.5}, "seed: expected a whole number, got 1.5"),
    ({"finetune": {"augment": {"scale": [0.5]}}}, "finetune: augment: scale: expected 2 values"),
    ({"propagate": {"soft_masks": True}}, "unknown setting(s) soft_masks"),
])
def test_settings_of_the_wrong_type_or_name_are_one_line_errors_naming_the_key(values: dict, problem: str) -> None:
    with pytest.raises(InputError) as error:
        SegmentConfig.from_dict(values, source="my.yaml")
    assert problem in str(error.value) and str(error.value).startswith("my.yaml") and "\n" not in str(error.value)


def test_the_tracker_gives_segment_s_masks_frame_by_frame_and_adds_objects_later(weights: Path, video) -> None:
    predictor = masktrack.Predictor(weights, preset="best", device="cpu", **FEW_STEPS)
    whole = [labels for _, labels in predictor.segment(iter(video.frames), masks={0: video.labels[0]})]
    tracker = predictor.tracker()
    stepped = [tracker.step(frame, video.labels[0] if index == 0 else None) for index, frame in enumerate(video.frames)]
    assert all((a == b).all() for a, b in zip(whole, stepped))
    with pytest.raises(InputError, match="first frame needs a mask"):
        predictor.tracker().step(video.frames[0])
    later = predictor.tracker()
    first_only = np.where(video.labels[0] == 1, 1, 0).astype(np.uint8)
    later.step(video.frames[0], first_only)
    added = later.step(video.frames[1], np.where(video.labels[1] == 2, 2, 0).astype(np.uint8))
    assert set(later.propagator.models) == {1, 2} and (added[video.labels[1] == 2] == 2).all()


def test_frames_from_an_iterable_with_an_object_given_at_a_later_frame(weights: Path, video) -> None:
    predictor = masktrack.Predictor(weights, device="cpu", finetune={"steps": 1})
    first = np.where(video.labels[0] == 1, 1, 0).astype(np.uint8)
    second = np.where(video.labels[2] == 2, 2, 0).astype(np.uint8)
    results = dict(predictor.segment((frame for frame in video.frames), masks={0: first, 2: second}))
    assert len(results) == 6 and (results[2][second == 2] == 2).all() and 2 not in results[1]
    with pytest.raises(InputError, match="frame index 9"):
        list(predictor.segment(list(video.frames), masks={9: first}))
    with pytest.raises(InputError, match="expected an"):
        list(predictor.segment([video.frames[0][..., 0]], masks={0: first}))
