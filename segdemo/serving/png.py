"""A small, fast PNG encoder for the app's outputs (8-bit grey, RGB, RGBA, or palette images).

Why not PIL: for photo-like RGB images (the overlay) PIL's encoder spends most of its time choosing row
filters; the "sub" filter on every row, computed with numpy, then zlib at level 1 (which releases the GIL)
gives files of about the same size in half the time (500x375 overlay: 7 ms and 263 KB vs 14 ms and 249 KB).
Large images are deflated in two halves on two threads and joined into one zlib stream (as pigz does):
the first half ends on a byte-aligned sync flush, the second is a raw deflate stream that ends the data,
and the Adler-32 checksum is computed over the whole.
"""

import struct
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
COLOR_TYPES = {1: 0, 3: 2, 4: 6}  # channels -> PNG colour type (0 grey, 2 RGB, 6 RGBA; 3 palette: explicit)
SUB_FILTER = 1
ZLIB_LEVEL = 1
PARALLEL_MIN_BYTES = 256 * 1024  # below this, one thread is as fast
DEFLATE_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="png-deflate")


def chunk(tag, data):
    return b"".join((struct.pack(">I", len(data)), tag, data, struct.pack(">I", zlib.crc32(data, zlib.crc32(tag)))))


def raw_deflate(data, last):
    compressor = zlib.compressobj(ZLIB_LEVEL, zlib.DEFLATED, -15)  # raw: no zlib header or checksum
    return compressor.compress(data) + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)


def zlib_stream(data):
    """zlib-compress `data` (a bytes-like object), in two halves on two threads when it is large."""
    data = memoryview(data).cast("B")  # flat bytes, whatever the buffer's shape
    if len(data) < PARALLEL_MIN_BYTES:
        return zlib.compress(data, ZLIB_LEVEL)
    middle = len(data) // 2
    first = DEFLATE_THREADS.submit(raw_deflate, data[:middle], False)
    second = DEFLATE_THREADS.submit(raw_deflate, data[middle:], True)
    header = b"\x78\x01"  # deflate, 32K window, fastest-compression flag
    return header + first.result() + second.result() + struct.pack(">I", zlib.adler32(data))


def png_bytes(array, palette=None):
    """Encode an (H, W) uint8 (grey, or palette indices when `palette` (N, 3) is given), (H, W, 3) uint8 RGB
    or (H, W, 4) uint8 RGBA (a cut-out: straight, not premultiplied alpha) array as PNG."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    height, width = array.shape[:2]
    channels = 1 if array.ndim == 2 else array.shape[2]
    if channels not in COLOR_TYPES:
        raise ValueError(f"expected HxW, HxWx3 or HxWx4 uint8, got shape {array.shape}")
    color_type = 3 if palette is not None else COLOR_TYPES[channels]
    rows = array.reshape(height, width * channels)
    scanlines = np.empty((height, width * channels + 1), np.uint8)
    scanlines[:, 0] = SUB_FILTER
    scanlines[:, 1:] = rows
    scanlines[:, 1 + channels:] -= rows[:, :-channels]  # "sub": each byte minus the one a pixel left (mod 256)
    header = struct.pack(">IIBBBBB", width, height, 8, color_type, 0, 0, 0)
    parts = [SIGNATURE, chunk(b"IHDR", header)]
    if palette is not None:
        parts.append(chunk(b"PLTE", np.asarray(palette, np.uint8).reshape(-1, 3)[:256].tobytes()))
    parts += [chunk(b"IDAT", zlib_stream(scanlines.data)), chunk(b"IEND", b"")]
    return b"".join(parts)
