"""DAVIS evaluation: per-frame parity with vos-benchmark (an independent implementation of the
official J and F), recall/decay by hand, >255 frames, input formats, outputs and bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from masktrack.cli import main
from masktrack.data.masks import DAVIS_PALETTE, write_mask
from masktrack.data.png import decode_samples
from masktrack.evaluate import evaluate_dataset, write_results
from masktrack.evaluate.metrics import frame_scores, object_scores, statistics

vos_evaluator = pytest.importorskip("vos_benchmark.evaluator")

DAVIS2016 = Path(__file__).resolve().parents[2] / "shared" / "data" / "davis2016"
SIZE = (48, 64)


def _blob(rng: np.random.Generator, size: tuple[int, int] = SIZE) -> np.ndarray:
    """A random ellipse, sometimes cut by the image border."""
    h, w = size
    yy, xx = np.mgrid[:h, :w]
    cy, cx = rng.uniform(-0.1, 1.1) * h, rng.uniform(-0.1, 1.1) * w
    ry, rx = rng.uniform(1, max(h / 2, 1.5)), rng.uniform(1, max(w / 2, 1.5))
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1


def _labels(masks: list[np.ndarray]) -> np.ndarray:
    labels = np.zeros(masks[0].shape, np.uint8)
    for object_id, mask in enumerate(masks, start=1):
        labels[mask] = object_id
    return labels


def _write_sequence(root: Path, sequence: str, frames: list[np.ndarray]) -> None:
    (root / sequence).mkdir(parents=True, exist_ok=True)
    for t, labels in enumerate(frames):
        write_mask(root / sequence / f"{t:05d}.png", labels)


def _random_case(rng: np.random.Generator, kind: str, frames: int = 7, objects: int = 3) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Ground truth and prediction label frames for one kind of generated case."""
    gt, pred = [], []
    for t in range(frames):
        masks = [_blob(rng) for _ in range(objects)]
        if kind == "vanishing" and t >= 3:
            masks[1][:] = False  # object 2 leaves the ground truth (and the prediction)
        truth = _labels(masks)
        guess = np.roll(truth, (int(rng.integers(-3, 4)), int(rng.integers(-3, 4))), axis=(0, 1))
        if kind == "empty":
            guess = np.zeros_like(truth) if t % 2 else guess
        elif kind == "swapped":
            guess = np.choose(guess, [0, 2, 1, 3]).astype(np.uint8)
        elif kind == "vanishing" and t >= 4:
            guess[guess == 3] = 0  # object 3 is lost by the prediction only
        elif kind == "noisy":
            guess = np.where(rng.random(truth.shape) < 0.05, rng.integers(0, objects + 1, truth.shape), guess).astype(np.uint8)
        gt.append(truth)
        pred.append(guess)
    for object_id in range(1, objects + 1):  # every object in the first frame and the first scored one
        for frame in (gt[0], gt[1]):
            if not (frame == object_id).any():
                frame[object_id, object_id] = object_id
    return gt, pred


@pytest.mark.parametrize("kind", ["shifted", "noisy", "empty", "swapped", "vanishing"])
def test_per_frame_scores_match_vos_benchmark(tmp_path: Path, kind: str) -> None:
    rng = np.random.default_rng(["shifted", "noisy", "empty", "swapped", "vanishing"].index(kind))
    gt, pred = _random_case(rng, kind)
    _write_sequence(tmp_path / "gt", "seq", gt)
    _write_sequence(tmp_path / "pred", "seq", pred)
    result = evaluate_dataset(tmp_path / "gt", tmp_path / "pred", progress=False)

    oracle = vos_evaluator.Evaluator()
    for truth, guess in zip(gt[1:-1], pred[1:-1]):
        oracle.feed_frame(guess, truth)
    assert [obj.object_id for obj in result.objects] == sorted(oracle.objects_in_gt) == [1, 2, 3]
    for obj in result.objects:
        np.testing.assert_allclose(obj.j, oracle.object_iou[obj.object_id], rtol=0, atol=1e-12)
        np.testing.assert_allclose(obj.f, oracle.boundary_f[obj.object_id], rtol=0, atol=1e-12)
        assert obj.frames == tuple(f"{t:05d}" for t in range(1, len(gt) - 1))
    mean_j = np.mean([np.mean(oracle.object_iou[k]) for k in (1, 2, 3)])
    assert result.global_metrics["J-Mean"] == pytest.approx(mean_j, abs=1e-12)


def test_object_scores_on_edge_cases_match_vos_benchmark() -> None:
    """Crops and packed bit planes give the full-frame scores: borders, full frames, thin shapes."""
    rng = np.random.default_rng(7)
    h, w = 30, 40
    full, empty = np.ones((h, w), bool), np.zeros((h, w), bool)
    line, dot = empty.copy(), empty.copy()
    line[:, 5] = True
    dot[-1, -1] = True
    corner = empty.copy()
    corner[:10, :10] = True
    cases = [(full, full), (full, empty), (empty, full), (empty, empty), (line, dot), (dot, dot), (corner, full), (corner, corner[::-1, ::-1])]
    cases += [(_blob(rng, (h, w)), _blob(rng, (h, w))) for _ in range(40)]
    cases += [(rng.random((h, w)) < 0.3, rng.random((h, w)) < 0.3) for _ in range(10)]
    cases += [(rng.random((1, w)) < 0.5, rng.random((1, w)) < 0.5), (rng.random((h, 1)) < 0.5, rng.random((h, 1)) < 0.5)]
    for truth, guess in cases:
        oracle = vos_evaluator.Evaluator()
        oracle.feed_frame(guess.astype(np.uint8), truth.astype(np.uint8))
        j, f = object_scores(truth, guess)
        assert j == pytest.approx(oracle.object_iou[1][0] if oracle.object_iou else 1.0, abs=1e-12)
        assert f == pytest.approx(oracle.boundary_f[1][0] if oracle.boundary_f else 1.0, abs=1e-12)


def test_frame_scores_of_multi_object_labels_equal_per_object_scores() -> None:
    rng = np.random.default_rng(3)
    gt = _labels([_blob(rng) for _ in range(4)])
    pred = _labels([_blob(rng) for _ in range(4)])
    j, f = frame_scores(gt, pred, [1, 2, 3, 4, 5])
    for index, object_id in enumerate([1, 2, 3, 4, 5]):
        assert (j[index], f[index]) == object_scores(gt == object_id, pred == object_id)
    assert (j[4], f[4]) == (1.0, 1.0)  # absent from both


def test_object_given_at_a_later_frame_is_scored_from_the_next_frame(tmp_path: Path) -> None:
    first, later = np.zeros(SIZE, bool), np.zeros(SIZE, bool)
    first[5:20, 5:20] = True
    later[25:40, 30:50] = True
    gt = [_labels([first])] * 2 + [_labels([first, later])] * 4  # object 2 is given at frame 2
    pred = [*gt[:4], _labels([first]), gt[5]]  # ... and missed at frame 4
    _write_sequence(tmp_path / "gt", "seq", gt)
    _write_sequence(tmp_path / "pred", "seq", pred)
    one, two = evaluate_dataset(tmp_path / "gt", tmp_path / "pred", progress=False).objects
    assert one.frames == ("00001", "00002", "00003", "00004") and one.j.tolist() == [1.0] * 4
    assert two.frames == ("00003", "00004") and two.j.tolist() == [1.0, 0.0] and two.f.tolist() == [1.0, 0.0]


def test_statistics_by_hand() -> None:
    values = [0.2, 0.6, 0.9, 0.5, 1.0, 0.7, 0.3, 0.8]
    stats = statistics(np.array(values))
    assert stats.mean == pytest.approx(np.mean(values))
    assert stats.recall == 5 / 8  # 0.5 itself does not count
    # bins: ids = round(linspace(1, 8, 5) + 1e-10) - 1 = [0, 2, 4, 5, 7]; first = v[0:3], last = v[5:8]
    assert stats.decay == pytest.approx((0.2 + 0.6 + 0.9) / 3 - (0.7 + 0.3 + 0.8) / 3)
    single = statistics(np.array([0.4]))
    assert (single.mean, single.recall, single.decay) == (0.4, 0.0, 0.0)


def test_decay_past_255_frames(tmp_path: Path) -> None:
    """The official code's uint8 bin indices wrap past 255 frames; these do not."""
    values = np.r_[np.ones(150), np.zeros(150)]
    # ids = round(linspace(1, 300, 5) + 1e-10) - 1 = [0, 75, 150, 224, 299]: first = v[0:76] (ones), last = v[224:300] (zeros)
    assert statistics(values).decay == 1.0
    # End to end: 300 scored frames, J = 1 in the first half and 0 in the second.
    truth = np.zeros((8, 8), np.uint8)
    truth[2:6, 2:6] = 1
    gt = [truth] * 302
    pred = [truth] * 151 + [np.zeros_like(truth)] * 151
    _write_sequence(tmp_path / "gt", "long", gt)
    _write_sequence(tmp_path / "pred", "long", pred)
    metrics = evaluate_dataset(tmp_path / "gt", tmp_path / "pred", progress=False).global_metrics
    assert metrics["J-Mean"] == 0.5
    assert metrics["J-Decay"] == 1.0
    assert metrics["F-Decay"] == 1.0


def _png_bytes(labels: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    if mode == "cv2-grey":
        return cv2.imencode(".png", labels)[1].tobytes()
    image = Image.fromarray(labels)
    if mode == "palette":
        image = Image.frombytes("P", image.size, labels.tobytes())
        image.putpalette(DAVIS_PALETTE.ravel().tolist())
    elif mode == "rgb":
        image = Image.fromarray(DAVIS_PALETTE[labels])
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_png_decoder_matches_pillow() -> None:
    rng = np.random.default_rng(11)
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(1, 40, 2))
        for array in ((rng.random((h, w)) < 0.3).astype(np.uint8) * 255, rng.integers(0, 256, (h, w)).astype(np.uint8), _labels([_blob(rng, (h, w))])):
            for mode in ("cv2-grey", "grey", "palette"):  # "Sub" rows, adaptive filters, unfiltered rows
                data = _png_bytes(array, mode)
                samples, _ = decode_samples(data)
                np.testing.assert_array_equal(samples, np.asarray(Image.open(io.BytesIO(data))))
    assert decode_samples(_png_bytes(np.ones((4, 4), np.uint8), "rgb")) is None
    assert decode_samples(b"not a png") is None
    data = bytearray(_png_bytes(np.arange(64, dtype=np.uint8).reshape(8, 8), "palette"))
    idat = data.index(b"IDAT")
    data[idat + 8] ^= 0xFF  # corrupt the compressed pixels: zlib's checksum catches it
    assert decode_samples(bytes(data)) is None


def test_mask_formats_give_the_same_scores(tmp_path: Path) -> None:
    """Palette, greyscale 0/255 (two encoders) and colour-coded predictions score alike."""
    rng = np.random.default_rng(5)
    gt = [_labels([_blob(rng)]) for _ in range(5)]
    gt = [np.where(labels > 0, 1, 0).astype(np.uint8) for labels in gt]
    for labels in gt:
        labels[0, 0] = 1
    pred = [np.roll(labels, 2, axis=1) for labels in gt]
    _write_sequence(tmp_path / "gt", "seq", gt)
    reference = None
    for mode in ("palette", "cv2-grey", "grey", "rgb"):
        folder = tmp_path / mode / "seq"
        folder.mkdir(parents=True)
        for t, labels in enumerate(pred):
            (folder / f"{t:05d}.png").write_bytes(_png_bytes(labels * (255 if "grey" in mode else 1), mode))
        result = evaluate_dataset(tmp_path / "gt", tmp_path / mode, progress=False)
        scores = [(obj.j.tolist(), obj.f.tolist()) for obj in result.objects]
        reference = reference or scores
        assert scores == reference, mode


def _small_dataset(root: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(2)
    for sequence in ("alpha", "beta"):
        gt, pred = _random_case(rng, "shifted", frames=5, objects=2)
        _write_sequence(root / "gt", sequence, gt)
        _write_sequence(root / "pred", sequence, pred)
    return root / "gt", root / "pred"


def test_cli_writes_official_csvs_json_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, pred = _small_dataset(tmp_path)
    (tmp_path / "list.txt").write_text("beta\n\nalpha\n")
    out = tmp_path / "eval"
    assert main(["eval", str(gt), str(pred), "--sequences", str(tmp_path / "list.txt"), "--csv", str(out), "--workers", "2"]) == 0
    printed = capsys.readouterr().out
    assert "J&F:" in printed and "beta_1" in printed

    result = evaluate_dataset(gt, pred, sequences=["beta", "alpha"], progress=False)
    with (out / "global_results.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["J&F-Mean", "J-Mean", "J-Recall", "J-Decay", "F-Mean", "F-Recall", "F-Decay"]
    assert [float(v) for v in rows[1]] == list(result.global_metrics.values())  # full precision
    with (out / "per-sequence_results.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["Sequence", "J-Mean", "F-Mean"]
    assert [row[0] for row in rows[1:]] == ["beta_1", "beta_2", "alpha_1", "alpha_2"]
    assert [float(rows[1][1]), float(rows[1][2])] == [result.objects[0].j.mean(), result.objects[0].f.mean()]
    per_frame = json.loads((out / "per-frame_results.json").read_text())
    assert set(per_frame) == {"alpha", "beta"} and set(per_frame["alpha"]) == {"1", "2"}
    assert per_frame["beta"]["2"]["frames"] == ["00001", "00002", "00003"]
    assert per_frame["beta"]["2"]["J"] == result.objects[1].j.tolist()
    with Image.open(out / "jf_per_object.png") as plot:
        assert plot.format == "PNG" and plot.width > 100


def test_write_results_replaces_files_in_an_existing_folder(tmp_path: Path) -> None:
    gt, pred = _small_dataset(tmp_path)
    result = evaluate_dataset(gt, pred, progress=False)
    out = tmp_path / "out"
    out.mkdir()
    (out / "global_results.csv").write_text("stale")
    write_results(result, out)
    assert (out / "global_results.csv").read_text().startswith("J&F-Mean")
    assert sorted(p.name for p in out.iterdir()) == ["global_results.csv", "jf_per_object.png", "per-frame_results.json", "per-sequence_results.csv"]


def _break_missing_frame(gt: Path, pred: Path) -> Path:
    (pred / "alpha" / "00002.png").unlink()
    return pred / "alpha" / "00002.png"


def _break_size(gt: Path, pred: Path) -> Path:
    write_mask(pred / "beta" / "00001.png", np.zeros((10, 10), np.uint8))
    return pred / "beta" / "00001.png"


def _break_file(gt: Path, pred: Path) -> Path:
    (pred / "alpha" / "00003.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    return pred / "alpha" / "00003.png"


def _break_id(gt: Path, pred: Path) -> Path:
    write_mask(pred / "beta" / "00002.png", np.full(SIZE, 7, np.uint8))
    return pred / "beta" / "00002.png"


def _break_sequence(gt: Path, pred: Path) -> Path:
    for path in (pred / "beta").iterdir():
        path.unlink()
    (pred / "beta").rmdir()
    return pred / "beta"


@pytest.mark.parametrize("breaker", [_break_missing_frame, _break_size, _break_file, _break_id, _break_sequence])
def test_bad_input_exits_2_naming_the_file_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], breaker) -> None:
    gt, pred = _small_dataset(tmp_path)
    culprit = breaker(gt, pred)
    out = tmp_path / "eval"
    assert main(["eval", str(gt), str(pred), "--csv", str(out), "--workers", "2" if breaker is _break_id else "1"]) == 2
    assert str(culprit) in capsys.readouterr().err
    assert not out.exists()


def test_bad_sequence_list_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt, pred = _small_dataset(tmp_path)
    (tmp_path / "list.txt").write_text("alpha\ngamma\n")
    assert main(["eval", str(gt), str(pred), "--sequences", str(tmp_path / "list.txt")]) == 2
    assert str(gt / "gamma") in capsys.readouterr().err
    (tmp_path / "list.txt").write_text("../gt\n")
    assert main(["eval", str(gt), str(pred), "--sequences", str(tmp_path / "list.txt")]) == 2


@pytest.mark.skipif(not DAVIS2016.is_dir(), reason="needs the DAVIS 2016 copy in ../shared")
def test_davis2016_two_sequences_match_vos_benchmark(tmp_path: Path) -> None:
    """240p annotations upsampled to 480p (nearest) as predictions, scored against 480p."""
    sequences = ["blackswan", "dog"]
    for sequence in sequences:
        (tmp_path / sequence).mkdir()
        for path in sorted((DAVIS2016 / "Annotations" / "240p" / sequence).glob("*.png"))[::3]:
            small = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
            cv2.imwrite(str(tmp_path / sequence / path.name), cv2.resize(small, (854, 480), interpolation=cv2.INTER_NEAREST))
    gt_root = tmp_path / "gt"
    for sequence in sequences:  # the matching subset of ground-truth frames
        (gt_root / sequence).mkdir(parents=True)
        for path in (tmp_path / sequence).iterdir():
            (gt_root / sequence / path.name).symlink_to(DAVIS2016 / "Annotations" / "480p" / sequence / path.name)
    result = evaluate_dataset(gt_root, tmp_path, sequences=sequences, progress=False)
    for obj in result.objects:
        oracle = vos_evaluator.Evaluator()
        for frame in obj.frames:
            oracle.feed_frame(np.asarray(Image.open(tmp_path / obj.sequence / f"{frame}.png")), np.asarray(Image.open(gt_root / obj.sequence / f"{frame}.png")))
        np.testing.assert_allclose(obj.j, oracle.object_iou[255], atol=1e-12)
        np.testing.assert_allclose(obj.f, oracle.boundary_f[255], atol=1e-12)
        assert 0.8 < obj.j.mean() < 1.0
