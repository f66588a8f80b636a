"""Fast decoding of the PNGs that mask datasets are made of: 8-bit, one sample per pixel.

DAVIS masks are 8-bit palette PNGs whose rows are stored unfiltered, or 8-bit greyscale PNGs
whose rows use the "Sub" filter (each byte holds the difference to its left neighbour). For
these, decoding is one ``zlib`` inflate plus, for "Sub", a prefix sum along each row, computed
here from the few non-zero differences (masks are constant between edges). General decoders
spend as long again unfiltering byte by byte. Every other PNG is left to a general decoder.

``masktrack.data.masks.read_mask`` decodes mask files with this, so the evaluator, the data
readers and the report all read masks at this speed through that one function.
"""

from __future__ import annotations

import io
import struct
import zlib

import cv2
import numpy as np
from PIL import Image

SIGNATURE = b"\x89PNG\r\n\x1a\n"
GREY, PALETTE = 0, 3  # IHDR colour types with one sample per pixel
FILTER_NONE, FILTER_SUB = 0, 1


def decode_samples(data: bytes) -> tuple[np.ndarray, int] | None:
    """``(samples, colour_type)`` of an 8-bit, non-interlaced greyscale or palette PNG.

    ``samples`` is ``(H, W)`` uint8: grey levels, or palette indices (not colours). Rows
    filtered otherwise than None/Sub go to OpenCV (grey) or Pillow (palette). Returns None for
    any other PNG or a malformed file, so that the caller can use a general reader (which also
    reports errors).
    """
    chunks = _chunks(data)
    if chunks is None or not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        return None
    width, height, bit_depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if bit_depth != 8 or colour_type not in (GREY, PALETTE) or interlace or width == 0 or height == 0:
        return None
    stride = width + 1  # a filter-type byte, then one byte per pixel
    inflater = zlib.decompressobj()
    try:  # at most one byte more than the image needs: no decompression bomb
        raw = inflater.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"), height * stride + 1)
    except zlib.error:
        return None
    if len(raw) != height * stride or not inflater.eof:  # eof: the stream's checksum was verified
        return None
    rows = np.frombuffer(raw, dtype=np.uint8).reshape(height, stride)
    filters = rows[:, 0]
    if (filters == FILTER_NONE).all():
        return rows[:, 1:], colour_type
    if (filters == FILTER_SUB).all():
        return _undo_sub_filter(rows), colour_type
    samples = _decode_general(data, colour_type)
    return None if samples is None or samples.shape != (height, width) else (samples, colour_type)


def _decode_general(data: bytes, colour_type: int) -> np.ndarray | None:
    if colour_type == GREY:
        return cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    try:
        with Image.open(io.BytesIO(data)) as image:  # OpenCV would turn palette indices into colours
            return np.asarray(image)
    except (OSError, ValueError):
        return None


def _chunks(data: bytes) -> list[tuple[bytes, bytes]] | None:
    """The ``(type, body)`` chunks up to IEND, or None when the layout is broken."""
    if data[:8] != SIGNATURE:
        return None
    chunks, position = [], 8
    while position + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, position)
        kind = data[position + 4 : position + 8]
        end = position + 12 + length
        if end > len(data):
            return None
        if kind == b"IEND":
            return chunks
        chunks.append((kind, data[position + 8 : end - 4]))
        position = end
    return None


def _undo_sub_filter(rows: np.ndarray) -> np.ndarray:
    """Pixels of "Sub"-filtered rows ``(H, 1 + W)``: each row's running sum modulo 256.

    The pixels are constant between the non-zero differences, so the running sums are taken
    over those only. The filter-type bytes (1, so non-zero) mark where each row starts over.
    """
    height, stride = rows.shape
    flat = rows.ravel()
    changes = _nonzero_positions(flat)
    at_row_start = changes % stride == 0
    steps = flat[changes].astype(np.int64)
    steps[at_row_start] = 0
    totals = np.cumsum(steps)
    row_start = np.maximum.accumulate(np.where(at_row_start, np.arange(changes.size), 0))
    levels = ((totals - totals[row_start]) & 255).astype(np.uint8)
    lengths = np.diff(changes, append=flat.size)
    return np.repeat(levels, lengths).reshape(height, stride)[:, 1:]


def _nonzero_positions(flat: np.ndarray) -> np.ndarray:
    """Sorted indices of the non-zero bytes, scanned 8 at a time (they are few)."""
    whole = flat.size - flat.size % 8
    words = np.flatnonzero(flat[:whole].view(np.uint64))
    word_rows, byte_columns = np.nonzero(flat[:whole].reshape(-1, 8)[words])
    return np.concatenate([words[word_rows] * 8 + byte_columns, np.flatnonzero(flat[whole:]) + whole])
