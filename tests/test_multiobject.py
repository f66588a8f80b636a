"""Multi-object failures made measurable: look-alike synthetic videos, identity switches, the composite DAVIS set."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest
from PIL import Image

from masktrack.cli import main
from masktrack.data.masks import read_mask, write_mask
from masktrack.data.sources import open_davis
from masktrack.data.synth import generate_dataset, generate_video
from masktrack.errors import InputError
from masktrack.evaluate import (
    dataset_switches,
    identity_switches,
    object_switches,
    sequence_switches,
)

ROOT = Path(__file__).resolve().parents[1]
DAVIS_2016 = ROOT.parent / "shared" / "data" / "davis2016"


def _load_composite() -> ModuleType:
    spec = importlib.util.spec_from_file_location("composite", ROOT / "benchmarks" / "composite.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["composite"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


composite = _load_composite()


# --- look-alike synthetic videos -------------------------------------------------------------


def _digest(**settings: object) -> str:
    video = generate_video(**settings)
    return hashlib.sha256(video.frames.tobytes() + video.labels.tobytes()).hexdigest()[:16]


def test_plain_videos_are_unchanged() -> None:
    """Digests of frames and labels computed before ``lookalike`` existed: without it nothing changes."""
    assert _digest(seed=3, num_frames=6, size=(48, 64), num_objects=2) == "0900cb4475d7d36a"
    assert _digest(seed=4, num_frames=8, size=(48, 64), num_objects=3, appearing=True, leaving=True) == "aca1a97d7808524f"
    assert _digest(seed=6, num_frames=10, size=(64, 80), num_objects=2, hiding=True) == "e5205ebc2420e3c8"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lookalikes_share_outline_texture_and_size(seed: int) -> None:
    video = generate_video(seed, num_frames=12, size=(72, 96), num_objects=2, lookalike=True)
    first = video.labels[0]  # the objects start on opposite sides: apart, both whole
    areas = [np.count_nonzero(first == object_id) for object_id in (1, 2)]
    assert 0.75 < areas[0] / areas[1] < 1.33
    inside = [cv2.erode((first == object_id).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0 for object_id in (1, 2)]
    colours = [video.frames[0][mask].astype(float) for mask in inside]  # edge pixels mix with the background
    assert np.abs(colours[0].mean(axis=0) - colours[1].mean(axis=0)).max() < 6  # two different objects: 30 to 200
    assert np.abs(colours[0].std(axis=0) - colours[1].std(axis=0)).max() < 6


@pytest.mark.parametrize("seed, count", [(0, 2), (1, 3), (2, 2), (3, 3)])
def test_lookalike_paths_cross(seed: int, count: int) -> None:
    video = generate_video(seed, num_frames=24, size=(72, 96), num_objects=count, lookalike=True)
    radius = np.sqrt(max(np.count_nonzero(video.labels[0] == i) for i in range(1, count + 1)) / np.pi)
    centres = video.centres
    gaps = {(i, j): np.linalg.norm(centres[:, i] - centres[:, j], axis=1) for i in range(count) for j in range(i + 1, count)}
    assert gaps[0, 1].min() < 1.2 * radius  # objects 1 and 2 pass within about a radius ...
    assert np.dot(centres[0, 0] - centres[0, 1], centres[-1, 0] - centres[-1, 1]) < 0  # ... and swap sides
    if count == 3:
        assert min(gaps[0, 2].min(), gaps[1, 2].min()) < 1.5 * radius
    assert not np.array_equal(video.labels, generate_video(seed, num_frames=24, size=(72, 96), num_objects=count).labels)


def test_lookalike_dataset_is_deterministic_and_one_object_leaves(tmp_path: Path) -> None:
    settings = {"num_videos": 3, "num_frames": 12, "size": (64, 80), "seed": 1, "lookalike": True}
    first, again = generate_dataset(tmp_path / "a", **settings), generate_dataset(tmp_path / "b", **settings)
    for index in range(3):
        folder = Path("Annotations") / "64p" / f"synth-{index:03d}"
        labels = np.stack([read_mask(path) for path in sorted((first / folder).glob("*.png"))])
        ids = [int(i) for i in np.unique(labels[0]) if i]
        assert ids in ([1, 2], [1, 2, 3]) and set(np.unique(labels)) == {0, *ids}  # nobody appears later
        assert sum(not (labels[-1] == i).any() for i in ids) == (1 if index == 2 else 0)
        for path in sorted((first / folder).glob("*.png"))[:3]:
            assert path.read_bytes() == (again / folder / path.name).read_bytes()
    with pytest.raises(ValueError, match="lookalike"):
        generate_dataset(tmp_path / "c", num_videos=1, lookalike=True, occlusions=True)
    with pytest.raises(ValueError, match="lookalike"):
        generate_video(0, num_objects=4, lookalike=True)


def test_synth_cli_lookalike(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "look"
    assert main(["synth", str(out), "--videos", "2", "--frames", "6", "--size", "64x80", "--lookalike"]) == 0
    assert len(list((out / "Annotations" / "64p" / "synth-001").glob("*.png"))) == 6
    assert main(["synth", str(tmp_path / "both"), "--lookalike", "--occlusions"]) == 2
    assert "--lookalike and --occlusions" in capsys.readouterr().err


# --- identity switches -----------------------------------------------------------------------


def _two_objects(frames: int = 2) -> np.ndarray:
    """Object 1 in columns 0-3, object 2 in columns 4-7 and background in columns 8-9 of 4x10 frames."""
    truth = np.zeros((frames, 4, 10), dtype=np.uint8)
    truth[:, :, :4], truth[:, :, 4:8] = 1, 2
    return truth


def _swapped(truth: np.ndarray) -> np.ndarray:
    return np.choose(truth, [0, 2, 1]).astype(np.uint8)


def test_a_swap_counts_once_per_object_and_frame() -> None:
    truth = _two_objects()
    assert identity_switches(truth, _swapped(truth), [1, 2]) == 4
    assert object_switches(truth, _swapped(truth), [1, 2]) == {1: 2, 2: 2}
    assert identity_switches(truth, truth, [1, 2]) == 0


def test_small_overlaps_and_empty_predictions_do_not_count() -> None:
    truth = _two_objects(1)
    predicted = np.zeros_like(truth)
    predicted[0, 0, 3:6] = 1  # 1 pixel on object 1, 2 on object 2 ...
    predicted[0, 1:, 9] = 1  # ... and 3 on the background: more on the other than on itself, but not half
    assert identity_switches(truth, predicted, [1, 2]) == 0  # object 2 is not predicted at all: no switch either
    predicted[0, 1:, 9] = 0  # now 2 of its 3 pixels lie on object 2
    assert identity_switches(truth, predicted, [1, 2]) == 1
    merged = np.where(truth > 0, 1, 0).astype(np.uint8)  # object 1 over both: as much on object 2 as on itself
    assert identity_switches(truth, merged, [1, 2]) == 0
    with pytest.raises(ValueError):
        identity_switches(truth, predicted[:, :2], [1, 2])


def test_sequence_switches_skip_the_first_and_last_frames(tmp_path: Path) -> None:
    truth = _two_objects(5)
    predicted = truth.copy()
    for t in (0, 2, 4):  # swapped in the first, a middle and the last frame
        predicted[t] = _swapped(truth[t])
    for root, labels in (("gt", truth), ("pred", predicted)):
        (tmp_path / root / "seq").mkdir(parents=True)
        for t, frame in enumerate(labels):
            write_mask(tmp_path / root / "seq" / f"{t:05d}.png", frame)
    assert sequence_switches(tmp_path / "gt", tmp_path / "pred", "seq") == {1: 1, 2: 1}
    assert dataset_switches(tmp_path / "gt", tmp_path / "pred") == {"seq": {1: 1, 2: 1}}
    (tmp_path / "pred" / "seq" / "00003.png").unlink()
    with pytest.raises(InputError, match="00003.png"):
        sequence_switches(tmp_path / "gt", tmp_path / "pred", "seq")


# --- the composite DAVIS set -----------------------------------------------------------------

SIZE = (60, 96)


def _fake_sequence(davis: Path, name: str, frames: int, colour: tuple[int, int, int], start_x: int, square: bool) -> None:
    """A disc or square of ``colour`` moving right from ``start_x`` over a striped background, DAVIS 2016 layout."""
    height, width = SIZE
    images, masks = davis / "JPEGImages" / "240p" / name, davis / "Annotations" / "240p" / name
    images.mkdir(parents=True)
    masks.mkdir(parents=True)
    for t in range(frames):
        frame = np.zeros((height, width, 3), dtype=np.uint8)
        frame[:, :] = (40, 90, 40)
        frame[::6] = (70, 70, 70)
        mask = np.zeros(SIZE, dtype=np.uint8)
        centre = (start_x + 2 * t, 32)
        if square:
            cv2.rectangle(mask, (centre[0] - 9, centre[1] - 9), (centre[0] + 9, centre[1] + 9), 255, -1)
        else:
            cv2.circle(mask, centre, 10, 255, -1)
        frame[mask > 0] = colour
        Image.fromarray(frame).save(images / f"{t:05d}.jpg", quality=95)
        Image.fromarray(mask).save(masks / f"{t:05d}.png")


@pytest.fixture(scope="module")
def fake_davis(tmp_path_factory: pytest.TempPathFactory) -> Path:
    davis = tmp_path_factory.mktemp("davis2016")
    _fake_sequence(davis, "host", 8, (200, 40, 40), 40, square=False)
    _fake_sequence(davis, "guest", 10, (40, 40, 200), 10, square=True)
    _fake_sequence(davis, "third", 9, (220, 220, 40), 60, square=False)
    (davis / "ImageSets").mkdir()
    (davis / "ImageSets" / "val.txt").write_text("host\nguest\nthird\n")
    (davis / "ImageSets" / "train.txt").write_text("other\n")
    return davis


RECIPES = (
    composite.Composite("host", "guest", guest_in_front=False),
    composite.Composite("host", "guest", guest_in_front=True, third="third"),
)


def _labels(root: Path, name: str) -> np.ndarray:
    return np.stack([read_mask(path) for path in sorted((root / "Annotations" / "240p" / name).glob("*.png"))])


def _host_masks(davis: Path) -> np.ndarray:
    return np.stack([read_mask(path) > 0 for path in sorted((davis / "Annotations" / "240p" / "host").glob("*.png"))])


def test_composite_layout_reads_as_a_davis_split(fake_davis: Path, tmp_path: Path) -> None:
    recipes = composite.build(fake_davis, tmp_path / "out", "val", RECIPES)
    assert [recipe["frames"] for recipe in recipes] == [8, 8]  # the shortest sequence's length
    names = ["host+guest", "host+guest+third"]
    assert (tmp_path / "out" / "ImageSets" / "2017" / "val.txt").read_text().split() == names
    assert [video["name"] for video in json.loads((tmp_path / "out" / "composite.json").read_text())["videos"]] == names
    sequences = open_davis(tmp_path / "out", split="val")
    assert [sequence.name for sequence in sequences] == names
    for sequence in sequences:
        assert len(sequence) == 8 and sequence.annotated == list(range(8)) and sequence.size == SIZE
        assert sequence.frame_names[0] == "00000"
    assert set(np.unique(_labels(tmp_path / "out", names[0])[0])) == {0, 1, 2}
    assert set(np.unique(_labels(tmp_path / "out", names[1])[0])) == {0, 1, 2, 3}


def test_composite_depth_order_and_crossing(fake_davis: Path, tmp_path: Path) -> None:
    composite.build(fake_davis, tmp_path / "out", "val", RECIPES)
    host = _host_masks(fake_davis)[:8]
    behind, in_front = _labels(tmp_path / "out", "host+guest"), _labels(tmp_path / "out", "host+guest+third")
    assert np.array_equal(behind == 1, host)  # behind: the host keeps all its pixels, the guest none of them
    assert not ((behind == 2) & host).any() and (behind == 2).any(axis=(1, 2)).all()
    covered = (in_front == 2) & host  # in front: the guest takes host pixels in some frames
    assert covered.any() and np.array_equal(in_front == 1, host & ~(in_front == 2) & ~(in_front == 3))
    sides = [np.sign(np.nonzero(behind[t] == 2)[1].mean() - np.nonzero(host[t])[1].mean()) for t in (0, 7)]
    assert sides[0] == -sides[1] != 0  # the guest passes from one side of the host to the other


def test_composite_is_deterministic_and_keeps_to_its_split(fake_davis: Path, tmp_path: Path) -> None:
    composite.build(fake_davis, tmp_path / "a", "val", RECIPES[:1])
    composite.build(fake_davis, tmp_path / "b", "val", RECIPES[:1])
    files = sorted(path.relative_to(tmp_path / "a") for path in (tmp_path / "a").rglob("*") if path.is_file())
    assert len(files) == 2 * 8 + 2
    assert all((tmp_path / "a" / path).read_bytes() == (tmp_path / "b" / path).read_bytes() for path in files)
    with pytest.raises(InputError, match="not in split train"):
        composite.build(fake_davis, tmp_path / "c", "train", RECIPES[:1])
    with pytest.raises(InputError, match="--overwrite"):
        composite.build(fake_davis, tmp_path / "a", "val", RECIPES[:1])


def test_composite_score_counts_switches(fake_davis: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    composite.build(fake_davis, out, "val", RECIPES[:1])
    labels = _labels(out, "host+guest")
    (tmp_path / "run" / "host+guest").mkdir(parents=True)
    for t, frame in enumerate(labels):
        write_mask(tmp_path / "run" / "host+guest" / f"{t:05d}.png", _swapped(frame) if t in (1, 2) else frame)
    table = composite.score(out, tmp_path / "run", "val")
    assert "| host+guest | 1 | host |" in table and "| **total** | **4** |" in table


@pytest.mark.skipif(not DAVIS_2016.is_dir(), reason="DAVIS 2016 not present")
def test_recipes_use_only_their_split() -> None:
    for split, recipes in composite.COMPOSITES.items():
        allowed = set(composite.split_names(DAVIS_2016, split))
        used = {name for recipe in recipes for name in (recipe.host, recipe.guest, recipe.third) if name}
        assert used <= allowed, used - allowed
        assert len({recipe.name for recipe in recipes}) == len(recipes) >= 10


def test_eval_cli_counts_identity_switches_of_multi_object_sequences(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    truth = np.zeros((5, 20, 30), dtype=np.uint8)
    truth[:, 5:15, 2:10], truth[:, 5:15, 18:26] = 1, 2
    predicted = truth.copy()
    predicted[2] = np.where(truth[2] == 1, 2, np.where(truth[2] == 2, 1, 0))  # the two objects swapped on frame 2
    for root, labels in (("gt", truth), ("pred", predicted)):
        for name in ("pair", "single"):
            (tmp_path / root / name).mkdir(parents=True)
        for k, frame in enumerate(labels):
            write_mask(tmp_path / root / "pair" / f"{k:05d}.png", frame)
            write_mask(tmp_path / root / "single" / f"{k:05d}.png", (frame == 1).astype(np.uint8))
    assert main(["eval", str(tmp_path / "gt"), str(tmp_path / "pred")]) == 0
    out = capsys.readouterr().out
    assert "Switches" in out and "identity switches: 2 object-frames in 1 multi-object sequences" in out
    rows = {line.split()[0]: line.split() for line in out.splitlines() if line.startswith(("pair_", "single_"))}
    assert rows["pair_1"][-1] == "1" and rows["pair_2"][-1] == "1" and len(rows["single_1"]) == 3
