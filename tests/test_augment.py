"""Previous-frame mask deformations and joint image+mask augmentation: geometry, determinism, CLI."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from masktrack.augment import (
    DEFORMATIONS,
    AugmentConfig,
    DeformConfig,
    augment_batch,
    deform_masks,
    resize_pair,
)
from masktrack.augment.boxes import bounding_boxes
from masktrack.augment.preview import ROWS, deformation_sheet
from masktrack.cli import main
from masktrack.data.masks import write_mask


def blob(height: int, width: int, centre: tuple[float, float] = (0.5, 0.45), radius: float = 0.22) -> torch.Tensor:
    """A bool (H, W) object, an ellipse with a side lobe, placed relative to the image size."""
    ys = (torch.arange(height) + 0.5)[:, None] / height
    xs = (torch.arange(width) + 0.5)[None, :] / height  # same scale on both axes
    cx, cy = centre[0] * width / height, centre[1]
    body = ((xs - cx) / (1.3 * radius)) ** 2 + ((ys - cy) / radius) ** 2 <= 1
    lobe = ((xs - cx - radius) / (0.5 * radius)) ** 2 + ((ys - cy + 0.6 * radius) / (0.35 * radius)) ** 2 <= 1
    return body | lobe


def batch_of(mask: torch.Tensor, count: int) -> torch.Tensor:
    return mask[None].expand(count, -1, -1).contiguous()


def boxes_of(masks: torch.Tensor) -> torch.Tensor:
    boxes, present = bounding_boxes(masks)
    assert present.all()
    return boxes.float()


def iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a, b = a > 0.5, b > 0.5
    return (a & b).flatten(1).sum(1) / (a | b).flatten(1).sum(1).clamp(min=1)


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------- deformations


def test_output_format_and_input_dtypes() -> None:
    mask = blob(96, 160)
    expected = deform_masks(batch_of(mask, 4), generator=seeded())
    assert expected.shape == (4, 96, 160) and expected.dtype == torch.float32
    assert set(expected.unique().tolist()) <= {0.0, 1.0}
    for variant in (mask.to(torch.uint8) * 3, mask.float()):  # label ids and float masks read alike
        assert torch.equal(deform_masks(batch_of(variant, 4), generator=seeded()), expected)


def test_affine_jitter_stays_within_its_ranges() -> None:
    mask = blob(240, 427)
    out = deform_masks(batch_of(mask, 48), DeformConfig().only("affine"), seeded(1))
    before, after = boxes_of(mask[None]), boxes_of(out)
    size_before, size_after = before[:, 2:] - before[:, :2] + 1, after[:, 2:] - after[:, :2] + 1
    ratio = size_after / size_before
    slack = 2 / size_before  # a pixel of rounding at each edge
    assert (ratio >= 0.95 - slack).all() and (ratio <= 1.05 + slack).all()
    shift = ((after[:, :2] + after[:, 2:]) - (before[:, :2] + before[:, 2:])).abs() / 2
    assert (shift <= 0.10 * size_before + 1.5).all()
    assert shift.amax(dim=0).min() > 0.05 * size_before.min()  # it does move the box, in x and y
    assert ratio.std(dim=0).min() > 0.01  # and scales it


def test_tps_warp_stays_near_the_mask_but_changes_it() -> None:
    mask = blob(120, 214)
    out = deform_masks(batch_of(mask, 32), DeformConfig().only("tps"), seeded(2))
    overlap = iou(out, batch_of(mask, 32).float())
    assert (overlap > 0.6).all()
    assert (overlap < 0.99).float().mean() > 0.8


@pytest.mark.parametrize(("height", "radius"), [(480, 5.0), (240, 2.5)])
def test_dilation_grows_by_the_disk_radius(height: int, radius: float) -> None:
    mask = torch.zeros(height, height * 16 // 9, dtype=torch.bool)
    mask[height // 3 : height // 2, height // 2 : height] = True
    out = deform_masks(mask[None], DeformConfig().only("dilate"), seeded())[0] > 0.5
    assert (out | mask).equal(out)  # grows, never shrinks
    grown = (boxes_of(out[None]) - boxes_of(mask[None]))[0] * torch.tensor([-1, -1, 1, 1])
    assert ((grown - radius).abs() <= 1).all()
    corner = boxes_of(mask[None])[0, 2:].long()  # the corner is rounded like a disk, not a square
    diagonal = int(radius / math.sqrt(2)) + 2
    assert not out[corner[1] + diagonal, corner[0] + diagonal]


def test_box_only_is_the_filled_bounding_box() -> None:
    mask = blob(120, 214)
    out = deform_masks(mask[None], DeformConfig().only("box"), seeded())[0]
    x0, y0, x1, y1 = boxes_of(mask[None])[0].long().tolist()
    expected = torch.zeros_like(out)
    expected[y0 : y1 + 1, x0 : x1 + 1] = 1
    assert torch.equal(out, expected)


def test_coarsen_and_drop_keep_the_object_recognisable() -> None:
    mask = batch_of(blob(120, 214), 16)
    coarse = deform_masks(mask, DeformConfig().only("coarsen"), seeded(3))
    assert (iou(coarse, mask.float()) > 0.75).all()
    bitten = deform_masks(mask, DeformConfig().only("drop"), seeded(4)) > 0.5
    assert (bitten & ~mask).sum() == 0  # only removes
    area = bitten.flatten(1).sum(1) / mask.flatten(1).sum(1)
    assert (area > 0).all() and (area < 1).float().mean() > 0.8


def test_empty_masks_stay_empty_and_empty_case_empties() -> None:
    masks = torch.zeros(3, 64, 96)
    assert not deform_masks(masks, generator=seeded()).any()
    full = batch_of(blob(64, 96), 3)
    assert not deform_masks(full, DeformConfig().only("empty"), seeded()).any()
    mixed = torch.stack([blob(64, 96), torch.zeros(64, 96, dtype=torch.bool)])
    out = deform_masks(mixed, DeformConfig(empty_prob=0.0), seeded())
    assert out[0].any() and not out[1].any()


def test_deterministic_given_the_generator() -> None:
    masks = batch_of(blob(96, 160), 6)
    first, second = deform_masks(masks, generator=seeded(7)), deform_masks(masks, generator=seeded(7))
    assert torch.equal(first, second)
    assert not torch.equal(first, deform_masks(masks, generator=seeded(8)))


def test_resolution_independent() -> None:
    small, large = blob(240, 427), blob(480, 854)
    low = deform_masks(batch_of(small, 8), DeformConfig().only("affine"), seeded(5))
    high = deform_masks(batch_of(large, 8), DeformConfig().only("affine"), seeded(5))
    relative = (boxes_of(low) + 0.5) / 240 - (boxes_of(high) + 0.5) / 480  # same relative jitter
    assert relative.abs().max() < 2 / 240
    low = deform_masks(batch_of(small, 12), DeformConfig(empty_prob=0, box_prob=0), seeded(5))
    high = deform_masks(batch_of(large, 12), DeformConfig(empty_prob=0, box_prob=0), seeded(5))
    high_at_low = F.interpolate(high[:, None], size=(240, 427), mode="area")[:, 0]
    assert iou(low, high_at_low).median() > 0.95  # the same deformations, bar the odd control point
    truth = small.float()[None]
    assert abs(iou(low, truth).mean() - iou(high_at_low, truth).mean()) < 0.03


def test_object_cut_by_the_image_edge_stays_on_it() -> None:
    mask = torch.zeros(96, 160, dtype=torch.bool)
    mask[30:70, :50] = True  # runs off the left edge
    out = deform_masks(batch_of(mask, 16), DeformConfig().only("affine"), seeded(6)) > 0.5
    assert out[:, 45:55, 0].all()


def test_config_checks_and_yaml_lists() -> None:
    assert DeformConfig(coarsen_radius=[0.05, 0.1]).coarsen_radius == (0.05, 0.1)
    with pytest.raises(ValueError):
        DeformConfig(box_prob=1.5)
    with pytest.raises(ValueError):
        DeformConfig(drop_radius=(0.3, 0.1))
    with pytest.raises(ValueError):
        DeformConfig().only("twist")
    only = DeformConfig().only("tps")
    assert [getattr(only, f"{name}_prob") for name in DEFORMATIONS] == [float(name == "tps") for name in DEFORMATIONS]


# ---------------------------------------------------------------- joint augmentation


def square_scene(count: int, size: tuple[int, int] = (96, 128)) -> tuple[torch.Tensor, torch.Tensor]:
    """Grey images with a red square at a corner and its label mask (object 2)."""
    images = torch.full((count, 3, *size), 0.5)
    masks = torch.zeros(count, *size, dtype=torch.uint8)
    images[:, :, 10:40, 80:118] = torch.tensor([0.9, 0.1, 0.1])[:, None, None]
    masks[:, 10:40, 80:118] = 2
    return images, masks


def test_image_and_mask_stay_aligned() -> None:
    images, masks = square_scene(32)
    config = AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0)
    out_images, out_masks = augment_batch(images, masks, (80, 80), config, seeded(1))
    red = (out_images[:, 0] > 0.7) & (out_images[:, 1] < 0.3)
    assert (iou(red.float(), (out_masks == 2).float()) > 0.85).all()


def test_shapes_dtypes_and_labels() -> None:
    images, masks = square_scene(4)
    out_images, out_masks = augment_batch(images, masks, (64, 48), generator=seeded())
    assert out_images.shape == (4, 3, 64, 48) and out_masks.shape == (4, 64, 48)
    assert out_masks.dtype == torch.uint8 and set(out_masks.unique().tolist()) <= {0, 2}
    assert out_images.min() >= 0 and out_images.max() <= 1
    for binary in ((masks > 0).float(), masks > 0):
        _, out = augment_batch(images, binary, (64, 48), generator=seeded())
        assert out.dtype == binary.dtype and set(out.unique().tolist()) <= {0, 1}


def test_augmentation_is_deterministic() -> None:
    images, masks = square_scene(4)
    first = augment_batch(images, masks, (64, 64), generator=seeded(3))
    second = augment_batch(images, masks, (64, 64), generator=seeded(3))
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert not torch.equal(first[0], augment_batch(images, masks, (64, 64), generator=seeded(4))[0])


def test_object_stays_in_view() -> None:
    images, masks = square_scene(64)
    _, out_masks = augment_batch(images, masks, (64, 64), generator=seeded(5))
    visible = (out_masks == 2).flatten(1).float().mean(1)
    assert (visible > 0).float().mean() >= 0.95
    boxes, present = bounding_boxes(out_masks)
    centre = (boxes[:, :2] + boxes[:, 2:] + 1) / 2
    inner = ((centre > 2) & (centre < 62)).all(dim=1) & present
    assert inner.float().mean() >= 0.9


def test_object_zoom_enlarges_small_objects_up_to_its_cap_and_leaves_large_ones() -> None:
    images = torch.rand(64, 3, 120, 160)
    small, large = torch.zeros(64, 120, 160), torch.zeros(64, 120, 160)
    small[:, 50:62, 70:86] = 1  # box spans 0.1 of the frame: zoom up to 3x (not the 0.6 / 0.1 = 6x asked)
    large[:, 10:110, 20:140] = 1  # 0.83 of the frame: already above 0.6, no zoom
    config = AugmentConfig(rotation=0.0, object_zoom=0.6, max_zoom=3.0)
    for masks, zooms in ((small, True), (large, False)):
        _, plain = augment_batch(images, masks, (120, 160), replace(config, object_zoom=0.0), seeded(2))
        _, zoomed = augment_batch(images, masks, (120, 160), config, seeded(2))
        if not zooms:
            assert torch.equal(plain, zoomed)
            continue
        plain_side, side = ((out.flatten(1).mean(1) / (12 * 16 / (120 * 160))).sqrt() for out in (plain, zoomed))  # linear scales
        assert plain_side.max() <= 1.3 and 2.5 < side.max() < 3.1 and side.mean() > 1.5 * plain_side.mean()
    with pytest.raises(ValueError):
        AugmentConfig(object_zoom=0.6, max_zoom=1.0)  # below the scale range's upper bound


def test_flip_alone_mirrors_exactly() -> None:
    images, masks = square_scene(2)
    config = AugmentConfig.off()
    config.hflip_prob = 1.0
    out_images, out_masks = augment_batch(images, masks, (96, 128), config, seeded())
    assert torch.allclose(out_images, images.flip(-1), atol=1e-5) and torch.equal(out_masks, masks.flip(-1))


def test_no_augmentation_is_a_resize() -> None:
    images, masks = square_scene(2)
    same = augment_batch(images, masks, (96, 128), AugmentConfig.off(), seeded())
    assert torch.allclose(same[0], images, atol=1e-5) and torch.equal(same[1], masks)
    half_images, half_masks = augment_batch(images, masks, (48, 64), AugmentConfig.off(), seeded())
    resized_images, resized_masks = resize_pair(images, masks, (48, 64))
    assert (half_images - resized_images).abs().mean() < 0.01 and torch.equal(half_masks, resized_masks)
    stretched = resize_pair(images, (masks > 0).float(), (30, 100))
    assert stretched[0].shape == (2, 3, 30, 100) and stretched[1].dtype == torch.float32


# ---------------------------------------------------------------- pictures and CLI


def test_deform_command_writes_a_grid(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labels = np.zeros((96, 160), np.uint8)
    labels[20:60, 20:70] = 1
    labels[40:80, 100:140] = 2
    write_mask(tmp_path / "mask.png", labels)
    out = tmp_path / "grid.png"
    assert main(["deform", str(tmp_path / "mask.png"), "--out", str(out), "--count", "2", "--show"]) == 0
    with Image.open(out) as picture:
        assert picture.mode == "RGB" and picture.height > 2 * len(ROWS) * 100
    assert "2 object(s)" in capsys.readouterr().out
    assert np.array_equal(np.asarray(Image.open(out)), deformation_sheet(labels, 2, 0))


def test_deform_command_rejects_bad_input(tmp_path: Path) -> None:
    write_mask(tmp_path / "empty.png", np.zeros((32, 32), np.uint8))
    assert main(["deform", str(tmp_path / "empty.png"), "--out", str(tmp_path / "grid.png")]) == 2
    assert main(["deform", str(tmp_path / "missing.png")]) == 2
    assert not (tmp_path / "grid.png").exists()
