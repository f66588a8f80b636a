"""Data layer: mask formats, video decoding/writing/overlays, lazy sequence readers."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from PIL import Image

from masktrack.data.masks import DAVIS_PALETTE, object_ids, read_mask, write_mask
from masktrack.data.sources import (
    first_appearances,
    open_davis,
    open_frame_folder,
    open_input,
    open_video,
    open_youtube_vos,
    select_sequences,
)
from masktrack.data.video import VideoWriter, overlay, probe_video, read_video_frames
from masktrack.errors import InputError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DAVIS2016 = SHARED_DATA / "davis2016"
JUDO = SHARED_DATA / "judo-new-objects"
SIZE = (36, 50)  # (H, W) of generated frames


def _frames(count: int, size: tuple[int, int] = SIZE, seed: int = 0) -> list[np.ndarray]:
    """Smooth random frames (compress well, so decoded video stays close to them)."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[: size[0], : size[1]]
    frames = []
    for _ in range(count):
        a, b, c = rng.uniform(0.05, 0.2, 3)
        phase = rng.uniform(0, 6, 3)
        frames.append(np.stack([127 + 100 * np.sin(a * xs + b * ys + p) for p in phase], -1).astype(np.uint8))
    return frames


def _labels(ids: list[int], size: tuple[int, int] = SIZE) -> np.ndarray:
    """A label mask with one rectangle per id."""
    labels = np.zeros(size, np.uint8)
    for slot, object_id in enumerate(ids):
        labels[4 + 8 * slot : 10 + 8 * slot, 5 : 20 + 3 * slot] = object_id
    return labels


def _save_frames(folder: Path, frames: list[np.ndarray], names: list[str], suffix: str = ".png") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}{suffix}" for name in names]
    for path, frame in zip(paths, frames):
        Image.fromarray(frame).save(path)
    return paths


def _write_video(path: Path, frames: list[np.ndarray], fps: int = 10, rotation: int = 0) -> Path:
    """A video written with PyAV directly (optionally with a display rotation)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264" if "libx264" in av.codecs_available else "mpeg4", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


# --- masks -----------------------------------------------------------------------------------


def test_palette_round_trip(tmp_path: Path) -> None:
    labels = np.random.default_rng(0).integers(0, 255, (20, 30)).astype(np.uint8)  # ids 0..254
    write_mask(tmp_path / "m.png", labels)
    with Image.open(tmp_path / "m.png") as image:
        assert image.mode == "P"
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png"), labels)


@pytest.mark.parametrize("value", [255, 1, 128])
def test_binary_greyscale_is_object_one(tmp_path: Path, value: int) -> None:
    labels = _labels([1])
    Image.fromarray(labels * value).save(tmp_path / "b.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "b.png"), labels)


def test_binary_palette_255_and_rgb_white_are_object_one(tmp_path: Path) -> None:
    labels = _labels([1])
    image = Image.fromarray(labels * 255, mode="P")
    image.putpalette(DAVIS_PALETTE.ravel().tolist())
    image.save(tmp_path / "p.png")
    Image.fromarray(np.repeat(labels[..., None] * 255, 3, -1)).save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), labels)
    np.testing.assert_array_equal(read_mask(tmp_path / "rgb.png"), labels)


def test_palette_void_is_background(tmp_path: Path) -> None:
    labels = _labels([0, 2])
    write_mask(tmp_path / "void.png", np.where(_labels([1]) > 0, 255, labels).astype(np.uint8))
    np.testing.assert_array_equal(read_mask(tmp_path / "void.png"), labels)


def test_greyscale_id_map_keeps_ids_and_soft_mask_is_refused(tmp_path: Path) -> None:
    labels = _labels([1, 2, 3])
    Image.fromarray(labels).save(tmp_path / "ids.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "ids.png"), labels)
    soft = np.linspace(0, 255, 36 * 50).reshape(SIZE).astype(np.uint8)
    Image.fromarray(soft).save(tmp_path / "soft.png")
    with pytest.raises(InputError, match="soft.png: greyscale mask"):
        read_mask(tmp_path / "soft.png")


def test_colour_coded_rgb(tmp_path: Path) -> None:
    labels = _labels([2, 7, 1])
    rgb = DAVIS_PALETTE[labels].copy()
    rgb[labels == 1] = (10, 200, 30)  # not a DAVIS colour: gets the first free id in raster order
    Image.fromarray(rgb).save(tmp_path / "c.png")
    expected = labels.copy()
    expected[labels == 1] = 1
    np.testing.assert_array_equal(read_mask(tmp_path / "c.png"), expected)
    rgba = np.dstack([DAVIS_PALETTE[labels], np.full(SIZE, 255, np.uint8)])
    rgba[labels == 7, 3] = 0  # transparent: background
    Image.fromarray(rgba).save(tmp_path / "a.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "a.png"), np.where(labels == 7, 0, labels))


@pytest.mark.parametrize("encoder", ["pillow", "opencv", "pillow-optimize"])
def test_fast_decoded_pngs_read_as_pillow_decodes_them(tmp_path: Path, encoder: str) -> None:
    """8-bit grey and palette PNGs go through the fast decoder (None, Sub or mixed row filters);
    the labels are those of the Pillow path, in a writable array."""
    labels = _labels([1, 2, 3])
    cases = {"binary": (labels > 0).astype(np.uint8) * 255, "ids": labels, "wide": np.tile(labels, (3, 9))}
    for name, values in cases.items():
        path = tmp_path / f"{name}.png"
        if encoder == "opencv":
            cv2.imwrite(str(path), values)
        else:
            Image.fromarray(values).save(path, optimize=encoder == "pillow-optimize")
        expected = (values > 0).astype(np.uint8) if name == "binary" else values
        read = read_mask(path)
        np.testing.assert_array_equal(read, expected)
        read[0, 0] = 9  # callers may edit what they read
    write_mask(tmp_path / "p.png", labels)
    np.testing.assert_array_equal(read_mask(tmp_path / "p.png"), labels)
    Image.fromarray(np.dstack([labels, np.full(SIZE, 255, np.uint8)]), mode="LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_mask(tmp_path / "la.png"), labels)  # grey with alpha: Pillow


def test_bad_masks(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing.png: mask file not found"):
        read_mask(tmp_path / "missing.png")
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="junk.png: cannot read"):
        read_mask(tmp_path / "junk.png")
    with pytest.raises(ValueError):
        write_mask(tmp_path / "x.png", np.zeros((2, 2, 3)))
    with pytest.raises(ValueError):
        write_mask(tmp_path / "x.png", np.full((2, 2), 300))


# --- video -----------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", ["h264", "mpeg4"])
def test_video_writer_round_trip_with_odd_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, codec: str) -> None:
    if codec == "mpeg4":  # the fallback when PyAV has no libx264
        monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libx264"})
    frames = _frames(6, size=(35, 47))
    path = tmp_path / "out.mp4"
    with VideoWriter(path, fps=12.5) as writer:
        for frame in frames:
            writer.write(frame)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == codec
    info = probe_video(path)
    assert (info.frames, info.height, info.width, info.fps) == (6, 36, 48, 12.5)  # padded to even
    decoded = list(read_video_frames(path))
    assert len(decoded) == 6
    error = np.abs(np.stack(decoded)[:, :35, :47].astype(int) - np.stack(frames)).mean()
    assert error < 6


def test_video_writer_is_atomic(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), VideoWriter(tmp_path / "a.mp4") as writer:
        writer.write(_frames(1)[0])
        raise RuntimeError("interrupted")
    with pytest.raises(ValueError, match="no frames"), VideoWriter(tmp_path / "b.mp4"):
        pass
    with pytest.raises(ValueError, match="differs"), VideoWriter(tmp_path / "c.mp4") as writer:
        writer.write(_frames(1)[0])
        writer.write(_frames(1, size=(20, 20))[0])
    assert list(tmp_path.iterdir()) == []


def test_probe_counts_packets_when_the_container_has_no_count(tmp_path: Path) -> None:
    with VideoWriter(tmp_path / "v.mkv", fps=10) as writer:
        for frame in _frames(7):
            writer.write(frame)
    with av.open(str(tmp_path / "v.mkv")) as container:
        assert container.format.name.startswith("matroska") and container.streams.video[0].frames == 0
    assert probe_video(tmp_path / "v.mkv").frames == 7 == len(list(read_video_frames(tmp_path / "v.mkv")))


def test_rotated_video_is_decoded_upright(tmp_path: Path) -> None:
    frame = np.zeros((32, 48, 3), np.uint8)
    frame[:16, :16] = 255  # top-left block
    path = _write_video(tmp_path / "rot.mp4", [frame] * 2, rotation=90)  # shown turned 90° counter-clockwise
    info = probe_video(path)
    assert (info.height, info.width) == (48, 32)
    upright = next(read_video_frames(path))
    assert upright.shape == (48, 32, 3) and upright[40, 4].mean() > 200 and upright[4, 4].mean() < 50


def test_bad_videos(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing.mp4: video file not found"):
        probe_video(tmp_path / "missing.mp4")
    (tmp_path / "junk.mp4").write_bytes(b"\x00" * 1000)
    with pytest.raises(InputError, match="junk.mp4: cannot read video"):
        open_video(tmp_path / "junk.mp4")


def test_overlay_tints_objects_and_draws_contours() -> None:
    image = np.full((*SIZE, 3), 100, np.uint8)
    labels = _labels([1, 2])
    result = overlay(image, labels, alpha=0.5)
    assert result.shape == image.shape and result.dtype == np.uint8
    np.testing.assert_array_equal(result[labels == 0], image[labels == 0])
    inside, edge = (6, 10), (4, 10)  # object 1 spans rows 4..9
    np.testing.assert_array_equal(result[inside], np.rint(0.5 * 100 + 0.5 * DAVIS_PALETTE[1].astype(float)))
    np.testing.assert_array_equal(result[edge], DAVIS_PALETTE[1])
    with pytest.raises(ValueError):
        overlay(image, labels[:-1])


# --- sources ---------------------------------------------------------------------------------


def test_frame_folder(tmp_path: Path) -> None:
    frames = _frames(12)
    names = [f"frame{index}" for index in range(12)]
    folder = tmp_path / "clip"
    _save_frames(folder, frames, names)
    mask_a, mask_b = folder / "m" / "frame0.png", folder / "m" / "frame10.png"
    mask_a.parent.mkdir()
    write_mask(mask_a, _labels([1]))
    write_mask(mask_b, _labels([1, 2]))
    sequence = open_frame_folder(folder, [mask_b, mask_a])
    assert sequence.name == "clip" and len(sequence) == 12 and sequence.size == SIZE and sequence.fps is None
    assert sequence.frame_names == names  # natural order: frame2 before frame10
    assert sequence.annotated == [0, 10]
    np.testing.assert_array_equal(sequence.read_frame(10), frames[10])
    assert sequence.read_frame(0).flags.writeable and sequence.read_annotation(0).flags.writeable
    np.testing.assert_array_equal(np.stack(list(sequence.frames())), np.stack(frames))
    prompts = first_appearances(sequence)
    assert sorted(prompts) == [0, 10] and object_ids(prompts[10]) == [2]
    np.testing.assert_array_equal(prompts[10], np.where(_labels([1, 2]) == 2, 2, 0))
    assert list(first_appearances(sequence, first_frame_only=True)) == [0]


def test_masks_inside_the_frame_folder_are_not_frames(tmp_path: Path) -> None:
    _save_frames(tmp_path, _frames(3), ["a", "b", "c"], suffix=".jpg")
    write_mask(tmp_path / "b.png", _labels([1]))
    sequence = open_frame_folder(tmp_path, [tmp_path / "b.png"])
    assert sequence.frame_names == ["a", "b", "c"] and sequence.annotated == [1]


def test_mask_matching(tmp_path: Path) -> None:
    folder = tmp_path / "clip"
    _save_frames(folder, _frames(4), ["00000", "00001", "00002", "00003"])
    write_mask(tmp_path / "first.png", _labels([1]))
    write_mask(tmp_path / "00002.png", _labels([2]))
    assert open_frame_folder(folder, [tmp_path / "first.png"]).annotated == [0]  # a lone mask: frame 0
    with pytest.raises(InputError, match="first.png: matches no frame"):
        open_frame_folder(folder, [tmp_path / "first.png", tmp_path / "00002.png"])
    with pytest.raises(InputError, match="nope.png: mask file not found"):
        open_frame_folder(folder, [tmp_path / "nope.png"])


def test_annotation_size_checks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "clip"
    _save_frames(folder, _frames(3), ["0", "1", "2"])
    labels = _labels([1])
    write_mask(tmp_path / "0.png", labels[:, :-1])  # one column short
    write_mask(tmp_path / "1.png", labels[:-5])
    write_mask(tmp_path / "2.png", np.zeros(SIZE, np.uint8))
    sequence = open_frame_folder(folder, [tmp_path / "0.png", tmp_path / "1.png", tmp_path / "2.png"])
    with caplog.at_level(logging.WARNING, logger="masktrack"):
        resized = sequence.read_annotation(0)
    assert "0.png: mask is 49x36 but the frames are 50x36" in caplog.text
    assert resized.shape == SIZE and (resized == labels).mean() > 0.98  # stretched by one column
    with pytest.raises(InputError, match="1.png: mask is 50x31"):
        sequence.read_annotation(1)
    empty = open_frame_folder(folder, [tmp_path / "2.png"])
    with pytest.raises(InputError, match="clip: no annotated object"):
        first_appearances(empty)


def test_bad_frame_folders(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="missing: no such"):
        open_input(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="empty: no image frames"):
        open_input(tmp_path / "empty")
    folder = tmp_path / "clip"
    paths = _save_frames(folder, _frames(2), ["0", "1"])
    _save_frames(folder, _frames(1, size=(10, 10)), ["2"])
    (folder / "3.jpg").write_bytes(b"broken")
    sequence = open_frame_folder(folder)
    with pytest.raises(InputError, match="2.png: frame is 10x10 but 0.png is 50x36"):
        sequence.read_frame(2)
    with pytest.raises(InputError, match="3.jpg: cannot read image"):
        sequence.read_frame(3)
    Image.fromarray(_frames(1)[0]).save(paths[0].with_suffix(".jpg"))
    with pytest.raises(InputError, match="several frames named '0'"):
        open_frame_folder(folder)


def test_video_source(tmp_path: Path) -> None:
    frames = [np.full((*SIZE, 3), 20 * index, np.uint8) for index in range(8)]
    path = _write_video(tmp_path / "clip.mp4", frames, fps=10)
    write_mask(tmp_path / "first.png", _labels([1]))
    write_mask(tmp_path / "5.png", _labels([2]))
    write_mask(tmp_path / "00003.png", _labels([3]))
    assert open_video(path, [tmp_path / "first.png"]).annotated == [0]
    with pytest.raises(InputError, match="first.png: matches no frame"):
        open_video(path, [tmp_path / "first.png", tmp_path / "5.png"])
    [sequence] = open_input(path, [tmp_path / "5.png", tmp_path / "00003.png"])
    assert sequence.name == "clip" and len(sequence) == 8 and sequence.size == SIZE and sequence.fps == 10
    assert sequence.frame_names == [f"{index:05d}" for index in range(8)] and sequence.annotated == [3, 5]
    decoded = list(sequence.frames())
    assert [int(round(frame.mean())) for frame in decoded] == pytest.approx([20 * i for i in range(8)], abs=3)
    np.testing.assert_array_equal(sequence.read_frame(5), decoded[5])
    assert sorted(first_appearances(sequence)) == [3, 5]
    with pytest.raises(InputError, match="an image, not a video"):
        open_input(tmp_path / "first.png")


def test_davis_sequence_folder_and_root(tmp_path: Path, synthetic_davis: Path) -> None:
    folder = tmp_path / "seq"
    _save_frames(folder / "JPEGImages", _frames(4), ["00000", "00001", "00002", "00003"], suffix=".jpg")
    (folder / "Annotations").mkdir()
    write_mask(folder / "Annotations" / "00000.png", _labels([1]))
    write_mask(folder / "Annotations" / "00002.png", _labels([2]))
    [sequence] = open_input(folder)
    assert sequence.name == "seq" and sequence.annotated == [0, 2]
    write_mask(tmp_path / "given.png", _labels([4]))
    [given] = open_input(folder, [tmp_path / "given.png"])  # given masks replace Annotations/
    assert given.annotated == [0] and object_ids(given.read_annotation(0)) == [4]
    assert [s.name for s in open_input(synthetic_davis)] == [f"synth-{i:03d}" for i in range(4)]


def test_open_davis_2017_layout(synthetic_davis: Path) -> None:
    train = open_davis(synthetic_davis, split="train")
    assert [s.name for s in train] == ["synth-000", "synth-001", "synth-002"]
    [val] = open_davis(synthetic_davis, split="val", resolution="96p")
    assert len(val) == 12 and val.size == (96, 128) and val.annotated == list(range(12))
    [appearing] = open_davis(synthetic_davis, sequences=["synth-001"])
    prompts = first_appearances(appearing)
    assert len(prompts) == 2 and min(prompts) == 0 and max(prompts) > 0  # one object appears mid-video
    assert len(first_appearances(appearing, first_frame_only=True)) == 1
    with pytest.raises(InputError, match="no split 'test'.*train, val"):
        open_davis(synthetic_davis, split="test")
    with pytest.raises(InputError, match="480p: no such resolution .have 96p"):
        open_davis(synthetic_davis, resolution="480p")
    with pytest.raises(InputError, match="no sequence bear"):
        open_davis(synthetic_davis, split="train", sequences=["bear"])


def _davis2016_root(root: Path) -> Path:
    """A tiny DAVIS 2016 root: binary 0/255 masks, two resolutions, official frame-list ImageSets."""
    for resolution, size in (("480p", SIZE), ("1080p", (72, 100))):
        for name in ("bear", "cows"):
            _save_frames(root / "JPEGImages" / resolution / name, _frames(3, size), ["00000", "00001", "00002"], ".jpg")
            masks = root / "Annotations" / resolution / name
            masks.mkdir(parents=True)
            for index in range(3):
                Image.fromarray(_labels([1], size) * 255).save(masks / f"{index:05d}.png")
    (root / "ImageSets" / "480p").mkdir(parents=True)
    (root / "ImageSets" / "480p" / "val.txt").write_text(
        "".join(f"/JPEGImages/480p/cows/{i:05d}.jpg /Annotations/480p/cows/{i:05d}.png\n" for i in range(3)))
    (root / "ImageSets" / "train.txt").write_text("bear\n")
    return root


def test_open_davis_2016_layout(tmp_path: Path) -> None:
    root = _davis2016_root(tmp_path)
    [val] = open_davis(root, split="val")  # 480p is the default among several resolutions
    assert val.name == "cows" and val.size == SIZE and object_ids(val.read_annotation(2)) == [1]
    [train] = open_davis(root, split="train", resolution="1080p")
    assert train.name == "bear" and train.size == (72, 100)
    (root / "ImageSets" / "train.txt").write_text("../../etc\n")
    with pytest.raises(InputError, match="train.txt: sequence '..' has no folder"):
        open_davis(root, split="train")


def test_open_youtube_vos(tmp_path: Path) -> None:
    images, annotations = tmp_path / "train" / "JPEGImages" / "abc", tmp_path / "train" / "Annotations" / "abc"
    _save_frames(images, _frames(4), ["00000", "00005", "00010", "00015"], suffix=".jpg")
    annotations.mkdir(parents=True)
    write_mask(annotations / "00000.png", _labels([1]))
    write_mask(annotations / "00010.png", _labels([1, 2]))
    [sequence] = open_youtube_vos(tmp_path)
    assert sequence.annotated == [0, 2] and object_ids(first_appearances(sequence)[2]) == [2]
    with pytest.raises(InputError, match="valid/JPEGImages: no such folder .splits here: train"):
        open_youtube_vos(tmp_path, split="valid")


def test_davis_and_youtube_vos_select_sequences_alike(tmp_path: Path, synthetic_davis: Path) -> None:
    for name in ("abc", "def", "ghi"):
        _save_frames(tmp_path / "valid" / "JPEGImages" / name, _frames(2), ["00000", "00005"], suffix=".jpg")
    assert [s.name for s in open_youtube_vos(tmp_path, "valid", sequences=["ghi", "abc"])] == ["abc", "ghi"]
    assert [s.name for s in open_davis(synthetic_davis, "train", sequences=["synth-002", "synth-000"])] == [
        "synth-000", "synth-002"]
    with pytest.raises(InputError, match=rf"^{re.escape(str(tmp_path))}: no sequence bear, cows in split valid .have abc, def, ghi.$"):
        open_youtube_vos(tmp_path, "valid", sequences=["abc", "bear", "cows", "bear"])
    with pytest.raises(InputError, match=rf"^{re.escape(str(synthetic_davis))}: no sequence synth-003 in split train "):
        open_davis(synthetic_davis, "train", sequences=["synth-003"])
    with pytest.raises(InputError, match=r"^root: no sequence x in the dataset .have none.$"):
        select_sequences([], ["x"], "root", None)
    assert select_sequences(["a", "b"], None, "root", "val") == ["a", "b"]


# --- real data (skipped when ../shared is absent) --------------------------------------------


@pytest.mark.skipif(not DAVIS2016.is_dir(), reason="no ../shared/data/davis2016")
def test_real_davis2016() -> None:
    val = open_davis(DAVIS2016, split="val")
    assert len(val) == 20 and sum(len(s) for s in val) == 1376
    blackswan = val[0]
    assert blackswan.name == "blackswan" and blackswan.size == (240, 427) and blackswan.read_frame(0).shape == (240, 427, 3)
    assert list(first_appearances(blackswan)) == [0] and object_ids(blackswan.read_annotation(0)) == [1]
    with pytest.raises(InputError, match="480p: no such resolution .have 240p"):
        open_davis(DAVIS2016, resolution="480p")


@pytest.mark.skipif(not JUDO.is_dir(), reason="no ../shared/data/judo-new-objects")
def test_real_judo_new_objects(caplog: pytest.LogCaptureFixture) -> None:
    [sequence] = open_input(JUDO)
    assert len(sequence) == 16 and sequence.size == (480, 854) and sequence.annotated == [0, 5, 8, 13]
    with caplog.at_level(logging.WARNING, logger="masktrack"):
        prompts = first_appearances(sequence)
    assert caplog.messages == [f"{JUDO}/Annotations/00005.png: mask is 853x480 but the frames are 854x480; resized it (nearest)"]
    assert {index: object_ids(labels) for index, labels in prompts.items()} == {0: [1], 5: [2], 8: [3], 13: [4]}
    assert all(labels.shape == (480, 854) for labels in prompts.values())
