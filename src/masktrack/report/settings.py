"""A run's ``config.yaml`` for the report: the settings that differ from the preset, and what was run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from masktrack.api.config import DEFAULT_PRESET, PRESETS, SegmentConfig, differences, flatten, segment_config
from masktrack.errors import InputError


@dataclass(frozen=True)
class RunSettings:
    """What ``config.yaml`` says: the preset, each changed setting ``(key, value, the preset's value)``, the run."""

    preset: str
    changed: list[tuple[str, Any, Any]] = field(default_factory=list)
    run: dict[str, Any] = field(default_factory=dict)  # the options given: input, mask, device...

    @property
    def input(self) -> Path | None:
        """The input the run segmented, as given on its command line (None when not recorded)."""
        value = self.run.get("input")
        return Path(value) if isinstance(value, str) and value else None


def read_settings(text: str) -> RunSettings | None:
    """The settings of a run folder's ``config.yaml`` text, or None when it is not a readable settings file."""
    try:
        values = yaml.safe_load(text)
        run = values.get("run") if isinstance(values, dict) else None
        run = run if isinstance(run, dict) else {}
        preset = run.get("preset") if run.get("preset") in PRESETS else DEFAULT_PRESET
        config = SegmentConfig.from_dict({key: value for key, value in values.items() if key != "preset"}, "config.yaml")
    except (yaml.YAMLError, InputError, AttributeError):
        return None
    base = segment_config(preset)
    before = flatten(base.to_dict())
    changed = [(key, value, before.get(key)) for key, value in differences(config, base).items()]
    return RunSettings(preset, changed, run)


def format_value(value: Any) -> str:
    """A setting's value as it reads in YAML (``null``, ``true``, ``[1, 2]``)."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()
