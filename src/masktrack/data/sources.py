"""Lazy readers of VOS inputs: DAVIS 2016/2017, YouTube-VOS, frame folders and video files.

Every reader is a :class:`Sequence`: frames are decoded one at a time on demand (a long
video is never held in memory) and annotation masks are read only when asked for. A
sequence holds paths only, so it can be pickled into data-loader workers.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from functools import cached_property
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from masktrack.data.masks import object_ids, read_mask
from masktrack.data.video import VideoDecodeError, probe_video, read_video_frames
from masktrack.errors import InputError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})
MAX_SIZE_MISMATCH = 2  # pixels; a mask this close to the frames' aspect ratio is resized (with a warning)
LOG = logging.getLogger(__name__)  # warnings: one line each (the CLI formats them)


class Sequence(ABC):
    """One video: frames in order plus sparse annotation masks, matched to frames by index.

    ``frame_names`` are the output file stems (``00000``... for video files);
    ``annotated`` lists the frame indices with a mask file; ``fps`` is known for video files.
    """

    fps: float | None = None

    def __init__(self, name: str, frame_names: list[str], annotation_files: dict[int, Path]) -> None:
        self.name = name
        self.frame_names = frame_names
        self.annotation_files = dict(sorted(annotation_files.items()))

    def __len__(self) -> int:
        return len(self.frame_names)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {len(self)} frames, {len(self.annotation_files)} annotated)"

    @property
    @abstractmethod
    def size(self) -> tuple[int, int]:
        """``(H, W)`` of the frames."""

    @abstractmethod
    def frames(self) -> Iterator[np.ndarray]:
        """Every frame in order as ``(H, W, 3)`` uint8 RGB, decoded one at a time."""

    @abstractmethod
    def read_frame(self, index: int) -> np.ndarray:
        """Frame ``index`` as ``(H, W, 3)`` uint8 RGB."""

    @property
    def annotated(self) -> list[int]:
        """Sorted indices of the frames that have a mask file."""
        return list(self.annotation_files)

    def read_annotation(self, index: int) -> np.ndarray:
        """The label mask of annotated frame ``index`` at frame size.

        A mask of another size but the frames' aspect ratio (within ``MAX_SIZE_MISMATCH`` pixels, e.g. a 480p mask of
        a 240p video) is resized (nearest) with a one-line warning; any other shape raises ``InputError``.
        """
        if index not in self.annotation_files:
            raise KeyError(f"{self.name}: frame {index} has no annotation (annotated: {self.annotated})")
        path = self.annotation_files[index]
        labels = read_mask(path)
        height, width = self.size
        if labels.shape == (height, width):
            return labels
        problem = f"mask is {labels.shape[1]}x{labels.shape[0]} but the frames are {width}x{height}"
        if abs(labels.shape[1] * height / labels.shape[0] - width) > MAX_SIZE_MISMATCH:
            raise InputError(f"{path}: {problem} (another aspect ratio)")
        LOG.warning("%s: %s; resized it (nearest)", path, problem)
        return cv2.resize(labels, (width, height), interpolation=cv2.INTER_NEAREST)

    def _check_index(self, index: int) -> None:
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: frame {index} out of range (0..{len(self) - 1})")


class ImageSequence(Sequence):
    """Frames stored as image files (DAVIS, YouTube-VOS, a frame folder)."""

    def __init__(self, name: str, frame_paths: list[Path], annotation_files: dict[int, Path]) -> None:
        super().__init__(name, [path.stem for path in frame_paths], annotation_files)
        self.frame_paths = frame_paths

    @cached_property
    def size(self) -> tuple[int, int]:
        return _image_size(self.frame_paths[0])

    def frames(self) -> Iterator[np.ndarray]:
        for index in range(len(self)):
            yield self.read_frame(index)

    def read_frame(self, index: int) -> np.ndarray:
        self._check_index(index)
        image = read_image(self.frame_paths[index])
        if image.shape[:2] != self.size:
            raise InputError(f"{self.frame_paths[index]}: frame is {image.shape[1]}x{image.shape[0]} but "
                             f"{self.frame_paths[0].name} is {self.size[1]}x{self.size[0]}")
        return image


class VideoSequence(Sequence):
    """Frames decoded from a video file (named ``00000``, ``00001``...).

    A truncated or damaged file (fewer frames in it than its container declares, or frames that do not decode)
    is an InputError, unless ``allow_truncated``: then the frames that decode are kept, with a logged warning.
    """

    def __init__(self, path: Path, masks: list[Path], allow_truncated: bool = False) -> None:
        self.path, self.allow_truncated = path, allow_truncated
        info = probe_video(path)
        if info.present < info.frames:
            self._truncated(f"{info.present} of the {info.frames} frames its container declares are in the file")
        count = min(info.frames, info.present)
        digits = max(5, len(str(count - 1)))
        names = [f"{index:0{digits}d}" for index in range(count)]
        super().__init__(path.stem, names, _match_masks(masks, names, path, by_index=True))
        self.fps = info.fps
        self._size = (info.height, info.width)

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    def frames(self) -> Iterator[np.ndarray]:
        """Decode in order; stops at ``len(self)`` frames (the count comes from the container)."""
        count = 0
        try:
            for count, frame in enumerate(islice(read_video_frames(self.path), len(self)), start=1):
                yield frame
        except VideoDecodeError:
            self._truncated(f"frame {count} does not decode")
            return
        if count < len(self):
            self._truncated(f"only {count} of its {len(self)} frames decode")

    def read_frame(self, index: int) -> np.ndarray:
        """Decodes from the start up to ``index`` (annotated frames are usually early)."""
        self._check_index(index)
        frame = next(islice(read_video_frames(self.path), index, None), None)
        if frame is None:
            raise InputError(f"{self.path}: cannot decode frame {index}")
        return frame

    def _truncated(self, problem: str) -> None:
        """InputError naming the file and ``problem``; with ``allow_truncated`` a warning instead."""
        if not self.allow_truncated:
            raise InputError(f"{self.path}: truncated or damaged video: {problem} "
                             "(--allow-truncated keeps the frames that decode)")
        LOG.warning("%s: truncated or damaged video: %s; keeping the frames that decode", self.path, problem)


def read_image(path: Path) -> np.ndarray:
    """An image file as ``(H, W, 3)`` uint8 RGB; ``InputError`` naming the file when unreadable."""
    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except FileNotFoundError:
        raise InputError(f"{path}: image file not found") from None
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read image ({error})") from None


def _image_size(path: Path) -> tuple[int, int]:
    """``(H, W)`` from the image header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except (OSError, ValueError) as error:
        raise InputError(f"{path}: cannot read image ({error})") from None


def first_appearances(sequence: Sequence, first_frame_only: bool = False) -> dict[int, np.ndarray]:
    """Label masks that introduce objects: ``{frame index: mask of the objects first seen there}``.

    YouTube-VOS semantics: every annotated frame where some id appears for the first time
    contributes a mask holding only those new objects. With ``first_frame_only`` (DAVIS
    semi-supervised protocol) only the first annotated frame is used.
    """
    seen: set[int] = set()
    prompts: dict[int, np.ndarray] = {}
    for index in sequence.annotated[:1] if first_frame_only else sequence.annotated:
        labels = sequence.read_annotation(index)
        new = [object_id for object_id in object_ids(labels) if object_id not in seen]
        if new:
            prompts[index] = np.where(np.isin(labels, new), labels, 0).astype(np.uint8)
            seen.update(new)
    if not prompts:
        where = ", ".join(str(sequence.annotation_files[i]) for i in sequence.annotated[:3]) or "no mask files"
        raise InputError(f"{sequence.name}: no annotated object in its masks ({where})")
    return prompts


# --- constructors ----------------------------------------------------------------------------


def open_input(path: str | Path, masks: list[Path] | None = None, allow_truncated: bool = False) -> list[Sequence]:
    """Open what `masktrack segment` is given: a video file, a folder of frames, a DAVIS-layout
    sequence folder (``JPEGImages/`` + ``Annotations/``) or a DAVIS dataset root.

    ``masks`` are matched to frames by stem (see :func:`open_frame_folder`); for a DAVIS
    folder they replace its ``Annotations/``. ``allow_truncated``: see :class:`VideoSequence`.
    """
    path = Path(path)
    masks = [Path(mask) for mask in masks or []]
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_file():
        return [open_video(path, masks, allow_truncated)]
    images = path / "JPEGImages"
    if not images.is_dir():
        return [open_frame_folder(path, masks)]
    if _image_files(images):
        annotations = path / "Annotations"
        mask_files = masks or (_files_with(annotations, {".png"}) if annotations.is_dir() else [])
        return [_image_sequence(path.name, images, mask_files, by_stem_only=not masks)]
    if masks:
        raise InputError(f"{path}: a dataset root holds several sequences; give masks with one sequence folder")
    return open_davis(path)


def open_frame_folder(folder: str | Path, masks: list[Path] | None = None) -> Sequence:
    """A folder of image frames (natural sort order; stems are the frame names).

    Each mask goes to the frame with its stem; a single mask whose stem matches no frame
    goes to frame 0. Mask files inside the folder are not taken as frames.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: no such folder")
    masks = [Path(mask) for mask in masks or []]
    return _image_sequence(folder.name, folder, masks, exclude={mask.resolve() for mask in masks})


def open_video(path: str | Path, masks: list[Path] | None = None, allow_truncated: bool = False) -> Sequence:
    """A video file (MP4/MOV/AVI/MKV/WEBM... anything PyAV decodes), frames named ``00000``...

    Each mask goes to the frame whose name or integer index is its stem; a single mask
    whose stem matches no frame goes to frame 0. ``allow_truncated``: see :class:`VideoSequence`.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such video file")
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        raise InputError(f"{path}: an image, not a video (give the folder of frames instead)")
    return VideoSequence(path, [Path(mask) for mask in masks or []], allow_truncated)


def open_davis(
    root: str | Path,
    split: str | None = None,
    sequences: list[str] | None = None,
    resolution: str | None = None,
) -> list[Sequence]:
    """Sequences of a DAVIS 2016/2017 root (``JPEGImages/<res>/<seq>/``, ``Annotations/<res>/<seq>/``).

    ``split`` reads ``ImageSets/2017/<split>.txt``, ``ImageSets/<split>.txt`` (a name per line)
    or the official DAVIS 2016 ``ImageSets/<res>/<split>.txt`` (frame paths per line); None means
    every sequence. ``sequences`` selects some of them by name (see :func:`select_sequences`).
    ``resolution`` None picks the only folder under ``JPEGImages``, else ``480p``.
    Binary 0/255 masks (DAVIS 2016) are object 1; annotations may cover only some frames.
    """
    root = Path(root)
    images = root / "JPEGImages"
    if not images.is_dir():
        raise InputError(f"{root}: not a DAVIS root (no JPEGImages folder)")
    resolution = _resolution(images, resolution)
    available = sorted(folder.name for folder in (images / resolution).iterdir() if folder.is_dir())
    names = _split_names(root, resolution, split, available) if split else available
    result = []
    for name in select_sequences(names, sequences, root, split):
        annotations = root / "Annotations" / resolution / name
        if not annotations.is_dir():
            raise InputError(f"{annotations}: missing annotation folder")
        result.append(_image_sequence(name, images / resolution / name, _files_with(annotations, {".png"}), by_stem_only=True))
    return result


def open_youtube_vos(root: str | Path, split: str = "train", sequences: list[str] | None = None) -> list[Sequence]:
    """Sequences of a YouTube-VOS root (``<split>/JPEGImages/<seq>/``, ``<split>/Annotations/<seq>/``).

    ``sequences`` selects some of them by name (see :func:`select_sequences`). Masks are sparse
    and objects may first appear mid-video (see :func:`first_appearances`).
    """
    root = Path(root)
    images = root / split / "JPEGImages"
    if not images.is_dir():
        splits = sorted(folder.parent.name for folder in root.glob("*/JPEGImages"))
        raise InputError(f"{images}: no such folder (splits here: {', '.join(splits) or 'none'})")
    available = sorted(folder.name for folder in images.iterdir() if folder.is_dir())
    result = []
    for name in select_sequences(available, sequences, root, split):
        annotations = root / split / "Annotations" / name
        masks = _files_with(annotations, {".png"}) if annotations.is_dir() else []
        result.append(_image_sequence(name, images / name, masks, by_stem_only=True))
    return result


def select_sequences(names: list[str], wanted: list[str] | None, root: str | Path, split: str | None) -> list[str]:
    """The ``wanted`` sequence names among ``names`` (those of ``split`` of the dataset at ``root``),
    in the dataset's order; all of ``names`` when ``wanted`` is None.

    Raises ``InputError`` naming the root, the split and every wanted name that is not there.
    """
    if wanted is None:
        return names
    present = set(names)
    missing = [name for name in dict.fromkeys(wanted) if name not in present]
    if missing:
        shown = ", ".join(names[:10]) + (", ..." if len(names) > 10 else "")
        raise InputError(f"{root}: no sequence {', '.join(missing)} in {f'split {split}' if split else 'the dataset'} "
                         f"(have {shown or 'none'})")
    chosen = set(wanted)
    return [name for name in names if name in chosen]


# --- helpers ---------------------------------------------------------------------------------


def _image_sequence(name: str, folder: Path, masks: list[Path], by_stem_only: bool = False,
                    exclude: set[Path] = frozenset()) -> ImageSequence:
    frames = [path for path in _image_files(folder) if not exclude or path.resolve() not in exclude]
    if not frames:
        raise InputError(f"{folder}: no image frames ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    names = [path.stem for path in frames]
    if len(set(names)) != len(names):
        duplicate = next(stem for stem in names if names.count(stem) > 1)
        raise InputError(f"{folder}: several frames named {duplicate!r} (different extensions?)")
    return ImageSequence(name, frames, _match_masks(masks, names, folder, single_to_first=not by_stem_only))


def _match_masks(masks: list[Path], frame_names: list[str], source: Path, by_index: bool = False,
                 single_to_first: bool = True) -> dict[int, Path]:
    """Frame index of each mask, by stem (or integer index); a lone unmatched mask is frame 0."""
    lookup = {name: index for index, name in enumerate(frame_names)}
    matched: dict[int, Path] = {}
    for mask in masks:
        if not mask.is_file():
            raise InputError(f"{mask}: mask file not found")
        index = lookup.get(mask.stem)
        if index is None and by_index and mask.stem.isdigit() and int(mask.stem) < len(frame_names):
            index = int(mask.stem)
        if index is None:
            if not (single_to_first and len(masks) == 1):
                raise InputError(f"{mask}: matches no frame of {source} (frames {frame_names[0]}..{frame_names[-1]})")
            index = 0
        if index in matched:
            raise InputError(f"{mask}: frame {frame_names[index]} already has the mask {matched[index]}")
        matched[index] = mask
    return matched


def _image_files(folder: Path) -> list[Path]:
    return sorted(_files_with(folder, IMAGE_EXTENSIONS), key=_natural_key)


def _files_with(folder: Path, extensions: set[str] | frozenset[str]) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.suffix.lower() in extensions and path.is_file()
                  and not path.name.startswith("."))


def _natural_key(path: Path) -> list:
    """``frame2`` before ``frame10``."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _resolution(images: Path, resolution: str | None) -> str:
    choices = sorted(folder.name for folder in images.iterdir() if folder.is_dir())
    if resolution is None:
        if len(choices) == 1:
            return choices[0]
        if "480p" in choices:
            return "480p"
        raise InputError(f"{images}: choose a resolution ({', '.join(choices) or 'none found'})")
    if resolution not in choices:
        raise InputError(f"{images / resolution}: no such resolution (have {', '.join(choices) or 'none'})")
    return resolution


def _split_names(root: Path, resolution: str, split: str, available: list[str]) -> list[str]:
    """Sequence names of ``split`` (validated against the folders; names in files are not trusted)."""
    candidates = [root / "ImageSets" / "2017" / f"{split}.txt", root / "ImageSets" / f"{split}.txt",
                  root / "ImageSets" / resolution / f"{split}.txt"]
    path = next((candidate for candidate in candidates if candidate.is_file()), None)
    if path is None:
        found = sorted({candidate.stem for candidate in (root / "ImageSets").rglob("*.txt")}) if (root / "ImageSets").is_dir() else []
        raise InputError(f"{root}: no split {split!r} in ImageSets (have {', '.join(found) or 'none'})")
    names: list[str] = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        token = line.split()[0]
        name = Path(token).parent.name if "/" in token else token  # DAVIS 2016: /JPEGImages/480p/<seq>/00000.jpg
        if name not in available:
            raise InputError(f"{path}: sequence {name!r} has no folder under JPEGImages/{resolution}")
        if name not in names:
            names.append(name)
    return names
