"""Atomic outputs: a result appears under its final name only once it is complete.

The ``check_output_*`` functions tell, before any work starts, whether an output can be written
where the user asked for it: they raise one-line InputErrors naming the user's path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from masktrack.errors import InputError

PARTIAL_SUFFIX = ".partial"  # an output folder being written: <name>.partial


def check_output_dir(path: str | Path, overwrite: bool = False) -> None:
    """InputError naming ``path`` unless :func:`atomic_output_dir` can create the folder there: an existing
    ``path`` is refused unless ``overwrite``, and its nearest existing parent must be a writable folder."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(f"{path}: output exists (pass --overwrite to replace it)")
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: exists and is not a folder")
    _check_writable_location(path)


def check_output_file(path: str | Path) -> None:
    """InputError naming ``path`` unless a file can be written there: not a folder, in a writable folder."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name")
    _check_writable_location(path)


def _check_writable_location(path: Path) -> None:
    """The nearest existing folder above ``path`` accepts new files (tried with a temporary file)."""
    location = path.parent
    while not location.exists() and location != location.parent:
        location = location.parent
    if not location.is_dir():
        raise InputError(f"{path}: cannot be created ({location} is not a folder)")
    try:
        with tempfile.TemporaryFile(dir=location, prefix=".masktrack-write-test-"):
            pass
    except OSError as error:
        raise InputError(f"{path}: cannot write in {location} ({error.strerror or error})") from None


@contextmanager
def atomic_output_dir(path: str | Path, overwrite: bool = False) -> Iterator[Path]:
    """Yield a sibling ``<name>.partial`` folder; rename it to ``path`` on success.

    An existing ``path`` is refused unless ``overwrite`` (see :func:`check_output_dir`). On failure
    the partial folder is removed, so nothing that looks complete is left behind.
    """
    path = Path(path)
    check_output_dir(path, overwrite)
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    shutil.rmtree(partial, ignore_errors=True)
    try:
        partial.mkdir(parents=True)
    except OSError as error:
        raise InputError(f"{path}: cannot create the folder ({error.strerror or error})") from None
    try:
        yield partial
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    os.replace(partial, path)


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path in the same folder; move it onto ``path`` on success, with the permissions the
    umask gives new files (whatever the writer used)."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.tmp-", suffix=path.suffix)
    except OSError as error:
        raise InputError(f"{path}: cannot write ({error.strerror or error})") from None
    os.close(handle)
    try:
        yield Path(temporary)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes owner-only files, and some writers replace them
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _umask() -> int:
    """The process's file-creation mask."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
