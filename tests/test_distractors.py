"""Distractors in online fine-tuning: another object of the video pasted beside, over or behind the target."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from masktrack.augment.distractors import DistractorConfig, draw_distractors, paste_distractors
from masktrack.model import ModelConfig, build_model
from masktrack.online import finetune as finetuning

pytestmark = pytest.mark.usefixtures("one_thread")


def squares(size: tuple[int, int], corners: list[tuple[int, int]], side: int, colour: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, 3, H, W)`` images with one square of colour channel ``colour`` each, and its ``(N, H, W)`` masks."""
    images, masks = torch.zeros(len(corners), 3, *size), torch.zeros(len(corners), *size)
    for k, (y, x) in enumerate(corners):
        images[k, colour, y : y + side, x : x + side] = 1.0
        masks[k, y : y + side, x : x + side] = 1.0
    return images, masks


@pytest.mark.parametrize("front", [1.0, 0.0])
def test_a_pasted_distractor_overlaps_the_target_and_is_never_labelled_as_it(front: float) -> None:
    images, masks = squares((48, 96), [(16, 16)] * 64, 16, colour=0)
    pool_images, pool_masks = squares((48, 96), [(4, 70)], 12, colour=1)
    config = DistractorConfig(probability=1.0, front=front)
    choices = draw_distractors(torch.zeros(64, dtype=torch.long), 1, None, config, torch.Generator().manual_seed(0))
    pasted, targets = paste_distractors(images, masks, pool_images, pool_masks, choices, config, torch.Generator().manual_seed(1))
    distractor = pasted[:, 1] > 0.5
    assert distractor.flatten(1).any(1).float().mean() > 0.9  # every sample got one (some wholly behind the target) ...
    target_box = torch.zeros(48, 96, dtype=torch.bool)
    target_box[16 - 12 : 32 + 12, 16 - 12 : 32 + 12] = True
    assert not (distractor & ~target_box).any()  # ... next to the target
    assert not (distractor & (targets > 0)).any()  # never labelled as the target
    assert ((targets > 0) <= (masks > 0)).all()
    hidden = 1 - targets.flatten(1).sum(1) / masks.flatten(1).sum(1)
    assert (hidden <= 0.5).all()
    if front == 0.0:
        assert torch.equal(targets, masks)  # behind the target: only the background changes
        assert torch.equal(pasted[:, 0], images[:, 0])
    else:
        assert (hidden > 0).sum() > 16  # in front, it often hides part of the target


def test_distractors_are_other_objects_drawn_at_the_configured_rate() -> None:
    generator = torch.Generator().manual_seed(0)
    picks = torch.tensor([0, 1, 2] * 300)
    choices = draw_distractors(picks, 3, picks, DistractorConfig(probability=0.5), generator)
    assert not (choices == picks).any()
    assert 0.4 < (choices >= 0).float().mean() < 0.6
    assert set(choices.tolist()) == {-1, 0, 1, 2}
    assert (draw_distractors(picks, 1, picks, DistractorConfig(), generator) == -1).all()  # no other object
    assert (draw_distractors(picks, 0, None, DistractorConfig(), generator) == -1).all()
    assert (draw_distractors(picks, 3, None, DistractorConfig(probability=0.0), generator) == -1).all()
    with pytest.raises(ValueError, match="distractor"):
        DistractorConfig(probability=1.5)
    with pytest.raises(ValueError, match="distractors"):
        finetuning.FinetuneConfig(distractors=-0.1)


def _tuned(labels: np.ndarray, frame: np.ndarray, distractors: float) -> dict[int, torch.nn.Module]:
    torch.manual_seed(0)
    parent = build_model(ModelConfig(backbone="mobilenet_v2", output_stride=16, head_channels=8))
    config = finetuning.FinetuneConfig(steps=3, batch_size=2, distractors=distractors)
    return finetuning.finetune(parent, [(frame, labels)], config, generator=torch.Generator().manual_seed(0), progress=False)


def _same(first: torch.nn.Module, second: torch.nn.Module) -> bool:
    return all(torch.equal(a, b) for a, b in zip(first.state_dict().values(), second.state_dict().values()))


def test_a_single_object_is_fine_tuned_exactly_as_without_distractors_and_several_objects_differently() -> None:
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[8:24, 8:24, 0] = frame[8:24, 40:56, 1] = 255
    labels = np.zeros((32, 64), np.uint8)
    labels[8:24, 8:24] = 1
    alone, alone_without = _tuned(labels, frame, 0.5), _tuned(labels, frame, 0.0)
    assert _same(alone[1], alone_without[1])  # nothing to paste: the same random draws, the same network
    labels[8:24, 40:56] = 2
    both, both_without = _tuned(labels, frame, 0.5), _tuned(labels, frame, 0.0)
    assert not _same(both[1], both_without[1]) and not _same(both[2], both_without[2])
