"""Frame-by-frame MaskTrack propagation of several objects, with streaming input and output.

Each object's mask from the previous frame is the fourth input channel of its network. The
objects sharing one network are batched into a single forward pass per frame. Per-object
probabilities are resized to the frame size (bilinear) and merged into one label mask:

    a pixel is background unless some object's probability exceeds ``threshold`` (by default
    0.4: the networks are conservative at boundaries); otherwise it goes to the object with the highest probability (``argmax`` over
    ``[threshold, p_1, ..., p_K]``, ties to the lowest index, so exactly ``threshold`` stays background).

Where several objects claim a pixel, ``previous_bonus`` favours the one whose previous mask (moved along the
optical flow) held it: each claimant ranks by its probability plus ``previous_bonus`` times its previous mask
there. Objects that look alike and cross then keep their own pixels instead of swapping; a single object's
masks do not change.

Previous masks are dilated by a disk (``dilate_previous``; by default ``DILATION_FACTOR`` times the
training deformations' radius: 10 px at 480p for the shipped model) so that they look like the rough masks the network was trained on: a
network trained on dilated masks shrinks an exact one, and would shrink it a little more every frame.

With ``flow``, the previous masks are first moved along the optical flow from the previous frame
(``masktrack.propagate.flow``), as MaskTrack does, so that fast objects do not outrun their masks.

With ``flip``, each frame also runs mirrored (image and previous masks) in the same batch, and
the two probability maps are averaged: test-time augmentation at twice the compute.

With ``object_zoom``, each small object is segmented in its own zoomed view of the frame, centred
on its previous mask (``masktrack.propagate.zoom``): the network sees it at a size where output
stride 16 still resolves it, at the same cost per object.

With ``motion_models``, each object's probabilities are blended with those of its motion network,
which sees the frame's optical-flow magnitude instead of its colours (``masktrack.propagate.motion``),
MaskTrack's second stream: ``motion_weight`` of the motion network's, the rest the RGB network's.
The blend's mask is carried to the next frame, as MaskTrack+Flow does.

With ``crf``, each frame's probabilities are refined at the network's input size by a local dense
CRF (``masktrack.propagate.crf``), MaskTrack's post-processing, before they are resized and merged.

Vanished objects: an object whose merged mask becomes empty is *lost*. Its prediction is then
accepted only where its probability exceeds ``redetect_confidence`` and only when that confident
region covers at least ``redetect_min_area`` of the frame; otherwise it stays empty. An object can
only leave through the frame's edge: one whose last mask was clear of it (no pixel within ``EDGE_BAND``
of the frame's smaller side) vanished inside the frame, occluded or dropped by the network, and with
``redetect_confidence_inside`` it comes back at that looser confidence instead. Its previous
mask is empty, so a lost object never drags a stale mask along and one that comes back clearly is
picked up again.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from masktrack.augment.deform import REFERENCE_HEIGHT, DeformConfig, dilate_disk
from masktrack.errors import InputError
from masktrack.model.inputs import image_tensor, mask_tensor, processing_size
from masktrack.model.precision import bf16_autocast
from masktrack.model.runtime import RUNTIMES, for_runtime, resolve_runtime
from masktrack.propagate.crf import CRFConfig, refine
from masktrack.propagate.flow import PRESETS as FLOW_PRESETS
from masktrack.propagate.flow import StreamFlow, gray_frame, warp_masks
from masktrack.propagate.motion import motion_image
from masktrack.propagate.zoom import crop_views, object_view, paste_views

BACKGROUND_THRESHOLD = 0.5
DILATION_FACTOR = 2.0  # previous masks are dilated this many times the training deformations' radius (they shrink less)
EDGE_BAND = 0.02  # a mask within this fraction of the frame's smaller side from its edge touches the edge


@dataclass
class PropagateConfig:
    """How masks are carried from frame to frame."""

    size: int | None = None  # network input height (width keeps the aspect ratio); None: the parent's training height
    redetect_confidence: float = 0.9  # a lost object's probability must exceed this to come back
    redetect_confidence_inside: float | None = 0.5  # ... instead this, if its last mask was clear of the edge (None: the same)
    redetect_min_area: float = 0.001  # ... over at least this fraction of the frame
    dilate_previous: float | None = None  # disk radius (px at 480p) of the previous masks; None: DILATION_FACTOR x the training's
    flip: bool = False  # also run the mirrored frame and average the probabilities (test-time augmentation, 2x compute)
    flow: bool = True  # warp the previous masks along optical flow (OpenCV DIS) before the network sees them, as MaskTrack does
    flow_preset: str = "medium"  # DIS preset: ultrafast, fast or medium
    object_zoom: float = 0.6  # zoom each small object's view until its previous box spans this fraction (0: whole frame)
    max_zoom: float = 3.0  # ... by at most this factor
    threshold: float = 0.4  # a pixel is an object's where its probability exceeds this (merge rule above)
    previous_bonus: float = 0.5  # ... and goes, of several such objects, to the highest probability plus this inside its previous mask
    crf: CRFConfig | None = None  # refine each frame's probabilities with a local dense CRF (masktrack.propagate.crf)
    amp: bool = False  # forward passes in bf16 autocast (masktrack.model.precision: faster where bf16 is native)
    runtime: str = "auto"  # what runs the networks: torch, onnxruntime, openvino; auto: the fastest installed (masktrack.model.runtime)

    def __post_init__(self) -> None:
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, got {self.runtime!r}")
        if not 0.0 <= self.object_zoom <= 1.0 or self.max_zoom < 1.0:
            raise ValueError(f"object_zoom must be in [0, 1] and max_zoom >= 1, got {self.object_zoom}, {self.max_zoom}")
        if not 0.0 < self.threshold < 1.0 or self.previous_bonus < 0:
            raise ValueError(f"threshold must be in (0, 1) and previous_bonus >= 0, got {self.threshold}, {self.previous_bonus}")
        if self.flow_preset not in FLOW_PRESETS:
            raise ValueError(f"flow_preset must be one of {', '.join(FLOW_PRESETS)}, got {self.flow_preset!r}")
        for name in ("redetect_confidence", "redetect_confidence_inside"):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {value}")


@dataclass
class FrameResult:
    """One propagated frame: the input image, merged labels and per-object probabilities."""

    index: int
    image: np.ndarray  # (H, W, 3) uint8 RGB
    labels: np.ndarray  # (H, W) uint8, 0 = background
    probabilities: dict[int, torch.Tensor]  # object id -> (H, W) float in [0, 1] (predicted objects only)




def merge_probabilities(probabilities: torch.Tensor, ids: list[int], threshold: float = BACKGROUND_THRESHOLD,
                        previous: torch.Tensor | None = None, previous_bonus: float = 0.0) -> torch.Tensor:
    """Merge ``(K, H, W)`` object probabilities into an ``(H, W)`` uint8 label mask (rule above); ``previous``:
    the objects' ``(K, H, W)`` previous masks in [0, 1], which add ``previous_bonus`` to the rank of their pixels."""
    if len(ids) != probabilities.shape[0]:
        raise ValueError(f"{len(ids)} ids for {probabilities.shape[0]} probability maps")
    if not ids:
        return torch.zeros(probabilities.shape[1:], dtype=torch.uint8, device=probabilities.device)
    best = torch.full_like(probabilities[0], threshold)
    winner = torch.zeros(probabilities.shape[1:], dtype=torch.uint8, device=probabilities.device)
    for k, (object_id, probability) in enumerate(zip(ids, probabilities)):  # strictly greater: ties go to the lower index
        rank = probability
        if previous is not None and previous_bonus > 0:
            rank = torch.where(probability > threshold, probability + previous_bonus * previous[k], probability)
        better = rank > best
        best = torch.where(better, rank, best)
        winner.masked_fill_(better, object_id)
    return winner


def suppress_unconfident(probabilities: torch.Tensor, confidence: float, min_area: float) -> torch.Tensor:
    """Keep a lost object's ``(H, W)`` probabilities only where confident and only if large enough."""
    confident = probabilities > confidence
    if confident.float().mean().item() < min_area:
        return torch.zeros_like(probabilities)
    return probabilities * confident


def touches_edge(mask: torch.Tensor) -> bool:
    """Whether an ``(h, w)`` mask reaches within ``EDGE_BAND`` of the frame's edge, where an object can leave."""
    band = max(1, round(EDGE_BAND * min(mask.shape)))
    return bool((mask > 0).sum() > (mask[band:-band, band:-band] > 0).sum())


def redetect_confidence(last: torch.Tensor | None, config: PropagateConfig) -> float:
    """The confidence a lost object needs to come back, from its ``last`` mask before it was lost."""
    if config.redetect_confidence_inside is None or last is None or not bool(last.any()) or touches_edge(last):
        return config.redetect_confidence
    return config.redetect_confidence_inside






def group_by_network(models: Mapping[int, nn.Module], ids: list[int]) -> list[tuple[nn.Module, list[int]]]:
    """Objects that share a network, so that each network runs once per frame on a batch."""
    groups: dict[int, tuple[nn.Module, list[int]]] = {}
    for object_id in ids:
        model = models[object_id]
        groups.setdefault(id(model), (model, []))[1].append(object_id)
    return list(groups.values())


def predict(
    models: Mapping[int, nn.Module],
    image: torch.Tensor,
    previous: Mapping[int, torch.Tensor],
    dilation: float = 0.0,
    flip: bool = False,
    views: Mapping[int, torch.Tensor] | None = None,
    amp: bool = False,
) -> dict[int, torch.Tensor]:
    """Object probabilities ``(h, w)`` for each id in ``previous``, one forward pass per network.

    ``views`` maps some ids to a zoomed view (``masktrack.propagate.zoom``): those objects' image
    and previous mask are cropped to it, and their probabilities pasted back into the frame.
    The previous masks are dilated by a disk of ``dilation`` pixels (in view pixels). With ``flip``, the
    mirrored image and masks join the batch and the mirrored-back probabilities are averaged in,
    which makes the prediction exactly equivariant to horizontal mirroring. With ``amp`` the networks
    run in bf16 autocast.
    """
    views = views or {}
    probabilities: dict[int, torch.Tensor] = {}
    for model, ids in group_by_network(models, list(previous)):
        masks = torch.stack([previous[i] for i in ids])[:, None]
        images = image.expand(len(ids), -1, -1, -1)
        zoomed = [k for k, i in enumerate(ids) if i in views]
        if zoomed:
            thetas = torch.stack([views[ids[k]] for k in zoomed])
            images, masks = images.clone(), masks.clone()
            images[zoomed] = crop_views(images[zoomed], thetas)
            masks[zoomed] = crop_views(masks[zoomed], thetas, mode="nearest")
        masks = dilate_disk(masks[:, 0], dilation)[:, None] if dilation > 0 else masks
        if flip:
            images, masks = torch.cat([images, images.flip(-1)]), torch.cat([masks, masks.flip(-1)])
        with bf16_autocast(image.device, amp):
            logits = model(images, masks)
        object_probability = logits.float().softmax(dim=1)[:, 1]
        if flip:
            direct, mirrored = object_probability.chunk(2)
            object_probability = (direct + mirrored.flip(-1)) / 2
        if zoomed:
            object_probability[zoomed] = paste_views(object_probability[zoomed], thetas)
        probabilities.update(zip(ids, object_probability))
    return probabilities


def frame_probabilities(
    probabilities: Mapping[int, torch.Tensor], ids: list[int], image: torch.Tensor, frame_size: tuple[int, int],
    lost: Mapping[int, float], config: PropagateConfig,
) -> dict[int, torch.Tensor]:
    """Network-size probabilities -> frame-size ones: CRF-refined against ``image`` when configured, resized, and
    lost objects' ones suppressed below the confidence each needs (``lost``: id -> confidence)."""
    stack = torch.stack([probabilities[i] for i in ids])
    if config.crf is not None:
        stack = refine(stack, image, config.crf)
    if tuple(stack.shape[-2:]) != tuple(frame_size):
        stack = F.interpolate(stack[None], size=frame_size, mode="bilinear", align_corners=False)[0]
    full = dict(zip(ids, stack))
    for object_id in lost.keys() & set(ids):
        full[object_id] = suppress_unconfident(full[object_id], lost[object_id], config.redetect_min_area)
    return full


def warp_previous(previous: Mapping[int, torch.Tensor], flow: np.ndarray) -> dict[int, torch.Tensor]:
    """Previous masks moved along the backward ``flow``, kept binary (threshold 0.5)."""
    ids = list(previous)
    warped = warp_masks(torch.stack([previous[i] for i in ids]), flow)
    return dict(zip(ids, (warped >= 0.5).float()))


class Propagator:
    """Propagation state carried from frame to frame: each object's previous mask, the lost objects and the
    optical-flow stream. :meth:`step` segments the next frame; :meth:`add_objects` brings in new objects' networks."""

    def __init__(
        self,
        models: Mapping[int, nn.Module],
        config: PropagateConfig,
        device: torch.device | str = "cpu",
        motion_models: Mapping[int, nn.Module] | None = None,
        motion_weight: float = 0.0,
    ) -> None:
        self.config, self.device, self.motion_weight = config, device, motion_weight
        self.runtime = resolve_runtime(config.runtime, str(device), config.amp)
        self.models: dict[int, nn.Module] = {}
        self.motion_models: dict[int, nn.Module] | None = {} if motion_weight > 0 else None
        self.add_objects(models, motion_models)
        default = DILATION_FACTOR * DeformConfig().dilate_radius
        self.dilation = default if config.dilate_previous is None else config.dilate_previous
        self.previous: dict[int, torch.Tensor] = {}  # object id -> (h, w) previous mask at network size
        self.lost: dict[int, float] = {}  # lost object id -> the confidence it needs to come back
        self.flow_stream = StreamFlow(config.flow_preset) if config.flow or self.motion_models is not None else None
        self.index = 0
        self.outputs_checked = False  # whether the networks' first output was finite (checked once: cheap)

    def add_objects(self, models: Mapping[int, nn.Module], motion_models: Mapping[int, nn.Module] | None = None) -> None:
        """Networks (and motion networks, when the motion stream is on) for objects given from now on."""
        if motion_models and self.motion_models is None:
            raise ValueError("motion networks given with motion_weight 0")
        self.models.update(for_runtime(models, self.runtime))
        if motion_models:
            self.motion_models.update(for_runtime(motion_models, self.runtime))

    @torch.inference_mode()
    def step(self, image: np.ndarray, given: np.ndarray | None = None) -> FrameResult:
        """Segment the next frame ``(H, W, 3)`` uint8 RGB; ``given``: a label mask of objects given at this frame,
        painted over the predictions (its objects' networks must have been added)."""
        frame_size = image.shape[:2]
        size = processing_size(frame_size, self.config.size)
        flow = self.flow_stream.backward_flow(gray_frame(image, size)) if self.flow_stream is not None else None
        if self.previous and flow is not None and self.config.flow:
            self.previous = warp_previous(self.previous, flow)
        full = self._probabilities(image, size, flow) if self.previous else {}
        ids = list(full)
        labels = self._merge(full, ids, frame_size)
        new_ids: list[int] = []
        if given is not None:
            given_tensor = torch.as_tensor(given, device=self.device).to(torch.uint8)
            labels = torch.where(given_tensor > 0, given_tensor, labels)
            new_ids = [int(i) for i in torch.unique(given_tensor).tolist() if i != 0]
            unknown = [i for i in new_ids if i not in self.models]
            if unknown:
                raise ValueError(f"frame {self.index}: no network for object ids {unknown}")
        self._carry(labels, [*ids, *(i for i in new_ids if i not in full)], size)
        self.index += 1
        return FrameResult(index=self.index - 1, image=image, labels=labels.cpu().numpy(), probabilities=full)

    def _merge(self, full: Mapping[int, torch.Tensor], ids: list[int], frame_size: tuple[int, int]) -> torch.Tensor:
        """The frame's labels from its objects' probabilities; several objects' previous masks (flow-warped) break
        their rivalries (``previous_bonus``)."""
        if not ids:
            return torch.zeros(frame_size, dtype=torch.uint8, device=self.device)
        previous = None
        if len(ids) > 1 and self.config.previous_bonus > 0:
            previous = F.interpolate(torch.stack([self.previous[i] for i in ids])[None], size=frame_size, mode="bilinear",
                                     align_corners=False)[0]
        return merge_probabilities(torch.stack([full[i] for i in ids]), ids, self.config.threshold, previous,
                                   self.config.previous_bonus)

    def _probabilities(self, image: np.ndarray, size: tuple[int, int], flow: np.ndarray | None) -> dict[int, torch.Tensor]:
        """Frame-size probabilities of the tracked objects: RGB networks, blended with the motion stream's."""
        config = self.config
        views = {i: view for i, mask in self.previous.items()
                 if (view := object_view(mask, config.object_zoom, config.max_zoom)) is not None} if config.object_zoom else None
        network_image = image_tensor(image, size, self.device)
        dilation = self.dilation * size[0] / REFERENCE_HEIGHT
        small = predict(self.models, network_image, self.previous, dilation, config.flip, views, config.amp)
        if self.motion_models is not None and flow is not None:
            missing = sorted(set(self.previous) - set(self.motion_models))
            if missing:
                raise ValueError(f"frame {self.index}: no motion network for object ids {missing}")
            motion = predict(self.motion_models, image_tensor(motion_image(flow), size, self.device), self.previous,
                             dilation, config.flip, views, config.amp)
            small = {i: (1 - self.motion_weight) * small[i] + self.motion_weight * motion[i] for i in small}
        if not self.outputs_checked:
            self._check_finite(small)
        return frame_probabilities(small, list(small), network_image[0], image.shape[:2], self.lost, config)

    def _check_finite(self, probabilities: Mapping[int, torch.Tensor]) -> None:
        """InputError unless the networks' first probabilities are finite (else every later frame would be garbage)."""
        if not all(bool(torch.isfinite(value).all()) for value in probabilities.values()):
            raise InputError(f"frame {self.index}: the network's output is not finite (NaN or infinite): its weights "
                             "are broken or fine-tuning diverged (try a lower finetune lr)")
        self.outputs_checked = True

    def _carry(self, labels: torch.Tensor, ids: list[int], size: tuple[int, int]) -> None:
        """Each object's mask in ``labels`` becomes its previous mask; an object with none is lost (module docstring)."""
        for object_id in ids:
            hard = labels == object_id
            if bool(hard.any()):
                self.lost.pop(object_id, None)
                self.previous[object_id] = mask_tensor(hard, size, self.device)
                continue
            if object_id not in self.lost:
                self.lost[object_id] = redetect_confidence(self.previous.get(object_id), self.config)
            self.previous[object_id] = torch.zeros(size, device=self.device)


def propagate(
    frames: Iterable[np.ndarray],
    models: Mapping[int, nn.Module],
    appearances: Mapping[int, np.ndarray],
    config: PropagateConfig,
    device: torch.device | str = "cpu",
    motion_models: Mapping[int, nn.Module] | None = None,
    motion_weight: float = 0.0,
) -> Iterator[FrameResult]:
    """Segment a stream of frames, yielding one :class:`FrameResult` per frame as it is decoded.

    ``models`` maps each object id to its (fine-tuned) network; ``appearances`` maps a frame index to the label
    mask of the objects first given at that frame, used as-is at its frame, painted over the predictions of the
    objects already tracked. ``motion_models`` (same ids) are the objects' motion networks, given ``motion_weight``.
    Only the previous frame's state is kept, so memory does not grow with the video's length.
    """
    propagator = Propagator(models, config, device, motion_models, motion_weight)
    for index, image in enumerate(frames):
        yield propagator.step(image, appearances.get(index))
