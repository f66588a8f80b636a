"""Pack DAVIS 2016 (240p) and the ResNet-50 ImageNet weights small enough to travel to a GPU machine.

A lent GPU machine receives at most 64 MiB with the repository. The 240p JPEG frames alone are
101 MB and the ResNet-50 weights 101 MB, so ``pack`` stores:

- each sequence's frames as one H.264 video (x264, 4:4:4 chroma; CRF 18 for val, whose frames are
  scored, 22 for train), about a quarter of the JPEGs' size;
- ``Annotations/240p`` and ``ImageSets`` unchanged;
- the ResNet-50 (imgsim's, see ``../shared/weights/README.md``; its classifier dropped) with each
  convolution's weights quantised to int8 per output channel (``KEY`` int8 and ``KEY.scale``
  float32; other tensors unchanged).

``unpack``, on the GPU machine, decodes the videos back to PNG frames in DAVIS layout and writes
the weights as float32 safetensors for ``--pretrained``. How much the video coding moves J&F is
measured in docs/results.md (same networks, original against decoded frames).

    .venv/bin/python benchmarks/device_pack.py pack --resnet50 imgsim/model.pth --ffmpeg /path/to/ffmpeg --out .device-pack
    python3 benchmarks/device_pack.py unpack --pack .device-pack --out /tmp/davis2016-unpacked
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import torch
from safetensors.torch import load_file, save_file

SHARED = Path(__file__).resolve().parents[2] / "shared"
CRF = {"val": 18, "train": 22}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    verbs = parser.add_subparsers(dest="verb", required=True)
    pack = verbs.add_parser("pack", help="build the pack (on this machine)")
    pack.add_argument("--davis", type=Path, default=SHARED / "data" / "davis2016", help="DAVIS 2016 root")
    pack.add_argument("--resnet50", type=Path, required=True, help="imgsim's model.pth (torchvision ResNet-50 layout)")
    pack.add_argument("--ffmpeg", default="ffmpeg", help="an ffmpeg with libx264")
    pack.add_argument("--out", type=Path, required=True)
    unpack = verbs.add_parser("unpack", help="restore frames and weights (on the GPU machine)")
    unpack.add_argument("--pack", type=Path, required=True)
    unpack.add_argument("--out", type=Path, required=True, help="DAVIS root to write (JPEGImages/240p holds PNG frames)")
    unpack.add_argument("--workers", type=int, default=8)
    return parser.parse_args()


def quantise(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Convolution weights as int8 per output channel plus their float32 scales; the rest unchanged."""
    packed = {}
    for key, tensor in state.items():
        if tensor.is_floating_point() and tensor.dim() == 4:
            scale = tensor.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-12) / 127
            packed[key] = torch.round(tensor / scale).to(torch.int8)
            packed[f"{key}.scale"] = scale.float()
        else:
            packed[key] = tensor.contiguous()
    return packed


def dequantise(packed: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of ``quantise`` (up to rounding)."""
    return {key: tensor.float() * packed[f"{key}.scale"] if f"{key}.scale" in packed else tensor
            for key, tensor in packed.items() if not key.endswith(".scale")}


def pack(args: argparse.Namespace) -> None:
    if shutil.which(args.ffmpeg) is None:
        raise SystemExit(f"device_pack: no ffmpeg at {args.ffmpeg!r} (pip install imageio-ffmpeg gives one)")
    if not args.resnet50.is_file():
        raise SystemExit(f"device_pack: {args.resnet50}: no such file")
    out = args.out
    if out.exists():
        shutil.rmtree(out)
    (out / "videos").mkdir(parents=True)
    shutil.copytree(args.davis / "ImageSets", out / "davis2016" / "ImageSets")
    shutil.copytree(args.davis / "Annotations" / "240p", out / "davis2016" / "Annotations" / "240p")
    frames = {}
    for split, crf in CRF.items():
        for sequence in (args.davis / "ImageSets" / f"{split}.txt").read_text().split():
            folder = args.davis / "JPEGImages" / "240p" / sequence
            names = sorted(path.name for path in folder.glob("*.jpg"))
            if names != [f"{k:05d}.jpg" for k in range(len(names))]:
                raise SystemExit(f"{folder}: frames are not numbered 00000.jpg, 00001.jpg, ...")
            frames[sequence] = len(names)
            subprocess.run([args.ffmpeg, "-loglevel", "error", "-y", "-framerate", "24", "-i", str(folder / "%05d.jpg"),
                            "-c:v", "libx264", "-preset", "veryslow", "-crf", str(crf), "-pix_fmt", "yuv444p",
                            str(out / "videos" / f"{sequence}.mp4")], check=True)
    (out / "frames.json").write_text(json.dumps(frames, indent=1))
    state = torch.load(args.resnet50, map_location="cpu", weights_only=True)
    save_file(quantise({key: value for key, value in state.items() if ".fc." not in key}), out / "resnet50-int8.safetensors")
    size = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    print(f"{out}: {size / 2**20:.1f} MiB")


def decode(video: Path, folder: Path, expected: int) -> None:
    """Write a video's frames as ``00000.png``, ...; stop if the count differs from ``expected``."""
    folder.mkdir(parents=True, exist_ok=True)
    capture = cv2.VideoCapture(str(video))
    count = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        cv2.imwrite(str(folder / f"{count:05d}.png"), frame)
        count += 1
    if count != expected:
        raise SystemExit(f"{video}: decoded {count} frames, expected {expected}")


def unpack(args: argparse.Namespace) -> None:
    frames = json.loads((args.pack / "frames.json").read_text())
    if args.out.exists():
        shutil.rmtree(args.out)
    shutil.copytree(args.pack / "davis2016", args.out)
    with ProcessPoolExecutor(args.workers) as pool:
        jobs = [pool.submit(decode, args.pack / "videos" / f"{name}.mp4", args.out / "JPEGImages" / "240p" / name, count)
                for name, count in frames.items()]
        for job in jobs:
            job.result()
    save_file(dequantise(load_file(args.pack / "resnet50-int8.safetensors")), args.out / "resnet50.safetensors")
    print(f"{args.out}: {sum(frames.values())} frames of {len(frames)} sequences, resnet50.safetensors")


if __name__ == "__main__":
    parsed = parse_args()
    pack(parsed) if parsed.verb == "pack" else unpack(parsed)
