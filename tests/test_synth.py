"""Synthetic DAVIS-layout data: layout, determinism, appearing/leaving objects, occlusion, palette PNGs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from masktrack.cli import main
from masktrack.data.masks import DAVIS_PALETTE, read_mask
from masktrack.data.synth import generate_dataset, generate_video

from conftest import SYNTHETIC_DAVIS


def _labels(root: Path, sequence: str) -> np.ndarray:
    return np.stack([read_mask(path) for path in sorted((root / "Annotations" / "96p" / sequence).glob("*.png"))])


def test_layout(synthetic_davis: Path) -> None:
    sequences = [f"synth-{index:03d}" for index in range(4)]
    assert sorted(p.name for p in (synthetic_davis / "JPEGImages" / "96p").iterdir()) == sequences
    assert (synthetic_davis / "ImageSets" / "2017" / "train.txt").read_text().split() == sequences[:3]
    assert (synthetic_davis / "ImageSets" / "2017" / "val.txt").read_text().split() == sequences[3:]
    for sequence in sequences:
        frames = sorted((synthetic_davis / "JPEGImages" / "96p" / sequence).glob("*.jpg"))
        masks = sorted((synthetic_davis / "Annotations" / "96p" / sequence).glob("*.png"))
        assert [p.stem for p in frames] == [p.stem for p in masks] == [f"{t:05d}" for t in range(12)]
        with Image.open(frames[0]) as image:
            assert image.size == (128, 96) and image.mode == "RGB"


def test_masks_are_davis_palette_pngs(synthetic_davis: Path) -> None:
    with Image.open(synthetic_davis / "Annotations" / "96p" / "synth-000" / "00000.png") as image:
        assert image.mode == "P"
        assert np.array_equal(np.asarray(image.getpalette()[:768], dtype=np.uint8).reshape(-1, 3), DAVIS_PALETTE)


def test_objects_in_first_frame_appearing_and_leaving(synthetic_davis: Path) -> None:
    for sequence in ("synth-000", "synth-001", "synth-002", "synth-003"):
        labels = _labels(synthetic_davis, sequence)
        ids = [int(i) for i in np.unique(labels) if i]
        assert 2 <= len(ids) <= 3 and ids == list(range(1, len(ids) + 1))
        first = {i: int(np.argmax((labels == i).any(axis=(1, 2)))) for i in ids}
        late = [i for i in ids if first[i] > 0]
        if sequence in ("synth-001", "synth-003"):
            assert late == [ids[-1]]
            assert (labels[first[late[0]] :] == late[0]).any(axis=(1, 2)).all()
        else:
            assert late == []
        gone = [i for i in ids if not (labels[-1] == i).any()]
        assert len(gone) == (1 if sequence == "synth-002" else 0)


def test_occlusion_keeps_ids_disjoint_and_shapes_move() -> None:
    video = generate_video(seed=5, num_frames=30, size=(64, 80), num_objects=3)
    assert video.frames.shape == (30, 64, 80, 3) and video.labels.shape == (30, 64, 80)
    assert set(np.unique(video.labels)) == {0, 1, 2, 3}
    # One id per pixel; areas change over time as objects scale, rotate and occlude each other.
    areas = np.stack([(video.labels == i).sum(axis=(1, 2)) for i in (1, 2, 3)])
    assert (areas > 0).all() and (areas.max(axis=1) > areas.min(axis=1)).all()
    # Objects are textured: pixel colours vary inside each mask.
    for i in (1, 2, 3):
        assert video.frames[0][video.labels[0] == i].std(axis=0).mean() > 10


def test_deterministic_and_seed_dependent(tmp_path: Path, synthetic_davis: Path) -> None:
    again = generate_dataset(tmp_path / "again", **SYNTHETIC_DAVIS)
    for relative in ("JPEGImages/96p/synth-002/00007.jpg", "Annotations/96p/synth-002/00007.png"):
        assert (again / relative).read_bytes() == (synthetic_davis / relative).read_bytes()
    other = generate_video(seed=1, num_frames=4, size=(48, 64), num_objects=2)
    same = generate_video(seed=1, num_frames=4, size=(48, 64), num_objects=2)
    different = generate_video(seed=2, num_frames=4, size=(48, 64), num_objects=2)
    assert np.array_equal(other.frames, same.frames) and not np.array_equal(other.frames, different.frames)


def test_cli_writes_atomically_and_refuses_existing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "data"
    assert main(["synth", str(out), "--videos", "2", "--frames", "3", "--size", "48x64"]) == 0
    assert (out / "ImageSets" / "2017" / "val.txt").read_text().split() == ["synth-001"]
    assert len(list((out / "JPEGImages" / "48p" / "synth-000").glob("*.jpg"))) == 3
    assert not (tmp_path / "data.partial").exists()
    assert main(["synth", str(out), "--videos", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["synth", str(out), "--videos", "1", "--frames", "2", "--size", "48x64", "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "JPEGImages" / "48p").iterdir()) == ["synth-000"]


def test_a_hiding_object_vanishes_inside_the_frame_and_comes_back() -> None:
    video = generate_video(seed=4, num_frames=30, size=(64, 80), num_objects=2, hiding=True)
    areas = np.stack([(video.labels == i).sum(axis=(1, 2)) for i in (1, 2)])
    hider = int(np.argmin(areas.min(axis=1)))
    hidden = np.flatnonzero(areas[hider] == 0)
    # Wholly hidden for a stretch in the middle, in view at both ends; the other object never vanishes.
    assert len(hidden) >= 2 and 0 < hidden[0] and hidden[-1] < 29 and np.all(np.diff(hidden) == 1)
    assert areas[hider, 0] > 0 and areas[hider, -1] > 0 and areas[1 - hider].min() > 0
    # The pillar: columns that stay still while the background pans, empty of every mask, clear of the edge.
    still = np.flatnonzero(video.frames.astype(np.float32).std(axis=0).mean(axis=(0, 2)) < 5)
    assert len(still) >= 10 and np.all(np.diff(still) == 1) and 0 < still[0] and still[-1] < 79
    assert not (video.labels[:, :, still] > 0).any()
    without = generate_video(seed=4, num_frames=30, size=(64, 80), num_objects=2)
    assert not np.array_equal(without.labels, video.labels)
    with pytest.raises(ValueError, match="hiding"):
        generate_video(seed=4, num_frames=30, size=(64, 80), num_objects=1, leaving=True, hiding=True)


def test_occlusions_change_only_every_fourth_video(tmp_path: Path) -> None:
    settings = {"num_videos": 5, "num_frames": 12, "size": (48, 64)}
    plain = generate_dataset(tmp_path / "plain", **settings)
    occluded = tmp_path / "occluded"
    assert main(["synth", str(occluded), "--videos", "5", "--frames", "12", "--size", "48x64", "--occlusions"]) == 0
    for index in range(5):
        relative = f"Annotations/48p/synth-{index:03d}"
        same = all((plain / relative / name).read_bytes() == (occluded / relative / name).read_bytes()
                   for name in sorted(p.name for p in (plain / relative).iterdir()))
        assert same == (index != 3)
