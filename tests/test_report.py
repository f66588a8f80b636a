"""HTML report: built from a small run folder; references only files beside it; replaces only its own folder; loads in
Chromium."""

from __future__ import annotations

import json
import shutil
import subprocess
from contextlib import nullcontext
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from masktrack.cli import main
from masktrack.data.masks import read_mask, write_mask
from masktrack.data.video import VideoWriter, overlay
from masktrack.errors import InputError
from masktrack.report import write_report

SEQUENCES = ("synth-001", "synth-003")


def _shifted_predictions(dataset: Path, run: Path, sequence: str, video: bool) -> dict[str, dict[str, list]]:
    """Write predictions that drift right by one pixel per frame; return per-frame J and F (F faked)."""
    scores: dict[str, dict[str, list]] = {}
    (run / sequence).mkdir(parents=True)
    writer = VideoWriter(run / "overlays" / f"{sequence}.mp4", 8) if video else None
    with writer or nullcontext():
        for t, path in enumerate(sorted((dataset / "Annotations" / "96p" / sequence).glob("*.png"))):
            truth = read_mask(path)
            prediction = np.roll(truth, t, axis=1)
            write_mask(run / sequence / path.name, prediction)
            if writer is not None:
                writer.write(overlay(np.asarray(Image.open(dataset / "JPEGImages" / "96p" / sequence / f"{path.stem}.jpg")), prediction))
            for object_id in (int(i) for i in np.unique(truth) if i and t > 0):
                j = np.sum((prediction == object_id) & (truth == object_id)) / np.sum((prediction == object_id) | (truth == object_id))
                entry = scores.setdefault(str(object_id), {"frames": [], "J": [], "F": []})
                entry["frames"].append(path.stem), entry["J"].append(float(j)), entry["F"].append(float(j) ** 0.5)
    return scores


@pytest.fixture(scope="module")
def run_dir(synthetic_davis: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with predictions, eval files, one overlay video, timings and config."""
    run = tmp_path_factory.mktemp("run")
    (run / "overlays").mkdir()
    per_frame = {sequence: _shifted_predictions(synthetic_davis, run, sequence, video=sequence == SEQUENCES[0]) for sequence in SEQUENCES}
    per_frame["../../escape"] = {"1": {"frames": ["00001"], "J": [0.0], "F": [0.0]}}  # not a prediction folder: ignored
    (run / "eval").mkdir()
    (run / "eval" / "per-frame_results.json").write_text(json.dumps(per_frame))
    rows = [(f"{s}_{i}", np.mean(v["J"]), np.mean(v["F"])) for s in SEQUENCES for i, v in per_frame[s].items()]
    (run / "eval" / "per-sequence_results.csv").write_text("Sequence,J-Mean,F-Mean\n" + "".join(f"{n},{j},{f}\n" for n, j, f in rows))
    (run / "eval" / "global_results.csv").write_text(
        "J&F-Mean,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n0.61,0.55,0.5,0.3,0.67,0.7,0.2\n"
    )
    timings = {"device": "cpu", "sequences": {s: {"frames": 12, "finetune_s": 4.0, "propagate_s": 1.5} for s in SEQUENCES}, "total_s": 11.0}
    (run / "timings.json").write_text(json.dumps(timings))
    (run / "config.yaml").write_text("seed: 0\nnote: <b>not markup</b>\n")
    return run


class _Sources(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.sources += [value for name, value in attrs if name in ("src", "href", "poster") and value and not value.startswith("#")]


def _referenced(page: Path) -> list[str]:
    parser = _Sources()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser.sources


def test_report_references_only_files_beside_it(run_dir: Path, synthetic_davis: Path) -> None:
    page = write_report(run_dir, images_root=synthetic_davis)
    assert page == run_dir / "report" / "index.html"
    sources = _referenced(page)
    assert sources, "the page shows images and videos"
    for source in sources:
        assert "/" not in source and "\\" not in source and ":" not in source, source
        assert (page.parent / source).is_file(), source
    text = page.read_text(encoding="utf-8")
    assert sum(s.endswith(".mp4") for s in sources) == 1 and sum(s.endswith(".gif") for s in sources) == 1
    assert sum(s.endswith("-strip.png") for s in sources) == sum(s.endswith("-areas.png") for s in sources) == 2
    per_frame = json.loads((run_dir / "eval" / "per-frame_results.json").read_text())
    assert sum(s.startswith("worst-") for s in sources) == sum(len(per_frame[s]) for s in SEQUENCES)  # one per object
    assert "escape" not in text and "&lt;b&gt;not markup&lt;/b&gt;" in text
    for heading in ("Scores", "Objects", "Frames", "J and F per frame", "Overlays", "Worst frame of each object", "Timings",
                    "Settings"):
        assert f">{heading}</h2>" in text
    assert "2 sequences, 24 predicted frames" in text and "masks alone" not in text  # frames from the dataset
    with Image.open(page.parent / "worst-00.png") as panel:
        assert panel.width > 3 * 96  # prediction, ground truth and error tiles
    # Writing again replaces the previous report.
    assert write_report(run_dir) == page and not (run_dir / "report.partial").exists()


def test_report_with_predictions_only(synthetic_davis: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _shifted_predictions(synthetic_davis, run, "synth-000", video=False)
    page = write_report(run, out_dir=tmp_path / "out")
    assert sorted(_referenced(page)) == ["000-synth-000-areas.png", "000-synth-000-strip.png", "000-synth-000.gif"]
    with Image.open(page.parent / "000-synth-000.gif") as gif:
        assert gif.n_frames == 12
    text = page.read_text(encoding="utf-8")
    assert "1 sequence, 12 predicted frames" in text and "masks alone" in text  # no frames to draw them over


def _own_video_run(tmp_path: Path, synthetic_davis: Path, preset_steps: int) -> Path:
    """A run of a frame folder without ground truth, as `masktrack segment` writes it: masks, an overlay video,
    config.yaml recording the input; object 2 is lost after frame 5."""
    frames, run = tmp_path / "clip", tmp_path / "run"
    shutil.copytree(synthetic_davis / "JPEGImages" / "96p" / "synth-000", frames)
    (run / "clip").mkdir(parents=True)
    for path in sorted((synthetic_davis / "Annotations" / "96p" / "synth-000").glob("*.png")):
        labels = read_mask(path)
        write_mask(run / "clip" / path.name, np.where((labels == 2) & (int(path.stem) > 5), 0, labels))
    config = {"finetune": {"steps": preset_steps, "lr": 0.0001}, "seed": 0,
              "run": {"command": "segment", "input": str(frames), "mask": ["first.png"], "device": "cpu"}}
    (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return run


def test_report_of_a_run_without_ground_truth(synthetic_davis: Path, tmp_path: Path) -> None:
    run = _own_video_run(tmp_path, synthetic_davis, preset_steps=7)
    page = write_report(run)
    text = page.read_text(encoding="utf-8")
    assert "1 sequence, 12 predicted frames" in text and "Scores" not in text
    assert "masks alone" not in text  # drawn over the input that config.yaml records
    assert 'class="swatch"' in text and "object 2" in text and ">6 of 12<" in text  # object 2: frames 0-5, then lost
    assert "<td>finetune.steps</td><td>7</td><td>50</td>" in text  # what differs from the default preset
    assert "finetune.lr" not in text.split("<details>")[0]  # the preset's own value is not listed
    assert "<details><summary>config.yaml</summary>" in text
    with Image.open(page.parent / "000-clip-strip.png") as strip:
        assert strip.width > 4 * 96
        assert np.asarray(strip.convert("RGB")).mean() > 40  # frames, not masks on black


def test_report_replaces_only_a_folder_it_wrote(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    user = tmp_path / "mine"
    user.mkdir()
    (user / "index.html").write_text("my page")
    (user / "precious.txt").write_text("keep me")
    assert main(["report", str(run_dir), "--out", str(user)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "not a folder that masktrack report wrote" in error
    assert (user / "precious.txt").read_text() == "keep me" and (user / "index.html").read_text() == "my page"
    ours = tmp_path / "ours"
    write_report(run_dir, out_dir=ours)
    (ours / "stale.png").write_bytes(b"old asset")
    write_report(run_dir, out_dir=ours)  # a folder the report wrote is replaced as a whole
    assert (ours / "index.html").is_file() and not (ours / "stale.png").exists()


def test_bad_inputs_are_one_line_errors(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "run folder not found" in capsys.readouterr().err
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "eval" / "per-frame_results.json").write_text("{not json")
    with pytest.raises(InputError, match="per-frame_results.json"):
        write_report(broken)
    (tmp_path / "precious").mkdir()
    with pytest.raises(InputError, match="not a folder that masktrack report wrote"):
        write_report(run_dir, out_dir=tmp_path / "precious")


_PROBE = """<script>
window.addEventListener("load", async () => {
  const videos = [...document.querySelectorAll("video")];
  await Promise.all(videos.map(v => v.readyState >= 1 ? null : new Promise(done => { v.onloadedmetadata = done; v.onerror = done; })));
  const result = {images: [...document.images].map(i => i.naturalWidth), videos: videos.map(v => v.readyState)};
  const out = document.createElement("pre"); out.id = "probe"; out.textContent = JSON.stringify(result);
  document.body.appendChild(out);
});
</script>"""


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_loads_in_chromium(run_dir: Path, synthetic_davis: Path, tmp_path: Path) -> None:
    page = write_report(run_dir, out_dir=tmp_path / "report", images_root=synthetic_davis)
    probe = page.with_name("probe.html")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    command = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri(),
    ]  # fmt: skip
    dom = subprocess.run(command, capture_output=True, text=True, timeout=120).stdout
    assert 'id="probe"' in dom, dom[-2000:]
    result = json.loads(dom.split('id="probe">', 1)[1].split("</pre>", 1)[0])
    assert result["images"] and all(width > 0 for width in result["images"])
    assert len(result["videos"]) == 1 and result["videos"][0] >= 1, result  # HAVE_METADATA: the MP4 decodes
