"""Previous-frame mask simulation: deform a true object mask into a plausible rough mask.

MaskTrack trains on single annotated images by feeding the network a deformed copy of the true
mask as the "previous frame" mask. Following the paper, every mask is by default (a) moved by an
affine jitter of its bounding box (scale up to +-5 %, shift up to +-10 % of the box size) and
(b) warped by a thin-plate spline that moves 5 boundary points by up to +-10 % of the box, then
(c) dilated by a disk (radius 5 px at 480p). Less often the mask is also coarsened (box blur and
threshold), loses a part (a disc bitten out at its boundary), becomes its filled bounding box, or
becomes empty (the object was lost in the previous frame).

All sizes are relative to the object's bounding box, except the dilation radius, which is relative
to the image height, so a 240p mask and a 480p mask deform alike.

Speed (it must never hold training up): the smooth steps (warp, dilation, coarsening, dropped part)
run on a window around each object, as soft coverage of blocks of pixels (an integer factor that
keeps the window near 48k work pixels), so their cost does not grow with the object or the image
and the detail kept is relative to the object. Masks of similar window sizes are processed
together. The affine jitter and the spline compose into one ``grid_sample``, whose grid is
evaluated on a coarse lattice and interpolated linearly (exact for the affine part; the spline is
smooth). The dilation is a few shifted maxima, the coarsening a summed-area table. Each window is
upsampled linearly and thresholded into the output, which keeps boundaries within about a pixel
of a full-resolution computation.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields, replace

import torch
import torch.nn.functional as F

from masktrack.augment.boxes import bounding_boxes
from masktrack.augment.draws import uniform

DEFORMATIONS = ("affine", "tps", "dilate", "coarsen", "drop", "box", "empty")  # drawn together, in this order
REFERENCE_HEIGHT = 480  # the dilation radius is given in pixels at this image height

_WORK_PIXELS = 48_000  # the smooth steps run on windows of about this many work pixels at most
_GRID_STEP = 16  # (a multiple of 4) work pixels between the nodes where the warp is evaluated before upsampling
_BOUNDARY_CELLS = 32  # control points are drawn among the cells of this lattice over the box that the boundary crosses
_TPS_REGULARISATION = 1e-4
_TPS_OVERSHOOT = 1.5  # a spline can move the mask a little further than its control points


@dataclass
class DeformConfig:
    """How previous-frame masks are simulated; every ``*_prob`` is a per-mask probability.

    Sizes are fractions of the object's bounding box (width and height, or ``sqrt(w * h)`` for
    radii), except ``dilate_radius``: pixels at 480p, scaled with the image height.
    """

    affine_prob: float = 1.0
    affine_scale: float = 0.05  # box scaled by a factor in [1 - s, 1 + s] (each axis)
    affine_shift: float = 0.10  # box shifted by up to this fraction of its width / height
    tps_prob: float = 1.0
    tps_points: int = 5  # boundary control points moved by the thin-plate spline
    tps_shift: float = 0.10  # each moved by up to this fraction of the box width / height
    dilate_prob: float = 1.0
    dilate_radius: float = 5.0  # disk radius in pixels at 480p
    coarsen_prob: float = 0.1
    coarsen_radius: tuple[float, float] = (0.04, 0.12)  # box-blur radius range, fraction of sqrt(w * h)
    coarsen_threshold: tuple[float, float] = (0.3, 0.5)  # blurred mask kept above a threshold in this range
    drop_prob: float = 0.1
    drop_radius: tuple[float, float] = (0.15, 0.3)  # radius of the disc removed, fraction of sqrt(w * h)
    box_prob: float = 0.05
    empty_prob: float = 0.02

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                value = tuple(value)
                setattr(self, field.name, value)
            if field.name.endswith("_prob") and not 0.0 <= value <= 1.0:
                raise ValueError(f"{field.name} must be in [0, 1], got {value}")
            if isinstance(value, tuple) and not (len(value) == 2 and 0.0 <= value[0] <= value[1]):
                raise ValueError(f"{field.name} must be a range (low, high) with 0 <= low <= high, got {value}")
        if min(self.affine_scale, self.affine_shift, self.tps_shift, self.dilate_radius) < 0 or self.affine_scale >= 1:
            raise ValueError("affine_scale must be in [0, 1); affine_shift, tps_shift and dilate_radius must be >= 0")
        if self.tps_points < 1:
            raise ValueError(f"tps_points must be >= 1, got {self.tps_points}")

    def only(self, kind: str) -> DeformConfig:
        """This configuration with one deformation always applied and all others off."""
        if kind not in DEFORMATIONS:
            raise ValueError(f"unknown deformation {kind!r}; expected one of {', '.join(DEFORMATIONS)}")
        return replace(self, **{f"{name}_prob": float(name == kind) for name in DEFORMATIONS})

    def dilation_radius(self, height: int) -> float:
        """The dilation disk radius in pixels for images ``height`` pixels tall."""
        return self.dilate_radius * height / REFERENCE_HEIGHT


@dataclass
class _Plan:
    """Per-mask random choices: which steps apply and their parameters relative to the object."""

    flags: torch.Tensor  # (N, len(DEFORMATIONS)) bool: column k says whether DEFORMATIONS[k] applies
    values: torch.Tensor  # (N, 7 + 2K): scale (2), shift (2), coarsen radius and threshold, drop radius, moves (K, 2)

    @classmethod
    def draw(cls, count: int, config: DeformConfig, generator: torch.Generator | None, device: torch.device) -> _Plan:
        draws = uniform((count, len(DEFORMATIONS) + 7 + 2 * config.tps_points), generator, device)
        probabilities = torch.tensor([getattr(config, f"{name}_prob") for name in DEFORMATIONS], device=device)
        flags = draws[:, : len(DEFORMATIONS)] < probabilities
        draws = draws[:, len(DEFORMATIONS) :]
        affine, tps = flags[:, DEFORMATIONS.index("affine"), None], flags[:, DEFORMATIONS.index("tps"), None]
        values = torch.cat(
            [
                torch.where(affine, 1 + (2 * draws[:, 0:2] - 1) * config.affine_scale, 1.0),  # scale
                torch.where(affine, (2 * draws[:, 2:4] - 1) * config.affine_shift, 0.0),  # shift
                _in_range(draws[:, 4:5], config.coarsen_radius),
                _in_range(draws[:, 5:6], config.coarsen_threshold),
                _in_range(draws[:, 6:7], config.drop_radius),
                torch.where(tps, (2 * draws[:, 7:] - 1) * config.tps_shift, 0.0),  # control point moves
            ],
            dim=1,
        )
        return cls(flags, values)

    def __getitem__(self, rows: torch.Tensor) -> _Plan:
        return _Plan(self.flags[rows], self.values[rows])

    def applies(self, *names: str) -> torch.Tensor:
        """(N,) bool: whether any of the named deformations applies to each mask."""
        return functools.reduce(torch.logical_or, (self.flags[:, DEFORMATIONS.index(name)] for name in names))

    @property
    def scale(self) -> torch.Tensor:
        return self.values[:, 0:2]

    @property
    def shift(self) -> torch.Tensor:
        return self.values[:, 2:4]

    @property
    def coarsen_radius(self) -> torch.Tensor:
        return self.values[:, 4]

    @property
    def coarsen_threshold(self) -> torch.Tensor:
        return self.values[:, 5]

    @property
    def drop_radius(self) -> torch.Tensor:
        return self.values[:, 6]

    @property
    def displacement(self) -> torch.Tensor:
        return self.values[:, 7:].unflatten(1, (-1, 2))


_SMOOTH = ("affine", "tps", "dilate", "coarsen", "drop")  # the steps that run on soft work masks
_GROUP_SIZE = 4  # masks deformed together: sorted by window size, so a group's common size wastes little


def _in_range(draws: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    return bounds[0] + draws * (bounds[1] - bounds[0])


def _rows(flag: torch.Tensor) -> torch.Tensor:
    return flag.nonzero().squeeze(1)


def deform_masks(masks: torch.Tensor, config: DeformConfig | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Simulated previous-frame masks: ``(B, H, W)`` float32 in {0, 1} on the masks' device.

    ``masks`` is ``(B, H, W)`` bool, integer or float with values in {0, 1} (non-zero, or >= 0.5
    for floats, is object). Empty masks stay empty. Deterministic given the generator's state.
    """
    config = config or DeformConfig()
    if masks.ndim != 3:
        raise ValueError(f"masks must be (B, H, W), got shape {tuple(masks.shape)}")
    output = torch.zeros(masks.shape, dtype=torch.float32, device=masks.device)
    boxes, present = bounding_boxes(masks)
    plan = _Plan.draw(len(masks), config, generator, masks.device)
    active = present & ~plan.applies("empty")
    smooth, boxed = active & plan.applies(*_SMOOTH), plan.applies("box").tolist()
    rows = _rows(smooth)
    if len(rows):
        margin = _margins(boxes[rows], config, masks.shape[1])
        wanted = torch.minimum(boxes[rows, 2:] - boxes[rows, :2] + 1 + 2 * margin, torch.tensor([masks.shape[2], masks.shape[1]], device=masks.device))
        area = wanted[:, 0] * wanted[:, 1]
        edges = boxes[rows].float() + torch.tensor([-0.5, -0.5, 0.5, 0.5], device=masks.device)
        points = _boundary_points(masks, rows, edges, config.tps_points + 1, generator)
        warp = _Warp.fit(edges, points[:, :-1], plan[rows], _reach(config))
        for group in area.argsort(descending=True, stable=True).split(_GROUP_SIZE):
            factor = max(1, math.ceil(math.sqrt(area[group[0]].item() / _WORK_PIXELS)))
            corner, extent = _windows(boxes[rows[group]], margin[group], masks.shape[1:], factor)
            work = _deform_smooth(masks, rows[group], edges[group], points[group, -1], corner, extent, factor, warp[group], plan[rows[group]], config)
            for soft, row, (x, y), (w, h) in zip(work, rows[group].tolist(), corner.tolist(), extent.tolist()):
                _paste(output[row], x, y, soft[: h // factor, : w // factor], factor, boxed[row])
    for row in _rows(active & ~smooth).tolist():
        if boxed[row]:
            x0, y0, x1, y1 = boxes[row].tolist()
            output[row, y0 : y1 + 1, x0 : x1 + 1] = 1.0
        else:
            output[row] = _binary(masks[row])
    return output


def _paste(image: torch.Tensor, x: int, y: int, soft: torch.Tensor, factor: int, box: bool) -> None:
    """Upsample a soft work window ``factor`` times into ``image`` (H, W) at ``x, y``, thresholded.

    With ``box``, the window's filled bounding box is written instead. A window that ends less
    than a work pixel short of the image's right or bottom edge (it could not grow by a whole one)
    is extended to the edge by repeating its last column or row.
    """
    height, width = soft.shape[0] * factor, soft.shape[1] * factor
    window = image[y : y + height, x : x + width]
    _upsample_into(window, soft, factor)
    window.ge_(0.5)
    if 0 < image.shape[1] - (x + width) < factor:
        image[y : y + height, x + width :] = window[:, -1:]
    if 0 < image.shape[0] - (y + height) < factor:
        image[y + height :, x:] = image[y + height - 1 : y + height, x:]
    if box:
        (box_coords,), (present,) = (value.tolist() for value in bounding_boxes(image[None]))
        x0, y0, x1, y1 = box_coords
        image.zero_()
        image[y0 : y1 + 1, x0 : x1 + 1] = float(present)


def _reach(config: DeformConfig) -> float:
    """How far (fraction of the box size) the warps may move a mask beyond its box."""
    return config.affine_scale / 2 + config.affine_shift + _TPS_OVERSHOOT * config.tps_shift


def _margins(boxes: torch.Tensor, config: DeformConfig, height: int) -> torch.Tensor:
    """Room ``(N, 2)`` (x, y pixels) that every step needs around the objects' boxes (inclusive pixels)."""
    return (_reach(config) * (boxes[:, 2:] - boxes[:, :2] + 1) + config.dilation_radius(height)).ceil().long() + 2


def _windows(boxes: torch.Tensor, margin: torch.Tensor, image_size: tuple[int, int], factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Corners and sizes ``(N, 2)`` (x, y; long) of the windows the objects deform in.

    A window holds its object's box (``boxes``, inclusive pixels) and ``margin`` around it, in
    whole work pixels of ``factor`` image pixels; one that cannot grow that much starts at the
    image's left or top edge.
    """
    height, width = image_size
    size = boxes[:, 2:] - boxes[:, :2] + 1
    limit = torch.tensor([width, height], device=boxes.device)
    wanted = (size + 2 * margin + factor - 1) // factor * factor
    extent = torch.minimum(wanted, limit // factor * factor)
    corner = torch.minimum((boxes[:, :2] - margin).clamp(min=0), limit - extent)
    return torch.where(extent < wanted, 0, corner), extent


def _deform_smooth(
    masks: torch.Tensor,
    rows: torch.Tensor,
    edges: torch.Tensor,
    drop_centre: torch.Tensor,
    corner: torch.Tensor,
    extent: torch.Tensor,
    factor: int,
    warp: _Warp,
    plan: _Plan,
    config: DeformConfig,
) -> torch.Tensor:
    """Warp, dilate, coarsen and bite masks ``rows`` as ``plan`` says; their soft work windows.

    ``edges`` are the objects' box edges, ``drop_centre`` the centres ``(N, 2)`` of the discs that
    may be removed, ``corner`` and ``extent`` the windows (see :func:`_windows`). The work tensor
    holds every window ``factor`` times smaller as soft coverage, padded to a common size by
    repeating its edges: work pixel ``u`` is centred on image pixel ``corner + (u + 0.5) * factor
    - 0.5``; it is returned ``(N, h, w)``, the object wherever it is >= 0.5.
    """
    height = masks.shape[1]
    work_extent = (extent // factor).tolist()
    work_w, work_h = max(w for w, _ in work_extent), max(h for _, h in work_extent)
    work = masks.new_empty((len(rows), work_h, work_w), dtype=torch.float32)
    for soft, row, (x, y), (w, h) in zip(work, rows.tolist(), corner.tolist(), work_extent):
        soft[:h, :w] = _area_downsample(masks[row, y : y + h * factor, x : x + w * factor], factor)
        soft[:h, w:] = soft[:h, w - 1 : w]
        soft[h:] = soft[h - 1 : h]

    def apply(flag: torch.Tensor, step) -> None:
        """Replace the windows of the masks ``flag`` selects by ``step(windows, their rows)``."""
        nonlocal work
        chosen = _rows(flag)
        if len(chosen) == len(work):
            work = step(work, chosen)
        elif len(chosen):
            work.index_copy_(0, chosen, step(work[chosen], chosen))

    def warp_step(soft: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        grid = warp[chosen].grid(corner[chosen].float(), factor, (work_h, work_w))
        return F.grid_sample(soft[:, None], grid, padding_mode="border", align_corners=False)[:, 0]

    object_size = (edges[:, 2:] - edges[:, :2]).prod(dim=1).sqrt() / factor
    coarsen_radius = (plan.coarsen_radius * object_size).round().long().clamp(min=1)
    drop_centre, drop_radius = (drop_centre - corner + 0.5) / factor - 0.5, plan.drop_radius * object_size
    radius = config.dilation_radius(height) / factor
    apply(plan.applies("affine", "tps"), warp_step)
    if radius > 0:
        apply(plan.applies("dilate"), lambda soft, _: dilate_disk(soft, radius))
    apply(plan.applies("coarsen"), lambda soft, chosen: _coarsen(soft, coarsen_radius[chosen], plan.coarsen_threshold[chosen]))
    apply(plan.applies("drop"), lambda soft, chosen: _drop_disc(soft, drop_centre[chosen], drop_radius[chosen]))
    return work


def _area_downsample(mask: torch.Tensor, factor: int) -> torch.Tensor:
    """Soft masks (float32) of ``factor`` x ``factor`` blocks of a mask (sides multiples of ``factor``).

    The value is the object's coverage of the block, boosted by ``factor / 2`` (from 3 up) so that
    structures one pixel thin still reach 0.5 and survive.
    """
    if mask.is_floating_point():
        mask = mask >= 0.5
    elif mask.dtype != torch.bool:
        mask = mask != 0
    mask = mask.view(torch.uint8)
    total = mask[::factor, ::factor].clone()
    for dy in range(factor):
        for dx in range(factor):
            if dy or dx:
                total += mask[dy::factor, dx::factor]
    return total.float().mul_(max(1.0, factor / 2) / factor**2).clamp_(max=1.0)


def _boundary_points(masks: torch.Tensor, rows: torch.Tensor, edges: torch.Tensor, count: int, generator: torch.Generator | None) -> torch.Tensor:
    """``count`` random points ``(N, count, 2)`` (x, y image coordinates) on the boundaries of masks ``rows``.

    Each mask is read on a lattice spanning its box (``edges``: left, top, right, bottom) and one
    pixel more; the boundary cells are those whose corners disagree. Each point is a random point
    of the box moved to the nearest boundary cell, then placed at random within that cell. Being
    drawn relative to the box, the points do not depend on the image resolution.
    """
    height, width = masks.shape[1:]
    steps = torch.linspace(0, 1, _BOUNDARY_CELLS + 1, device=masks.device)
    low, span = edges[:, :2] - 0.5, edges[:, 2:] - edges[:, :2] + 1  # pixel centres one outside the box
    xs = (low[:, 0:1] + steps * span[:, 0:1]).round().long().clamp(0, width - 1)
    ys = (low[:, 1:2] + steps * span[:, 1:2]).round().long().clamp(0, height - 1)
    inside = _binary(masks[rows[:, None, None], ys[:, :, None], xs[:, None, :]])
    corners = inside[:, :-1, :-1] + inside[:, 1:, :-1] + inside[:, :-1, 1:] + inside[:, 1:, 1:]
    boundary = ((corners > 0) & (corners < 4)).flatten(1)
    cell_centres = _cell_centres(masks.device)
    draws = uniform((len(rows), count, 4), generator, masks.device)
    distances = ((draws[..., None, :2] * _BOUNDARY_CELLS - cell_centres) ** 2).sum(dim=-1)
    nearest = distances.masked_fill(~boundary[:, None], math.inf).argmin(dim=2)
    within = cell_centres[nearest] + draws[..., 2:] - 0.5
    return low[:, None] + within * span[:, None] / _BOUNDARY_CELLS


@functools.lru_cache(maxsize=8)
def _cell_centres(device: torch.device) -> torch.Tensor:
    """Centres ``(cells * cells, 2)`` (x, y) of the boundary lattice cells, in cells, row by row."""
    cells = torch.arange(_BOUNDARY_CELLS, device=device, dtype=torch.float32) + 0.5
    return torch.stack(torch.meshgrid(cells, cells, indexing="xy"), dim=-1).reshape(-1, 2)


def _binary(masks: torch.Tensor) -> torch.Tensor:
    """Float32 {0, 1} copies of masks of any dtype (floats: >= 0.5 is object)."""
    return (masks >= 0.5 if masks.is_floating_point() else masks != 0).float()


@dataclass
class _Warp:
    """Each mask's backward warp: the affine box jitter followed by a thin-plate spline.

    The jitter scales the box about its centre and shifts it; the spline then moves boundary
    points by the plan's displacements and stays pinned at the corners of the box grown by the
    masks' reach. The spline is fitted backwards (from the moved points to where they came from),
    so the whole warp is one backward map. Spline coordinates are relative to the box centre, in
    units of its longer side, for a well-conditioned system.
    """

    centre: torch.Tensor  # (N, 1, 2) box centres, image pixels
    unit: torch.Tensor  # (N, 1, 1) box longer sides
    scale: torch.Tensor  # (N, 1, 2)
    shift: torch.Tensor  # (N, 1, 2) image pixels
    centres: torch.Tensor  # (N, P, 2) spline centres, relative
    weights: torch.Tensor  # (N, P + 3, 2) spline weights: radial, then constant, x, y terms

    @classmethod
    def fit(cls, edges: torch.Tensor, points: torch.Tensor, plan: _Plan, reach: float) -> _Warp:
        """The warps of boxes ``edges`` (N, 4) whose spline moves ``points`` (N, K, 2) as ``plan`` says."""
        centre = ((edges[:, :2] + edges[:, 2:]) / 2)[:, None]
        size = edges[:, 2:] - edges[:, :2]
        unit = size.amax(dim=1)[:, None, None]
        shift, displacement = (plan.shift * size)[:, None], plan.displacement * size[:, None]
        moved = centre + plan.scale[:, None] * (points - centre) + shift + displacement
        signs = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0], [1.0, 1.0]], device=edges.device)
        anchors = centre + signs * ((0.5 + reach) * size)[:, None]
        centres = (torch.cat([moved, anchors], dim=1) - centre) / unit
        values = torch.cat([-displacement, torch.zeros_like(anchors)], dim=1) / unit
        count, total = centres.shape[:2]
        system = centres.new_zeros(count, total + 3, total + 3)
        affine = torch.cat([centres.new_ones(count, total, 1), centres], dim=2)
        system[:, :total, :total] = _tps_kernel(centres, centres) + _TPS_REGULARISATION * torch.eye(total, device=edges.device)
        system[:, :total, total:] = affine
        system[:, total:, :total] = affine.transpose(1, 2)
        weights = torch.linalg.solve(system, torch.cat([values, values.new_zeros(count, 3, 2)], dim=1))
        return cls(centre, unit, plan.scale[:, None], shift, centres, weights)

    def __getitem__(self, rows: torch.Tensor) -> _Warp:
        return _Warp(*(getattr(self, field.name)[rows] for field in fields(self)))

    def grid(self, corner: torch.Tensor, factor: int, work_size: tuple[int, int]) -> torch.Tensor:
        """The ``grid_sample`` grid ``(N, h, w, 2)`` warping work windows with corners ``(N, 2)``.

        It is evaluated every ``_GRID_STEP`` work pixels and upsampled linearly (exact for the
        affine part; the spline is smooth).
        """
        work_h, work_w = work_size
        device = corner.device
        nodes_x = torch.arange(0, work_w + _GRID_STEP, _GRID_STEP, device=device, dtype=torch.float32)
        nodes_y = torch.arange(0, work_h + _GRID_STEP, _GRID_STEP, device=device, dtype=torch.float32)
        lattice = torch.stack(torch.meshgrid(nodes_x, nodes_y, indexing="xy"), dim=-1).reshape(1, -1, 2)
        nodes = corner[:, None] + (lattice + 0.5) * factor - 0.5
        relative = (nodes - self.centre) / self.unit
        count, total = self.centres.shape[:2]
        spline = _tps_kernel(relative, self.centres) @ self.weights[:, :total] + relative @ self.weights[:, total + 1 :] + self.weights[:, total : total + 1]
        source = self.centre + (nodes + self.unit * spline - self.centre - self.shift) / self.scale
        normalised = (source - corner[:, None] + 0.5) * torch.tensor([2 / (factor * work_w), 2 / (factor * work_h)], device=device) - 1
        grid = normalised.reshape(count, len(nodes_y), len(nodes_x), 2)
        for dim, size in ((2, work_w), (1, work_h)):
            grid = _refine(_refine(grid, dim, _GRID_STEP // 4), dim, 4).narrow(dim, 0, size)
        return grid


def _refine(nodes: torch.Tensor, dim: int, step: int) -> torch.Tensor:
    """Linear interpolation along ``dim`` between nodes ``step`` samples apart: ``n`` -> ``(n - 1) * step + 1``."""
    length = nodes.shape[dim]
    start, end = nodes.narrow(dim, 0, length - 1), nodes.narrow(dim, 1, length - 1)
    shape = list(start.shape)
    shape.insert(dim + 1, step)
    result = nodes.new_empty(shape)
    for phase in range(step):
        torch.lerp(start, end, phase / step, out=result.select(dim + 1, phase))
    return torch.cat([result.flatten(dim, dim + 1), nodes.narrow(dim, length - 1, 1)], dim=dim)


def _upsample_into(out: torch.Tensor, x: torch.Tensor, factor: int) -> None:
    """Write ``x`` (h, w) upsampled linearly by an integer ``factor`` into ``out`` (h * factor, w * factor).

    Like ``interpolate(..., mode="bilinear", align_corners=False)`` with the edges held: each of
    the ``factor``^2 output phases is two lerps of ``x`` and its neighbours, written in place.
    """
    height, width = x.shape
    padded = torch.cat([x[:1], x, x[-1:]], dim=0)
    padded = torch.cat([padded[:, :1], padded, padded[:, -1:]], dim=1)
    phases = [((phase + 0.5) / factor - 0.5) for phase in range(factor)]  # where each output phase lies, in input pixels
    phased = out.view(height, factor, width, factor)
    for row_phase, row_offset in enumerate(phases):
        neighbour_row = 0 if row_offset < 0 else 2
        rows = torch.lerp(padded[1 : height + 1], padded[neighbour_row : neighbour_row + height], abs(row_offset))
        for col_phase, col_offset in enumerate(phases):
            neighbour_col = 0 if col_offset < 0 else 2
            torch.lerp(rows[:, 1 : width + 1], rows[:, neighbour_col : neighbour_col + width], abs(col_offset), out=phased[:, row_phase, :, col_phase])


def _tps_kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The thin-plate radial basis r^2 log r^2 between point sets ``a`` (N, P, 2) and ``b`` (N, Q, 2)."""
    squared = ((a[:, :, None] - b[:, None]) ** 2).sum(dim=-1)
    return squared * squared.clamp(min=1e-12).log()


def dilate_disk(masks: torch.Tensor, radius: float) -> torch.Tensor:
    """Dilate soft ``(N, h, w)`` masks by a disk of ``radius`` pixels, approximated by an octagon.

    The octagon is a square of half-size ``a`` grown by 3x3 cross steps up to the whole radius;
    ``a = radius * (sqrt(2) - 1)`` makes its diagonal reach match the disk's. A fractional radius
    blends in one more cross step, which moves a soft edge by that fraction of a pixel.
    """
    whole = int(radius)
    half_square = int(whole * (math.sqrt(2) - 1) + 0.5)
    x = masks
    if half_square:
        x = F.max_pool1d(x, 2 * half_square + 1, stride=1, padding=half_square)
        for _ in range(half_square):
            x = _vertical_max(x)
    for _ in range(whole - half_square):
        x = _cross_max(x)
    return torch.lerp(x, _cross_max(x), radius - whole) if radius > whole else x


def _cross_max(x: torch.Tensor) -> torch.Tensor:
    """Each pixel's maximum over itself and its four neighbours, for ``(N, h, w)``."""
    return torch.maximum(F.max_pool1d(x, 3, stride=1, padding=1), _vertical_max(x))


def _vertical_max(x: torch.Tensor) -> torch.Tensor:
    """Each pixel's maximum over itself and the pixels above and below it, for ``(N, h, w)``."""
    if x.shape[1] == 1:
        return x
    pairs = torch.maximum(x[:, :-1], x[:, 1:])
    result = torch.empty_like(x)
    torch.maximum(pairs[:, :-1], pairs[:, 1:], out=result[:, 1:-1])
    result[:, 0], result[:, -1] = pairs[:, 0], pairs[:, -1]
    return result


def _coarsen(masks: torch.Tensor, radius: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Box-blur each mask with its own ``radius`` (N,) and keep where the blur is >= ``threshold`` (N,).

    The blur reads box sums from a summed-area table, so its cost does not depend on the radius.
    """
    count, height, width = masks.shape
    table = F.pad(masks.cumsum(dim=1).cumsum(dim=2), (1, 0, 1, 0)).flatten(1)
    rows = torch.arange(height, device=masks.device)
    cols = torch.arange(width, device=masks.device)
    top, bottom = (rows - radius[:, None]).clamp(0, height), (rows + radius[:, None] + 1).clamp(0, height)
    left, right = (cols - radius[:, None]).clamp(0, width), (cols + radius[:, None] + 1).clamp(0, width)

    def corner(row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
        return table.gather(1, (row[:, :, None] * (width + 1) + col[:, None, :]).flatten(1)).view(count, height, width)

    total = corner(bottom, right) - corner(top, right) - corner(bottom, left) + corner(top, left)
    area = ((bottom - top)[:, :, None] * (right - left)[:, None, :]).float()
    return (total >= threshold[:, None, None] * area).float()


def _drop_disc(masks: torch.Tensor, centre: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Remove a disc (centre (N, 2) x, y; radius (N,)) from each mask, unless that empties it."""
    height, width = masks.shape[1:]
    rows = torch.arange(height, device=masks.device)[None, :, None] - centre[:, 1, None, None]
    cols = torch.arange(width, device=masks.device)[None, None, :] - centre[:, 0, None, None]
    bitten = masks * (rows**2 + cols**2 >= radius[:, None, None] ** 2)
    return torch.where((bitten >= 0.5).flatten(1).any(dim=1)[:, None, None], bitten, masks)

