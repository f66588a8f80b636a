"""Bad inputs, as a hostile user gives them, through the command line (issue 58).

Every row of CASES must end with exit code 2, one line on stderr that names the user's file and says what is
wrong, no traceback, and nothing left behind (the test folder holds exactly what the row's setup wrote). To add a
case, add a row: its command line may use the placeholders of ``inputs`` ({weights}, {frames}, ...) and {tmp}
(the test's own folder, where outputs go and where ``files`` are written first).
"""

from __future__ import annotations

import io
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from masktrack.cli import main
from masktrack.data.masks import write_mask
from masktrack.data.synth import generate_dataset, generate_video
from masktrack.data.video import VideoWriter
from masktrack.model import ModelConfig, build_model, save_checkpoint

UNWRITABLE = "/proc/masktrack-test/out"  # a virtual filesystem: no user can create files there
FAST_SEGMENT = "--weights {weights} --device cpu --threads 1 --quiet --no-report"  # add --finetune-steps where work runs
FAST_TRAIN = "--data {data}:train --config {tiny_model} --size 48 --steps 3 --batch-size 2 --workers 0 --device cpu --threads 1 --quiet"
SEGMENT = "segment {frames} --mask {mask} " + FAST_SEGMENT


class Payload:
    """A pickle that would print PAYLOAD RAN if it were ever unpickled."""

    def __reduce__(self):
        return print, ("PAYLOAD RAN",)


def torch_bytes(value: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(value, buffer)
    return buffer.getvalue()


@dataclass(frozen=True)
class Copy:
    """A setup file copied from one of the shared inputs (a placeholder such as "{mask}")."""

    source: str


@dataclass(frozen=True)
class Case:
    command: str  # the command line, with placeholders
    expected: str  # a fragment of the one-line error message
    names: str  # the user's path the message must name (with placeholders); "" where no file is to blame
    files: dict[str, str | bytes | Copy] = field(default_factory=dict)  # written under {tmp} first


CASES = {
    # 1. a video cut short (an interrupted download) is an error unless --allow-truncated
    "truncated-video": Case("segment {truncated} --mask {mask} --out {tmp}/run " + FAST_SEGMENT,
                            "truncated or damaged video: ", "{truncated}"),
    "truncated-video-says-how-to-keep-it": Case("segment {truncated} --mask {mask} --out {tmp}/run " + FAST_SEGMENT,
                                                "--allow-truncated keeps the frames that decode", "{truncated}"),
    # 2. settings of the wrong type name the file, the key and the expected type
    "segment-threshold-high": Case(SEGMENT + " --config {tmp}/bad.yaml --out {tmp}/run",
                                   "propagate: threshold: expected a number, got 'high'", "{tmp}/bad.yaml",
                                   {"bad.yaml": "propagate: {threshold: high}\n"}),
    "segment-steps-many": Case(SEGMENT + " --config {tmp}/bad.yaml --out {tmp}/run",
                               "finetune: steps: expected a whole number, got 'many'", "{tmp}/bad.yaml",
                               {"bad.yaml": "finetune: {steps: many}\n"}),
    "train-lr-fast": Case("train " + FAST_TRAIN + " --config {tmp}/bad.yaml --out {tmp}/run",
                          "lr: expected a number, got 'fast'", "{tmp}/bad.yaml", {"bad.yaml": "lr: fast\n"}),
    # 3. strings are not booleans, and 1.5 is not a whole number
    "segment-flow-string": Case(SEGMENT + " --config {tmp}/bad.yaml --out {tmp}/run",
                                "propagate: flow: expected true or false, got 'false'", "{tmp}/bad.yaml",
                                {"bad.yaml": "propagate: {flow: 'false'}\n"}),
    "segment-flip-yes": Case(SEGMENT + " --config {tmp}/bad.yaml --out {tmp}/run",
                             "propagate: flip: expected true or false, got 'yes'", "{tmp}/bad.yaml",
                             {"bad.yaml": "propagate: {flip: 'yes'}\n"}),
    "segment-seed-fraction": Case(SEGMENT + " --config {tmp}/bad.yaml --out {tmp}/run",
                                  "seed: expected a whole number, got 1.5", "{tmp}/bad.yaml", {"bad.yaml": "seed: 1.5\n"}),
    "train-seed-fraction": Case("train " + FAST_TRAIN + " --config {tmp}/bad.yaml --out {tmp}/run",
                                "seed: expected a whole number, got 1.5", "{tmp}/bad.yaml", {"bad.yaml": "seed: 1.5\n"}),
    "train-amp-string": Case("train " + FAST_TRAIN + " --config {tmp}/bad.yaml --out {tmp}/run",
                             "amp: expected true or false, got 'no'", "{tmp}/bad.yaml", {"bad.yaml": "amp: 'no'\n"}),
    # 4. every value is checked when read, even one that only matters with another setting on
    "flow-preset-with-flow-off": Case(SEGMENT + " --config {tmp}/bad.yaml --out {tmp}/run",
                                      "flow_preset must be one of ultrafast, fast, medium, got 'turbo'", "{tmp}/bad.yaml",
                                      {"bad.yaml": "propagate: {flow_preset: turbo}\n"}),
    "flow-preset-with-flow-on": Case(SEGMENT + " --flow --config {tmp}/bad.yaml --out {tmp}/run",
                                     "flow_preset must be one of", "{tmp}/bad.yaml",
                                     {"bad.yaml": "propagate: {flow_preset: turbo}\n"}),
    "train-optimizer-unknown": Case("train " + FAST_TRAIN + " --config {tmp}/bad.yaml --out {tmp}/run",
                                    "optimizer must be one of sgd, adamw", "{tmp}/bad.yaml", {"bad.yaml": "optimizer: adam\n"}),
    # 5. non-finite weights, and a network whose first output is not finite
    "nan-weights": Case("segment {frames} --mask {mask} --out {tmp}/run " + FAST_SEGMENT.replace("{weights}", "{nan_weights}"),
                        "weight tensor(s) hold NaN or infinite values", "{nan_weights}"),
    "nan-weights-as-init": Case("train " + FAST_TRAIN + " --init {nan_weights} --out {tmp}/run",
                                "weight tensor(s) hold NaN or infinite values", "{nan_weights}"),
    "fine-tuning-diverges": Case(SEGMENT + " --finetune-steps 2 --config {tmp}/lr.yaml --out {tmp}/run",
                                 "frame 1: the network's output is not finite", "",  # settings or weights: no one file
                                 {"lr.yaml": "finetune: {lr: 1.0e+30}\n"}),
    # 6. outputs that cannot be written are found before the work starts
    "segment-out-unwritable": Case(SEGMENT + " --out " + UNWRITABLE, "cannot write", UNWRITABLE),
    "segment-out-under-a-file": Case(SEGMENT + " --out {tmp}/note.txt/run", "is not a folder", "{tmp}/note.txt",
                                     {"note.txt": "a file\n"}),
    "synth-out-unwritable": Case("synth " + UNWRITABLE + " --videos 1 --frames 2", "cannot write", UNWRITABLE),
    "train-out-unwritable": Case("train " + FAST_TRAIN + " --out " + UNWRITABLE, "cannot write", UNWRITABLE),
    "eval-csv-unwritable": Case("eval {annotations} {annotations} --csv " + UNWRITABLE, "cannot write", UNWRITABLE),
    "demo-out-unwritable": Case("demo --weights {weights} --threads 1 --quiet --out " + UNWRITABLE, "cannot write", UNWRITABLE),
    "report-out-unwritable": Case("report {tmp}/run --out " + UNWRITABLE, "cannot write", UNWRITABLE,
                                  {"run/clip/00000.png": Copy("{mask}")}),
    # 7. --overlay FILE is checked first: not a folder, somewhere writable
    "overlay-is-a-folder": Case(SEGMENT + " --overlay {tmp} --out {tmp}/run", "is a folder; give a file name", "{tmp}"),
    "overlay-unwritable": Case(SEGMENT + " --overlay " + UNWRITABLE + ".mp4 --out {tmp}/run", "cannot write",
                               UNWRITABLE + ".mp4"),
    # 8. a training checkpoint of the wrong structure
    "resume-checkpoint-without-config": Case("train " + FAST_TRAIN + " --resume --out {tmp}/run",
                                             "not a masktrack training checkpoint (no config, model", "{tmp}/run/checkpoint.pt",
                                             {"run/checkpoint.pt": torch_bytes({"step": 3})}),
    # 9. a pickle given as weights is never unpickled, and the message is one line
    "pickle-as-pretrained": Case("train " + FAST_TRAIN + " --pretrained {pickle} --out {tmp}/run",
                                 "not a safe checkpoint (expected safetensors or a weights-only torch file)", "{pickle}"),
    "pickle-as-init": Case("train " + FAST_TRAIN + " --init {pickle} --out {tmp}/run", "not a safe checkpoint", "{pickle}"),
    "pickle-as-resume-checkpoint": Case("train " + FAST_TRAIN + " --resume --out {tmp}/run",
                                        "not a safe checkpoint (expected safetensors or a weights-only torch file)",
                                        "{tmp}/run/checkpoint.pt", {"run/checkpoint.pt": Copy("{pickle}")}),
    "pickle-as-segment-weights": Case("segment {frames} --mask {mask} --out {tmp}/run "
                                      + FAST_SEGMENT.replace("{weights}", "{pickle}"), "not a safe checkpoint", "{pickle}"),
    # 10. a training run that fails before it could be resumed leaves no run folder (the corrected command runs)
    "train-diverges-before-a-checkpoint": Case("train " + FAST_TRAIN + " --lr 1e30 --out {tmp}/run",
                                               "training diverged", "{tmp}/run"),
    # 12. deform's --out is a picture file
    "deform-out-is-a-folder": Case("deform {mask} --out {tmp}", "is a folder; give a file name", "{tmp}"),
    "deform-out-without-extension": Case("deform {mask} --out {tmp}/grid", "unknown picture format", "{tmp}/grid"),
}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The shared, valid inputs (and a few broken ones) that the command lines name."""
    root = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    network = build_model(ModelConfig(output_stride=16, head_channels=16))
    save_checkpoint(root / "tiny.safetensors", network)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.fill_(float("nan"))
    save_checkpoint(root / "nan.safetensors", network)
    (root / "evil.pt").write_bytes(torch_bytes({"weights": Payload()}))
    video = generate_video(5, num_frames=6, size=(48, 64), num_objects=2)
    (root / "frames").mkdir()
    for index, frame in enumerate(video.frames):
        Image.fromarray(frame).save(root / "frames" / f"{index:05d}.png")
    write_mask(root / "first.png", video.labels[0])
    data = generate_dataset(root / "data", num_videos=4, num_frames=4, size=(48, 64), seed=0)
    (root / "tiny-model.yaml").write_text("model: {output_stride: 16, head_channels: 16}\n")
    return {"weights": str(root / "tiny.safetensors"), "nan_weights": str(root / "nan.safetensors"),
            "pickle": str(root / "evil.pt"), "frames": str(root / "frames"), "mask": str(root / "first.png"),
            "data": str(data), "annotations": str(data / "Annotations" / "48p"), "tiny_model": str(root / "tiny-model.yaml"),
            "truncated": str(truncated_video(root, video.labels[0].shape))}


def truncated_video(root: Path, size: tuple[int, int]) -> Path:
    """A 12-frame faststart MP4 (the frame table first) cut to 60% of its bytes, as an interrupted download is."""
    rng = np.random.default_rng(0)
    whole = root / "whole.mp4"
    with VideoWriter(whole, fps=10) as writer:
        for _ in range(12):
            writer.write(rng.integers(0, 256, (*size, 3), dtype=np.uint8))  # noise: every frame is large
    data = whole.read_bytes()
    cut = root / "cut.mp4"
    cut.write_bytes(data[: len(data) * 6 // 10])
    return cut


@pytest.fixture(autouse=True)
def restore_threads():
    """The commands here set torch's threads (--threads 1); the next test gets the number it had."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def tree(folder: Path) -> set[str]:
    return {str(path.relative_to(folder)) for path in folder.rglob("*")}


@pytest.mark.parametrize("name", CASES)
def test_a_bad_input_is_one_line_exit_2_naming_the_file_and_leaves_nothing(
        name: str, inputs: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    case = CASES[name]
    places = {**inputs, "tmp": str(tmp_path)}
    for relative, content in case.files.items():
        path = tmp_path / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Copy):
            shutil.copyfile(content.source.format(**places), path)
        else:
            path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
    before = tree(tmp_path)
    code = main([part.format(**places) for part in case.command.split()])
    captured = capsys.readouterr()
    error = captured.err.strip()
    assert code == 2, error
    assert "\n" not in error and "Traceback" not in error, error
    assert error.startswith(f"masktrack {case.command.split()[0]}: error: ") and case.expected in error, error
    assert case.names.format(**places) in error, error
    assert tree(tmp_path) == before, "left behind: " + ", ".join(sorted(tree(tmp_path) - before))
    assert "PAYLOAD RAN" not in captured.out + captured.err


def test_allow_truncated_segments_the_frames_that_decode(inputs: dict[str, str], tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    command = f"segment {inputs['truncated']} --mask {inputs['mask']} --allow-truncated --finetune-steps 0 --out {tmp_path / 'run'} "
    assert main((command + FAST_SEGMENT.format(**inputs)).split()) == 0
    written = sorted(path.name for path in (tmp_path / "run" / "cut").glob("*.png"))
    assert 2 <= len(written) < 12 and written == [f"{index:05d}.png" for index in range(len(written))]
    assert "truncated or damaged video" in caplog.text and inputs["truncated"] in caplog.text


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_follow_the_umask(tmp_path: Path, umask: int) -> None:
    """13: model.safetensors (written by safetensors) gets the permissions of every other output."""
    previous = os.umask(umask)
    try:
        save_checkpoint(tmp_path / "model.safetensors", build_model(ModelConfig(output_stride=16, head_channels=16)))
        assert main(["deform", str(write_labels(tmp_path / "mask.png")), "--out", str(tmp_path / "sheet.png"),
                     "--count", "1"]) == 0
    finally:
        os.umask(previous)
    for name in ("model.safetensors", "sheet.png"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def write_labels(path: Path) -> Path:
    labels = np.zeros((32, 32), np.uint8)
    labels[8:24, 8:24] = 1
    write_mask(path, labels)
    return path
