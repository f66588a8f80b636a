"""Uploaded videos and zips of frames, saved under fixed names in the run folder with a size limit."""

from __future__ import annotations

import re
import shutil
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath

from masktrack.errors import InputError

VIDEO_SUFFIXES = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".ogv")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
MAX_ZIP_MEMBERS = 100_000


class TooLarge(Exception):
    """An upload over the size limit (HTTP 413)."""


def upload_suffix(filename: str) -> str:
    """The saved file's suffix: the client's name's if it is a known video or ``.zip`` suffix, else ``.mp4``
    (only the suffix is looked at, and only to pick one of these fixed values)."""
    match = re.search(r"\.[A-Za-z0-9]{1,5}$", filename or "")
    suffix = match.group(0).lower() if match else ""
    return suffix if suffix in VIDEO_SUFFIXES + (".zip",) else ".mp4"


async def save_upload(chunks: AsyncIterator[bytes], path: Path, limit: int) -> int:
    """Stream the request body into ``path``; :class:`TooLarge` (and no file) past ``limit`` bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    try:
        with path.open("wb") as file:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(f"the upload is over the {limit // 2**20} MB limit (masktrack app --max-upload-mb)")
                file.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise InputError("the upload is empty")
    return size


def extract_frames(archive: Path, folder: Path, limit: int) -> Path:
    """The images of a zip, in natural order of their names, written as ``folder/<index>.<suffix>`` (names
    inside the zip never become paths); InputError without images, TooLarge past ``limit`` bytes unpacked."""
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.infolist()[:MAX_ZIP_MEMBERS]
                       if not m.is_dir() and PurePosixPath(m.filename).suffix.lower() in IMAGE_SUFFIXES
                       and not PurePosixPath(m.filename).name.startswith(".")]
            if sum(member.file_size for member in members) > limit:
                raise TooLarge(f"the zip's images unpack to over the {limit // 2**20} MB limit")
            members.sort(key=lambda member: natural_key(member.filename))
            for index, member in enumerate(members):
                suffix = PurePosixPath(member.filename).suffix.lower()
                with zipped.open(member) as source, (folder / f"{index:05d}{suffix}").open("wb") as target:
                    shutil.copyfileobj(source, target)
    except zipfile.BadZipFile as error:
        raise InputError(f"the uploaded zip cannot be read: {error}") from None
    if not any(folder.iterdir()):
        raise InputError("the uploaded zip holds no images (JPEG, PNG...)")
    return folder


def remove_uploads(folder: Path, keep: Path | None) -> None:
    """Remove the uploads in ``folder`` (``upload-*`` files and frame folders) but the one at ``keep``."""
    for path in folder.glob("upload-*"):
        if keep is None or path.resolve() != keep.resolve():
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def natural_key(name: str) -> list[int | str]:
    """Sort key with digit runs compared as numbers: frame2 < frame10."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]
