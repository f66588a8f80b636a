"""The settings of a segmentation (fine-tuning, propagation, motion stream, seed) and its presets.

The settings classes' own defaults are the ``default`` preset. A preset is a small set of overrides on
top of them; a settings file or mapping may name one (``preset: best``) and override it key by key.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from masktrack.errors import InputError
from masktrack.online.finetune import FinetuneConfig
from masktrack.propagate.motion import MotionConfig
from masktrack.propagate.propagate import PropagateConfig
from masktrack.settings import as_mapping, from_dict, load_yaml, merge, plain

# Each preset's overrides of the settings classes' defaults (docs/results.md has their J&F and time).
PRESETS: dict[str, dict[str, Any]] = {
    # a fifth of the default's fine-tuning (most of its time), on crops of the frames
    "fast": {"finetune": {"steps": 20, "batch_size": 2, "width": 240}},
    "default": {},
    # the DAVIS 2016 benchmark's online pipeline: long fine-tuning on crops, mirrored frames averaged in,
    # and the motion stream
    "best": {
        "finetune": {"steps": 400, "batch_size": 2, "width": 240},
        "propagate": {"flip": True},
        "motion": {"weight": 0.3, "steps": 100},
    },
}
DEFAULT_PRESET = "default"


@dataclass
class SegmentConfig:
    """Everything a segmentation tunes: fine-tuning, propagation, the motion stream and the random seed."""

    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    propagate: PropagateConfig = field(default_factory=PropagateConfig)
    motion: MotionConfig = field(default_factory=MotionConfig)
    seed: int = 0

    @classmethod
    def from_dict(cls, values: dict[str, Any], source: str = "settings") -> SegmentConfig:
        """Build from nested plain values, a ``preset:`` key first (default ``default``), then the rest over it.

        A ``run:`` section (what a run folder's ``config.yaml`` records about the run) is ignored; unknown
        keys and values of the wrong type raise InputError naming ``source``.
        """
        values = {key: value for key, value in as_mapping(values, source).items() if key != "run"}
        preset = values.pop("preset", DEFAULT_PRESET)
        return from_dict(cls, merge(preset_values(preset, source), values), source)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested values (tuples as lists), ready for YAML."""
        return plain(asdict(self))


def preset_values(name: Any, source: str = "preset") -> dict[str, Any]:
    """The overrides of preset ``name``; InputError naming ``source`` for an unknown one."""
    if name not in PRESETS:
        raise InputError(f"{source}: unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


def segment_config(preset: str | None = None, path: Path | None = None, overrides: dict[str, Any] | None = None) -> SegmentConfig:
    """Settings of ``preset`` (else the file's ``preset:``, else ``default``), then the YAML file at ``path``, then
    ``overrides`` (nested like the file), each key by key."""
    values = load_yaml(path) if path is not None else {}
    if preset is not None:
        values = {**values, "preset": preset}
    return SegmentConfig.from_dict(merge(values, overrides or {}), source=str(path) if path is not None else "settings")


def differences(config: SegmentConfig, base: SegmentConfig) -> dict[str, Any]:
    """The settings of ``config`` that differ from ``base``, as flat ``section.key`` names."""
    return {key: value for key, value in flatten(config.to_dict()).items() if flatten(base.to_dict()).get(key) != value}


def flatten(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as one mapping of dotted keys."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
