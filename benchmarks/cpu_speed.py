"""Every speed ratio of "Fast on a CPU" from one run, as a Markdown report: one table per measurement.

- ``command``: the user's ``python -m masktrack segment INPUT --mask FIRST.png --out DIR`` as a subprocess, with this
  tree against ``--baseline-ref`` (checked out once in a temporary git worktree), on a DAVIS 2016 val sequence
  (240p frames, its first mask made binary) and on a synthetic 3-object video: seconds, old/new, and each output's
  J&F mean against the ground truth (first and last frames not scored, as in DAVIS);
- ``runtimes``: propagation of the DAVIS sequence with the shipped parent (not fine-tuned: speed does not depend on
  the weights) run by each installed runtime (torch, onnxruntime, openvino): conversion seconds (after an untimed
  first one, which also imports the runtime), the network's frames/s alone (batch 1 at the frame's network size),
  whole ``Propagator.step`` frames/s (the first network call, where OpenVINO compiles for the shape, included), ratio
  to torch and the share of pixels labelled as torch does;
- ``objects``: per-object fine-tuning and propagation (runtime auto) of a synthetic video with 3 objects against one
  with 1: time(3)/time(1) next to the target 1 + 0.5 * (3 - 1) = 2.0;
- ``finetune``: fine-tuning seconds per object on the DAVIS sequence's first frame, the default preset's settings
  against the baseline default's (50 steps of batch 4 on whole frames);
- ``memory`` (minutes; not in the default set): peak RSS of ``masktrack segment --finetune-steps 0`` (this tree) on
  synthetic 1-object videos of 150 and 2400 frames, and their ratio (target: within 10%).

Times are wall-clock medians over ``--rounds`` rounds, the compared variants run in turn within each round.
Everything runs in the environment it is given, as a user's command would (``OMP_WAIT_POLICY`` unset: OpenMP
threads spin before they sleep, which suits an otherwise idle machine).

    .venv/bin/python benchmarks/cpu_speed.py
    .venv/bin/python benchmarks/cpu_speed.py --measure runtimes objects --rounds 3
    .venv/bin/python benchmarks/cpu_speed.py --measure command --sequence breakdance --baseline-ref d2036d4
    .venv/bin/python benchmarks/cpu_speed.py --measure memory
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from masktrack.api.config import SegmentConfig, segment_config
from masktrack.api.parents import for_parent, load_parents
from masktrack.data.masks import object_ids, write_mask
from masktrack.data.synth import SyntheticVideo, generate_video
from masktrack.evaluate.metrics import frame_scores
from masktrack.model.inputs import image_tensor, mask_tensor, processing_size
from masktrack.model.runtime import installed
from masktrack.online.finetune import finetune
from masktrack.propagate.propagate import PropagateConfig, Propagator

REPO = Path(__file__).resolve().parents[1]
MEASURES = ("command", "runtimes", "objects", "finetune", "memory")
SIZE = (240, 427)  # synthetic videos' (height, width): DAVIS 240p
RUNTIMES = ("torch", "onnxruntime", "openvino")
MEMORY_FRAMES = (150, 2400)
RSS_WRAPPER = ("import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)")


@dataclass(frozen=True)
class Clip:
    """A frame folder and its first-frame mask on disk, and every frame's ground-truth labels ``(T, H, W)``."""

    folder: Path
    mask: Path
    truth: np.ndarray


def parse_args() -> argparse.Namespace:
    """The command line's options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--measure", nargs="+", choices=MEASURES, default=[m for m in MEASURES if m != "memory"],
                        help="what to measure (default: all but memory)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads, also passed to the commands")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each time measurement (median reported)")
    parser.add_argument("--sequence", default="dance-twirl", help="DAVIS 2016 val sequence")
    parser.add_argument("--synthetic-frames", type=int, default=66, help="length of the synthetic videos")
    parser.add_argument("--baseline-ref", default="d2036d4", help="git revision the command is compared with")
    parser.add_argument("--shared", type=Path, default=REPO.parent / "shared",
                        help="folder holding data/davis2016 (default: ../shared)")
    parser.add_argument("--frames", type=int, help=argparse.SUPPRESS)  # smoke runs: the DAVIS sequence's first N frames
    parser.add_argument("--finetune-steps", type=int, help=argparse.SUPPRESS)  # smoke runs: this many fine-tuning steps everywhere
    args = parser.parse_args()
    if args.rounds < 1 or args.threads < 1 or args.synthetic_frames < 3 or (args.frames is not None and args.frames < 3):
        parser.error("need --rounds >= 1, --threads >= 1 and at least 3 frames")
    return args


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo where there is one)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def print_table(title: str, header: list[str], rows: list[list[str]]) -> None:
    """A Markdown table under a heading, flushed at once."""
    rule = "|---|" + "---:|" * (len(header) - 1)
    lines = [f"\n### {title}\n", "| " + " | ".join(header) + " |", rule, *("| " + " | ".join(row) + " |" for row in rows)]
    print("\n".join(lines), flush=True)


def round_robin(variants: dict[str, Callable[[], dict[str, Any]]], rounds: int) -> dict[str, dict[str, Any]]:
    """Run the variants in turn, ``rounds`` times; per variant the median of each float it returned, else the last value."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            results[name].append(run())
    return {name: {key: statistics.median(r[key] for r in runs) if isinstance(value, float) else value
                   for key, value in runs[-1].items()} for name, runs in results.items()}


def jf_mean(truth: np.ndarray, predicted: np.ndarray) -> float:
    """J&F mean over the objects of the first frame and the frames but the first and last."""
    if len(predicted) != len(truth):
        raise RuntimeError(f"{len(predicted)} predicted masks for {len(truth)} frames")
    ids = object_ids(truth[0])
    scores = [np.mean(frame_scores(truth[t], predicted[t], ids), axis=1) for t in range(1, len(truth) - 1)]
    return float(np.mean(scores))


def first_video(objects: int, frames: int) -> SyntheticVideo:
    """The synthetic video of the first seed (0, 1, ...) with ``objects`` objects all present on its first frame."""
    for seed in itertools.count():
        video = generate_video(seed, num_frames=frames, size=SIZE, num_objects=objects)
        if len(object_ids(video.labels[0])) == objects:
            return video
    raise AssertionError("unreachable")


@functools.cache
def object_video(objects: int, frames: int) -> SyntheticVideo:
    """:func:`first_video`, generated once per run."""
    return first_video(objects, frames)


@functools.cache
def shipped_parent() -> tuple[torch.nn.Module, SegmentConfig]:
    """The shipped parent network and the default preset's settings for it."""
    parents, metadata = load_parents(None, "cpu")
    return parents[0], for_parent(segment_config("default"), metadata)


def with_steps(config: SegmentConfig, steps: int | None) -> SegmentConfig:
    """``config`` with ``steps`` fine-tuning steps (smoke runs), or as it is for None."""
    return config if steps is None else replace(config, finetune=replace(config.finetune, steps=steps))


def davis_files(args: argparse.Namespace) -> tuple[list[Path], np.ndarray]:
    """The DAVIS sequence's frame files (the first ``--frames``) and its binary ground truth ``(T, H, W)``."""
    root = args.shared / "data" / "davis2016"
    frames = sorted((root / "JPEGImages" / "240p" / args.sequence).glob("*.jpg"))[: args.frames]
    if not frames:
        raise SystemExit(f"no frames in {root / 'JPEGImages' / '240p' / args.sequence}")
    annotations = root / "Annotations" / "240p" / args.sequence
    truth = np.stack([(np.asarray(Image.open(annotations / f"{path.stem}.png")) > 0).astype(np.uint8) for path in frames])
    return frames, truth


def davis_arrays(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray]:
    """The DAVIS sequence's RGB frames ``(T, H, W, 3)`` in memory and its ground truth."""
    frames, truth = davis_files(args)
    return np.stack([np.asarray(Image.open(path).convert("RGB")) for path in frames]), truth


def davis_clip(args: argparse.Namespace, tmp: Path) -> Clip:
    """The DAVIS sequence's frames copied to ``tmp/davis/<sequence>`` and its first mask as a binary palette PNG."""
    frames, truth = davis_files(args)
    folder = tmp / "davis" / args.sequence
    folder.mkdir(parents=True)
    for path in frames:
        shutil.copy(path, folder / path.name)
    write_mask(tmp / "davis" / "first.png", truth[0])
    return Clip(folder, tmp / "davis" / "first.png", truth)


def synthetic_clip(video: SyntheticVideo, folder: Path) -> Clip:
    """``video`` written as JPEG frames 00000.jpg, ... (quality 95) in ``folder``, its first labels next to it."""
    folder.mkdir(parents=True)
    for index, frame in enumerate(video.frames):
        Image.fromarray(frame).save(folder / f"{index:05d}.jpg", quality=95)
    mask = folder.parent / f"{folder.name}-first.png"
    write_mask(mask, video.labels[0])
    return Clip(folder, mask, video.labels)


def command_env(src: Path) -> dict[str, str]:
    """The commands' environment: this one, with ``src`` first on the import path."""
    return {**os.environ, "PYTHONPATH": str(src)}


def segment_command(clip: Clip, out: Path, args: argparse.Namespace, extra: tuple[str, ...] = ()) -> list[str]:
    """The user's ``masktrack segment`` command line on ``clip``, writing ``out``."""
    command = [sys.executable, "-m", "masktrack", "segment", str(clip.folder), "--mask", str(clip.mask), "--out", str(out),
               "--quiet", "--overwrite", "--device", "cpu", "--threads", str(args.threads)]
    if args.finetune_steps is not None:
        command += ["--finetune-steps", str(args.finetune_steps)]
    return command + list(extra)


def run_segment(src: Path, clip: Clip, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Seconds of ``masktrack segment`` from the tree at ``src`` on ``clip``, and the labels it wrote."""
    start = time.perf_counter()
    done = subprocess.run(segment_command(clip, out, args), env=command_env(src), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise RuntimeError(f"masktrack segment ({src}) failed:\n{done.stderr[-3000:]}")
    paths = sorted((out / clip.folder.name).glob("*.png"))
    return {"seconds": seconds, "labels": np.stack([np.asarray(Image.open(path)) for path in paths])}


@contextlib.contextmanager
def baseline_worktree(ref: str, tmp: Path) -> Iterator[Path]:
    """The ``src`` folder of revision ``ref`` checked out in a temporary git worktree (removed afterwards)."""
    path = tmp / "baseline"
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), ref], check=True, capture_output=True)
    try:
        found = subprocess.run([sys.executable, "-c", "import masktrack; print(masktrack.__file__)"],
                               env=command_env(path / "src"), check=True, capture_output=True, text=True).stdout.strip()
        if not Path(found).resolve().is_relative_to(path.resolve()):
            raise RuntimeError(f"the baseline imports masktrack from {found}, not from {path}")
        yield path / "src"
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False, capture_output=True)


def measure_command(args: argparse.Namespace, tmp: Path) -> None:
    """Table: the whole command's seconds old and new, their ratio and each output's J&F, per input."""
    clips = {f"DAVIS {args.sequence}": davis_clip(args, tmp),
             "synthetic, 3 objects": synthetic_clip(object_video(3, args.synthetic_frames), tmp / "synthetic" / "synthetic-3")}
    rows = []
    with baseline_worktree(args.baseline_ref, tmp) as old_src:
        for number, (name, clip) in enumerate(clips.items()):
            trees = {"old": old_src, "new": REPO / "src"}
            result = round_robin({tree: functools.partial(run_segment, src, clip, tmp / "out" / f"{tree}-{number}", args)
                                  for tree, src in trees.items()}, args.rounds)
            old, new = result["old"], result["new"]
            rows.append([name, str(len(clip.truth)), f"{old['seconds']:.1f}", f"{new['seconds']:.1f}",
                         f"{old['seconds'] / new['seconds']:.2f}", f"{jf_mean(clip.truth, old['labels']):.3f}",
                         f"{jf_mean(clip.truth, new['labels']):.3f}"])
    print_table(f"Whole command: `python -m masktrack segment` at {args.baseline_ref} (old) and this tree (new)",
                ["input", "frames", "old (s)", "new (s)", "old/new", "J&F old", "J&F new"], rows)


def warm_up(parent: torch.nn.Module, config: PropagateConfig, runtimes: list[str]) -> None:
    """Convert ``parent`` once for each runtime, untimed: the first conversion also imports the runtime and the exporter."""
    for runtime in runtimes:
        Propagator({1: parent}, replace(config, runtime=runtime), "cpu")


def network_seconds(network: torch.nn.Module, image: np.ndarray, mask: np.ndarray, height: int | None, passes: int) -> float:
    """Seconds of ``passes`` forward passes of batch 1 at the frame's network size (after one to warm up)."""
    size = processing_size(image.shape[:2], height)
    inputs = image_tensor(image, size, "cpu"), mask_tensor(mask > 0, size, "cpu")[None, None]
    with torch.inference_mode():
        network(*inputs)
        start = time.perf_counter()
        for _ in range(passes):
            network(*inputs)
        return time.perf_counter() - start


def runtime_pass(runtime: str, parent: torch.nn.Module, config: PropagateConfig, frames: np.ndarray,
                 first: np.ndarray) -> dict[str, Any]:
    """Conversion, stepping and network seconds of one runtime's Propagator over ``frames``, and its labels."""
    config = replace(config, runtime=runtime)
    start = time.perf_counter()
    propagator = Propagator({1: parent}, config, "cpu")
    conversion = time.perf_counter() - start
    propagator.step(frames[0], first)
    start = time.perf_counter()
    labels = np.stack([propagator.step(frame).labels for frame in frames[1:]])
    steps = time.perf_counter() - start
    network = network_seconds(propagator.models[1], frames[0], first, config.size, len(frames) - 1)
    return {"conversion": conversion, "steps": steps, "network": network, "labels": labels}


def measure_runtimes(args: argparse.Namespace) -> None:
    """Table: per runtime, conversion seconds, network and step frames/s, ratio to torch, labels equal to torch's."""
    frames, truth = davis_arrays(args)
    parent, config = shipped_parent()
    runtimes = [runtime for runtime in RUNTIMES if installed(runtime)]
    warm_up(parent, config.propagate, runtimes)
    result = round_robin({runtime: functools.partial(runtime_pass, runtime, parent, config.propagate, frames, truth[0])
                          for runtime in runtimes}, args.rounds)
    count, torch_steps = len(frames) - 1, result["torch"]["steps"]
    rows = [[runtime, f"{r['conversion']:.2f}", f"{count / r['network']:.1f}", f"{count / r['steps']:.1f}",
             f"{torch_steps / r['steps']:.2f}", f"{np.mean(r['labels'] == result['torch']['labels']):.5f}"]
            for runtime, r in result.items()]
    missing = [runtime for runtime in RUNTIMES if runtime not in runtimes]
    print_table(f"Propagation runtimes: DAVIS {args.sequence}, {count} frames stepped, shipped parent"
                + (f" ({', '.join(missing)} not installed)" if missing else ""),
                ["runtime", "conversion (s)", "network (frames/s)", "step (frames/s)", "step vs torch",
                 "pixels labelled as torch"], rows)


def objects_pass(parent: torch.nn.Module, config: SegmentConfig, video: SyntheticVideo) -> dict[str, Any]:
    """Per-object fine-tuning, conversion and stepping seconds (runtime auto) on ``video``."""
    start = time.perf_counter()
    models = finetune(parent, [(video.frames[0], video.labels[0])], config.finetune, "cpu",
                      torch.Generator().manual_seed(0), progress=False)
    tuned = time.perf_counter()
    propagator = Propagator(models, config.propagate, "cpu")
    converted = time.perf_counter()
    propagator.step(video.frames[0], video.labels[0])
    for frame in video.frames[1:]:
        propagator.step(frame)
    return {"finetune": tuned - start, "conversion": converted - tuned, "steps": time.perf_counter() - converted,
            "propagation": time.perf_counter() - tuned, "runtime": propagator.runtime}


def measure_objects(args: argparse.Namespace) -> None:
    """Table: fine-tuning and propagation seconds with 1 and 3 objects, and time(3)/time(1) against the target, for
    one network per object (the default) and one shared network."""
    parent, config = shipped_parent()
    config = with_steps(config, args.finetune_steps)
    warm_up(parent, config.propagate, [config.propagate.runtime])
    videos = {count: object_video(count, args.synthetic_frames) for count in (1, 3)}
    modes = {mode: replace(config, finetune=replace(config.finetune, mode=mode)) for mode in ("per_object", "shared")}
    result = round_robin({f"{mode} {count}": functools.partial(objects_pass, parent, modes[mode], video)
                          for mode in modes for count, video in videos.items()}, args.rounds)
    keys = ("finetune", "conversion", "steps", "propagation")
    rows = []
    for mode in modes:
        rows += [[mode, f"{count} object{'s' * (count > 1)}", *(f"{result[f'{mode} {count}'][key]:.2f}" for key in keys), ""]
                 for count in videos]
        rows.append([mode, "3 objects / 1 object", *(f"{result[f'{mode} 3'][key] / result[f'{mode} 1'][key]:.2f}"
                                                     for key in keys), "2.00"])
    print_table(f"Many objects: synthetic {SIZE[1]}x{SIZE[0]}, {args.synthetic_frames} frames, "
                f"runtime {result['per_object 1']['runtime']}",
                ["fine-tuning mode", "objects", "fine-tuning (s)", "conversion (s)", "steps (s)",
                 "propagation incl. conversion (s)", "target ratio"], rows)


def finetune_pass(parent: torch.nn.Module, config: SegmentConfig, image: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Seconds of fine-tuning with ``config`` on one annotated frame."""
    start = time.perf_counter()
    finetune(parent, [(image, labels)], config.finetune, "cpu", torch.Generator().manual_seed(0), progress=False)
    return {"seconds": time.perf_counter() - start}


def measure_finetune(args: argparse.Namespace) -> None:
    """Table: fine-tuning seconds per object, the baseline default's settings against the current default's."""
    frames, truth = davis_arrays(args)
    parent, config = shipped_parent()
    configs = {"baseline default": replace(config, finetune=replace(config.finetune, steps=50, batch_size=4, width=None)),
               "current default": config}
    configs = {name: with_steps(c, args.finetune_steps) for name, c in configs.items()}
    result = round_robin({name: functools.partial(finetune_pass, parent, c, frames[0], truth[0]) for name, c in configs.items()},
                         args.rounds)
    objects = len(object_ids(truth[0]))
    baseline = result["baseline default"]["seconds"]
    rows = [[name, str(c.finetune.steps), str(c.finetune.batch_size), str(c.finetune.width or "frame"),
             f"{result[name]['seconds'] / objects:.2f}", f"{baseline / result[name]['seconds']:.2f}"]
            for name, c in configs.items()]
    print_table(f"Fine-tuning per object: DAVIS {args.sequence} first frame, {objects} object(s)",
                ["settings", "steps", "batch", "crop width", "seconds per object", "baseline/this"], rows)


def peak_rss_mib(command: list[str], env: dict[str, str]) -> float:
    """Peak resident memory (MiB) of ``command`` run in a fresh child of a small wrapper."""
    done = subprocess.run([sys.executable, "-c", RSS_WRAPPER, *command], env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return int(done.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def measure_memory(args: argparse.Namespace, tmp: Path) -> None:
    """Table: peak RSS of `masktrack segment --finetune-steps 0` on 1-object videos of 150 and 2400 frames."""
    peaks = {}
    for frames in MEMORY_FRAMES:
        clip = synthetic_clip(first_video(1, frames), tmp / "memory" / f"synthetic-{frames}")
        command = segment_command(clip, tmp / "memory-out" / str(frames), args, ("--finetune-steps", "0"))
        peaks[frames] = peak_rss_mib(command, command_env(REPO / "src"))
    short, long = MEMORY_FRAMES
    rows = [[f"{frames} frames", f"{peak:.0f}"] for frames, peak in peaks.items()]
    rows.append([f"{long} / {short} frames", f"{peaks[long] / peaks[short]:.3f} (target at most 1.10)"])
    print_table("Memory: peak RSS of `masktrack segment --finetune-steps 0` (this tree), synthetic 1-object videos",
                ["video", "peak RSS (MiB)"], rows)


def main() -> None:
    """Print the header line, then each chosen measurement's table as it is measured."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    runtimes = ", ".join(runtime for runtime in RUNTIMES if installed(runtime))
    print(f"{date.today()}, {cpu_name()} ({os.cpu_count()} cores), torch {torch.__version__}, {args.threads} threads, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, runtimes installed: {runtimes}, {args.rounds} round(s), "
          f"median wall-clock times", flush=True)
    with tempfile.TemporaryDirectory(prefix="cpu-speed-") as folder:
        tmp = Path(folder)
        measures = {"command": lambda: measure_command(args, tmp), "runtimes": lambda: measure_runtimes(args),
                    "objects": lambda: measure_objects(args), "finetune": lambda: measure_finetune(args),
                    "memory": lambda: measure_memory(args, tmp)}
        for name in MEASURES:
            if name in args.measure:
                measures[name]()


if __name__ == "__main__":
    main()
