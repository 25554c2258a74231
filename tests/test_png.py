"""The PNG encoder: PIL reads back exactly what was written, in every mode the app writes."""

import io

import numpy as np
import pytest
from PIL import Image

from segdemo.serving.png import png_bytes


@pytest.mark.parametrize("shape", [(1, 1), (375, 500), (7, 3), (375, 500, 3), (1, 1, 3), (2, 9, 3), (375, 500, 4),
                                   (1, 1, 4), (2, 9, 4)])
def test_round_trip(rng, shape):
    array = rng.integers(0, 256, shape, dtype=np.uint8)
    image = Image.open(io.BytesIO(png_bytes(array)))
    assert image.mode == ("L" if len(shape) == 2 else {3: "RGB", 4: "RGBA"}[shape[2]])
    assert np.array_equal(np.asarray(image), array)


def test_rgba_cutout_keeps_colour_under_transparent_pixels(rng):
    """Straight alpha: the colour of a fully transparent pixel is kept, not multiplied out."""
    rgba = rng.integers(0, 256, (30, 40, 4), dtype=np.uint8)
    rgba[:, :20, 3] = 0
    rgba[:, 20:, 3] = 255
    image = Image.open(io.BytesIO(png_bytes(rgba)))
    assert image.mode == "RGBA" and np.array_equal(np.asarray(image)[:, :20, :3], rgba[:, :20, :3])
    assert np.array_equal(np.asarray(image)[..., 3], rgba[..., 3])


def test_palette_image_shows_class_colours(rng):
    labels = rng.integers(0, 3, (20, 30), dtype=np.uint8)
    palette = np.array([[230, 25, 75], [0, 0, 0], [255, 225, 25]], np.uint8)
    image = Image.open(io.BytesIO(png_bytes(labels, palette)))
    assert image.mode == "P"
    assert np.array_equal(np.asarray(image), labels)
    assert np.array_equal(np.asarray(image.convert("RGB")), palette[labels])


def test_rejects_other_shapes():
    with pytest.raises(ValueError, match="expected"):
        png_bytes(np.zeros((4, 4, 2), np.uint8))
    with pytest.raises(ValueError, match="expected"):
        png_bytes(np.zeros((4, 4, 5), np.uint8))


def test_two_thread_deflate_is_one_valid_zlib_stream(rng):
    import zlib

    from segdemo.serving.png import PARALLEL_MIN_BYTES, zlib_stream

    data = rng.integers(0, 4, PARALLEL_MIN_BYTES * 3, dtype=np.uint8).tobytes()
    assert zlib.decompress(zlib_stream(data)) == data
    assert zlib.decompress(zlib_stream(data[:100])) == data[:100]


def test_numpy_buffers_of_any_shape_take_the_parallel_path(rng):
    import zlib

    from segdemo.serving.png import PARALLEL_MIN_BYTES, zlib_stream

    rows = rng.integers(0, 4, (600, PARALLEL_MIN_BYTES // 300), dtype=np.uint8)
    stream = zlib_stream(rows.data)
    assert zlib.decompress(stream) == rows.tobytes()
    assert stream != zlib.compress(rows.tobytes(), 1)  # two deflate parts, not the one-thread stream
