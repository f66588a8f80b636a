"""Tests of `masktrack demo`: the whole pipeline on synthetic videos, at tiny sizes."""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from masktrack import demo
from masktrack.api import parents
from masktrack.api.config import segment_config
from masktrack.cli import main
from masktrack.demo import DemoSettings
from masktrack.model import ModelConfig, build_model, save_checkpoint

TINY = DemoSettings(videos=3, frames=6, size=(48, 64), train_steps=3, batch_size=4, finetune_steps=2)


@pytest.fixture(autouse=True)
def tiny_demo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tiny default settings, no shipped model, one CPU thread (restored afterwards)."""
    monkeypatch.setattr(demo, "DEFAULT_SETTINGS", TINY)
    monkeypatch.setattr(parents, "shipped_model", lambda: None)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_cli_trains_segments_evaluates_and_prints_the_report_and_jf(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--threads", "1", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "trained here on the synthetic train split" in printed
    assert f"report {out / 'run' / 'report' / 'index.html'}" in printed
    assert "<h1>masktrack report: run</h1>" in (out / "run" / "report" / "index.html").read_text()  # not run.partial
    assert (out / "parent" / "model.safetensors").is_file()
    assert sorted(p.name for p in (out / "run" / "synth-002").iterdir()) == [f"{t:05d}.png" for t in range(6)]
    with (out / "run" / "eval" / "global_results.csv").open(newline="") as handle:
        scores = next(csv.DictReader(handle))
    jf = re.search(r"J&F (\d\.\d{3})", printed)
    assert jf is not None and float(jf.group(1)) == pytest.approx(float(scores["J&F-Mean"]), abs=5e-4)
    assert not (tmp_path / "demo.partial").exists()


def test_existing_output_is_refused_unless_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert main(["demo", "--out", str(out), "--threads", "1", "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err and (out / "keep.txt").is_file()
    assert main(["demo", "--out", str(out), "--threads", "1", "--quiet", "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "run" / "eval" / "global_results.csv").is_file()


def test_missing_weights_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["demo", "--out", str(tmp_path / "demo"), "--weights", str(tmp_path / "none.safetensors")]) == 2
    assert "none.safetensors" in capsys.readouterr().err and not (tmp_path / "demo").exists()


def test_shipped_model_is_the_parent_unless_training_is_asked_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                 capsys: pytest.CaptureFixture) -> None:
    torch.manual_seed(0)
    shipped_weights = tmp_path / "default.safetensors"
    save_checkpoint(shipped_weights, build_model(ModelConfig(**demo.DEMO_MODEL)))
    monkeypatch.setattr(parents, "shipped_model", lambda: shipped_weights)
    assert main(["demo", "--out", str(tmp_path / "shipped"), "--threads", "1", "--quiet"]) == 0
    assert f"parent: the shipped model {shipped_weights}" in capsys.readouterr().out
    assert (tmp_path / "shipped" / "run" / "report" / "index.html").is_file()
    assert not (tmp_path / "shipped" / "parent").exists()
    assert main(["demo", "--out", str(tmp_path / "trained"), "--train", "--threads", "1", "--quiet"]) == 0
    assert "trained here on the synthetic train split" in capsys.readouterr().out
    assert (tmp_path / "trained" / "parent" / "model.safetensors").is_file()


def test_the_demo_segments_with_the_default_preset_and_its_own_fine_tuning_steps(tmp_path: Path) -> None:
    weights = tmp_path / "parent.safetensors"
    save_checkpoint(weights, build_model(ModelConfig(**demo.DEMO_MODEL)))
    predictor = demo.demo_predictor(weights, TINY, progress=False)
    assert predictor.device == "cpu" and predictor.settings == segment_config(overrides={"finetune": {"steps": 2}})
    preset = demo.demo_predictor(weights, DemoSettings(seed=3), progress=False)  # finetune_steps None: the preset's
    assert preset.settings == segment_config(overrides={"seed": 3})
