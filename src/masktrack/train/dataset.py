"""Training samples from VOS datasets and image/mask folders, and their previous-frame masks.

A sample is one object in one annotated frame. ``--data`` sources of any kind mix freely:
DAVIS 2016/2017 roots (``ROOT`` or ``ROOT:split``, default split ``train``), YouTube-VOS roots
(same, default ``train``) and folders of still images with ``images/`` and ``masks/`` holding
files with matching stems (each still image counts as a one-frame sequence).

Every sample's randomness comes from ``(seed, epoch, sample index)``, never from the process,
so the data a step sees does not depend on the number of processes or data workers. The
loader returns the jointly augmented image and object mask at the training size and a seed for
the deformation of that mask into the previous-frame mask, which :func:`previous_masks` then
applies on the training device after collation. Validation samples are resized, not augmented,
and their deformation seeds do not change between epochs, so validation IoU is comparable over
time and across settings.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from collections.abc import Sequence as SequenceOf
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler
from tqdm import tqdm

from masktrack.augment.deform import DeformConfig, deform_masks
from masktrack.augment.transforms import AugmentConfig, augment_batch, resize_pair
from masktrack.data.masks import read_mask
from masktrack.data.sources import (
    IMAGE_EXTENSIONS,
    open_davis,
    open_youtube_vos,
    read_image,
)
from masktrack.errors import InputError
from masktrack.model.inputs import image_tensor

DEFAULT_SPLIT = "train"


class AnnotatedSequence(Protocol):
    """What training reads from a sequence (``masktrack.data.sources.Sequence`` has it all)."""

    name: str
    annotated: list[int]
    size: tuple[int, int]

    def read_frame(self, index: int) -> np.ndarray: ...

    def read_annotation(self, index: int) -> np.ndarray: ...


@dataclass(frozen=True)
class StillImage:
    """One image of an ``images/`` + ``masks/`` folder, seen as a one-frame annotated sequence."""

    name: str
    image_path: Path
    mask_path: Path
    annotated: tuple[int, ...] = (0,)

    @property
    def size(self) -> tuple[int, int]:
        return self.read_frame(0).shape[:2]

    def read_frame(self, index: int) -> np.ndarray:
        return read_image(self.image_path)

    def read_annotation(self, index: int) -> np.ndarray:
        return read_mask(self.mask_path)


def open_image_folder(root: Path) -> list[StillImage]:
    """The image/mask pairs of a folder with ``images/`` and ``masks/`` (PNG masks, matching stems)."""
    images = {path.stem: path for path in sorted((root / "images").iterdir()) if path.suffix.lower() in IMAGE_EXTENSIONS}
    masks = {path.stem: path for path in sorted((root / "masks").iterdir()) if path.suffix.lower() == ".png"}
    pairs = [StillImage(stem, images[stem], masks[stem]) for stem in sorted(images.keys() & masks.keys())]
    if not pairs:
        raise InputError(f"{root}: no image in images/ has a PNG mask of the same name in masks/")
    return pairs


def open_source(spec: str) -> list[AnnotatedSequence]:
    """The annotated sequences of one ``--data`` source, its kind detected from its layout."""
    root, split = Path(spec), None
    if not root.exists() and ":" in spec:
        head, split = spec.rsplit(":", 1)
        root = Path(head)
    if not root.is_dir():
        raise InputError(f"{root}: data folder not found")
    if (root / "images").is_dir() and (root / "masks").is_dir():
        if split is not None:
            raise InputError(f"{spec}: an images/masks folder has no splits")
        return list(open_image_folder(root))
    if (root / "JPEGImages").is_dir() and (root / "Annotations").is_dir():
        sequences = open_davis(root, split=split or DEFAULT_SPLIT)
    elif any((root / name / "JPEGImages").is_dir() for name in ("train", "valid", "test", split or "")):
        sequences = open_youtube_vos(root, split or DEFAULT_SPLIT)
    else:
        raise InputError(f"{root}: not a DAVIS root, a YouTube-VOS root or a folder with images/ and masks/")
    if not sequences:
        raise InputError(f"{spec}: no sequences")
    return list(sequences)


@dataclass
class SampleIndex:
    """The samples of a list of sequences: ``rows[k] = (sequence, frame, object id)``."""

    sequences: list[AnnotatedSequence]
    rows: np.ndarray  # (N, 3) int64

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, keep: np.ndarray) -> SampleIndex:
        return SampleIndex(self.sequences, self.rows[keep])


def index_samples(sequences: SequenceOf[AnnotatedSequence], progress: bool = True) -> SampleIndex:
    """Every object of every annotated frame (reads each annotation once, on a few threads)."""
    frames = [(s, frame) for s, sequence in enumerate(sequences) for frame in sequence.annotated]

    def objects(item: tuple[int, int]) -> list[tuple[int, int, int]]:
        s, frame = item
        ids = np.unique(sequences[s].read_annotation(frame))
        return [(s, frame, int(i)) for i in ids if i != 0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        found = list(tqdm(pool.map(objects, frames), total=len(frames), desc="index samples", unit="frame",
                          disable=not progress, leave=False))
    rows = np.array([row for rows in found for row in rows], dtype=np.int64).reshape(-1, 3)
    return SampleIndex(list(sequences), rows)


def held_out_names(names: SequenceOf[str], requested: SequenceOf[str], fraction: float, seed: int) -> set[str]:
    """Sequence names to hold out: ``requested`` plus a seeded ``fraction`` of the others.

    Raises InputError for a requested name that no source has.
    """
    unique = sorted(set(names))
    missing = sorted(set(requested) - set(unique))
    if missing:
        raise InputError(f"val_sequences: no sequence named {', '.join(missing)} in the data")
    others = [name for name in unique if name not in requested]
    count = min(len(others) - 1, max(1, round(fraction * len(unique)))) if fraction > 0 else 0
    picked = np.random.default_rng(seed).permutation(len(others))[: max(0, count)]
    return set(requested) | {others[i] for i in picked}


def split_samples(index: SampleIndex, held_out: set[str], max_val: int) -> tuple[SampleIndex, SampleIndex]:
    """Training samples, and at most ``max_val`` evenly spaced validation samples of ``held_out``."""
    is_val = np.array([index.sequences[s].name in held_out for s in index.rows[:, 0]], dtype=bool)
    val = np.flatnonzero(is_val)
    if len(val) > max_val:
        val = val[np.unique(np.linspace(0, len(val) - 1, max_val).round().astype(np.int64))]
    return index.subset(~is_val), index.subset(val)


def sample_seeds(seed: int, index: int, epoch: int | None) -> tuple[int, int]:
    """Augmentation and deformation seeds of one sample (``epoch`` None: validation, fixed)."""
    key = [seed, index] if epoch is None else [seed, index, epoch]
    state = np.random.SeedSequence(key, spawn_key=(0 if epoch is None else 1,)).generate_state(2, np.uint64)
    return int(state[0] >> np.uint64(1)), int(state[1] >> np.uint64(1))


class MaskTrackSamples(Dataset):
    """Samples keyed by ``(epoch, index)``: ``(image (3, H, W) float, mask (H, W) uint8, deform seed)``.

    With an ``augment`` config the frame and mask are jointly augmented to ``size``; without
    one (validation) they are resized and the seeds ignore the epoch.
    """

    def __init__(self, index: SampleIndex, size: tuple[int, int], augment: AugmentConfig | None, seed: int) -> None:
        self.index, self.size, self.augment, self.seed = index, size, augment, seed

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        epoch, position = key
        s, frame, object_id = (int(v) for v in self.index.rows[position])
        sequence = self.index.sequences[s]
        rgb, labels = sequence.read_frame(frame), sequence.read_annotation(frame)
        if rgb.shape[:2] != labels.shape:
            raise InputError(f"{sequence.name}: frame {frame} is {rgb.shape[:2]} but its mask is {labels.shape}")
        mask = torch.from_numpy(labels == object_id).float()
        augment_seed, deform_seed = sample_seeds(self.seed, position, None if self.augment is None else epoch)
        image = image_tensor(rgb, labels.shape, "cpu")
        if self.augment is None:
            image, mask = resize_pair(image, mask[None], self.size)
        else:
            image, mask = augment_batch(image, mask[None], self.size, self.augment, torch.Generator().manual_seed(augment_seed))
        return image[0], (mask[0] >= 0.5).to(torch.uint8), deform_seed


class EpochSampler(DistributedSampler):
    """``DistributedSampler`` yielding ``(epoch, index)`` keys, able to start part-way into an epoch.

    Its shuffled order depends on ``(seed, epoch)`` only and each rank takes every
    ``world_size``-th sample, so consecutive micro-batches across ranks make up the same
    global batches whatever the world size (``drop_last`` keeps them whole).
    """

    def __init__(self, dataset: Dataset, world_size: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.start = 0

    def set_position(self, epoch: int, start: int) -> None:
        """Begin ``epoch`` at this rank's ``start``-th sample."""
        self.set_epoch(epoch)
        self.start = start

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in itertools.islice(super().__iter__(), self.start, None))

    def __len__(self) -> int:
        return self.num_samples - self.start


def previous_masks(masks: torch.Tensor, seeds: torch.Tensor, config: DeformConfig) -> torch.Tensor:
    """Simulated previous-frame masks ``(B, 1, H, W)`` float, deformed from ``(B, H, W)`` object masks.

    Each sample is deformed with its own CPU generator seeded by its sample seed, so a
    sample's deformation depends neither on the rest of its batch nor on the device.
    """
    deformed = []
    for mask, seed in zip(masks, seeds.tolist()):
        generator = torch.Generator().manual_seed(seed)
        deformed.append(deform_masks(mask[None].float(), config, generator))
    return torch.cat(deformed)[:, None]
