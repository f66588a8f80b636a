"""Read a segmentation run folder for the report; every file but the predictions is optional.

Layout::

    RUN/<seq>/<frame>.png                 prediction palette PNGs
    RUN/eval/global_results.csv           J&F-Mean, J-Mean, J-Recall, J-Decay, F-Mean, F-Recall, F-Decay
    RUN/eval/per-sequence_results.csv     Sequence (``<seq>_<id>``), J-Mean, F-Mean
    RUN/eval/per-frame_results.json       {seq: {obj_id: {"frames": [...], "J": [...], "F": [...]}}}
    RUN/eval/jf_per_object.png
    RUN/overlays/<seq>.mp4
    RUN/timings.json                      {"device", "sequences": {seq: {frames, finetune_s, propagate_s}}, "total_s"}
    RUN/config.yaml

Names read from data files are only used when they match a prediction folder (sequences)
or a prediction PNG (frames), so they never become paths on their own.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from masktrack.errors import InputError

NOT_SEQUENCES = frozenset({"eval", "overlays", "report", "probabilities"})


@dataclass(frozen=True)
class ObjectScores:
    """Per-frame J and F of one object."""

    frames: list[str]
    j: list[float]
    f: list[float]


@dataclass
class Run:
    """What a run folder holds, validated."""

    root: Path
    sequences: dict[str, list[str]]  # sequence -> frame names with a prediction PNG, in order (frame2 before frame10)
    global_scores: dict[str, float] = field(default_factory=dict)
    object_scores: list[tuple[str, int, float, float]] = field(default_factory=list)  # seq, id, J, F
    per_frame: dict[str, dict[int, ObjectScores]] = field(default_factory=dict)
    timings: dict[str, Any] | None = None
    config_text: str | None = None

    def prediction_path(self, sequence: str, frame: str) -> Path:
        return self.root / sequence / f"{frame}.png"

    def overlay_video(self, sequence: str) -> Path | None:
        path = self.root / "overlays" / f"{sequence}.mp4"
        return path if path.is_file() else None

    @property
    def object_plot(self) -> Path | None:
        path = self.root / "eval" / "jf_per_object.png"
        return path if path.is_file() else None


def read_run(root: Path) -> Run:
    """Read and validate the run folder ``root``."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: run folder not found")
    sequences = {
        folder.name: sorted((path.stem for path in folder.glob("*.png")), key=_natural_key)
        for folder in sorted(root.iterdir())
        if folder.is_dir() and folder.name not in NOT_SEQUENCES and not folder.name.endswith(".partial") and any(folder.glob("*.png"))
    }
    if not sequences:
        raise InputError(f"{root}: no prediction folders (<seq>/<frame>.png) in the run folder")
    run = Run(root=root, sequences=sequences)
    evaluation = root / "eval"
    if (evaluation / "global_results.csv").is_file():
        rows = _read_csv(evaluation / "global_results.csv")
        if rows:
            run.global_scores = {key: _number(value, evaluation / "global_results.csv") for key, value in rows[0].items()}
    if (evaluation / "per-sequence_results.csv").is_file():
        run.object_scores = _object_scores(evaluation / "per-sequence_results.csv", sequences)
    if (evaluation / "per-frame_results.json").is_file():
        run.per_frame = _per_frame(evaluation / "per-frame_results.json", sequences)
    if (root / "timings.json").is_file():
        run.timings = _timings(root / "timings.json")
    if (root / "config.yaml").is_file():
        run.config_text = (root / "config.yaml").read_text(encoding="utf-8", errors="replace")
    return run


def _natural_key(name: str) -> list[int | str]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def _read_csv(path: Path) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return [{key.strip(): value.strip() for key, value in row.items() if key} for row in csv.DictReader(handle)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise InputError(f"{path}: cannot read CSV ({error})") from None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{path}: cannot read JSON ({error})") from None


def _number(value: Any, path: Path) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{path}: expected a number, got {value!r}") from None
    if math.isinf(number):
        raise InputError(f"{path}: expected a finite number, got {value!r}")
    return number


def _object_scores(path: Path, sequences: dict[str, list[str]]) -> list[tuple[str, int, float, float]]:
    scores = []
    for row in _read_csv(path):
        sequence, _, object_id = row.get("Sequence", "").rpartition("_")
        if sequence not in sequences or not object_id.isdigit():
            continue
        scores.append((sequence, int(object_id), _number(row.get("J-Mean"), path), _number(row.get("F-Mean"), path)))
    return scores


def _per_frame(path: Path, sequences: dict[str, list[str]]) -> dict[str, dict[int, ObjectScores]]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected an object mapping sequences to objects")
    result: dict[str, dict[int, ObjectScores]] = {}
    for sequence, objects in data.items():
        if sequence not in sequences or not isinstance(objects, dict):
            continue
        known = set(sequences[sequence])
        for object_id, scores in objects.items():
            if not str(object_id).isdigit() or not isinstance(scores, dict):
                raise InputError(f"{path}: {sequence}: bad object entry {object_id!r}")
            frames, j, f = (scores.get(key) for key in ("frames", "J", "F"))
            if not all(isinstance(values, list) for values in (frames, j, f)) or not len(frames) == len(j) == len(f):
                raise InputError(f"{path}: {sequence}/{object_id}: frames, J and F must be lists of one length")
            kept = [index for index, frame in enumerate(frames) if str(frame) in known]
            result.setdefault(sequence, {})[int(object_id)] = ObjectScores(
                frames=[str(frames[i]) for i in kept], j=[_number(j[i], path) for i in kept], f=[_number(f[i], path) for i in kept]
            )
    return result


def _timings(path: Path) -> dict[str, Any]:
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("sequences", {}), dict):
        raise InputError(f"{path}: expected {{'device', 'sequences': {{...}}, 'total_s'}}")
    rows = {}
    for sequence, values in data.get("sequences", {}).items():
        if not isinstance(values, dict):
            raise InputError(f"{path}: {sequence}: expected an object")
        rows[str(sequence)] = {key: _number(values.get(key, math.nan), path) for key in ("frames", "finetune_s", "propagate_s")}
    total = data.get("total_s")
    return {"device": str(data.get("device", "unknown")), "sequences": rows, "total_s": None if total is None else _number(total, path)}
