"""Reading images safely (any mode, EXIF orientation, bombs refused from the header) and resizing them."""

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from segdemo.errors import InputError
from segdemo.limits import MAX_IMAGE_PIXELS, megapixels
from segdemo.models.cards import size_wh

# 12 MP photos pass MAX_IMAGE_PIXELS; a decompression bomb is refused before decoding.
# PIL's own guard stays as a backstop (it raises above twice this); `open_image` refuses anything above
# MAX_IMAGE_PIXELS first, from the header alone, with the image's size in the message.
Image.MAX_IMAGE_PIXELS = 4 * MAX_IMAGE_PIXELS


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")


IMAGE_FORMATS = "JPEG, PNG, WebP, BMP, GIF or TIFF"  # what IMAGE_SUFFIXES are, in words


def open_image(source):
    """Open `source` (path, bytes, file object or PIL image) lazily and refuse bombs before decoding."""
    if isinstance(source, Image.Image):
        return source
    name = Path(source).name if isinstance(source, (str, Path)) else "the upload"
    try:
        if isinstance(source, (bytes, bytearray)):
            source = io.BytesIO(source)
        image = Image.open(source)
    except FileNotFoundError:
        raise InputError(f"{name}: file not found") from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InputError(f"{name} is not a readable image; accepted: JPEG, PNG, BMP, GIF, TIFF, WebP") from None
    except Image.DecompressionBombError:
        raise too_large_error(name, None) from None
    width, height = image.size
    if width * height > MAX_IMAGE_PIXELS:
        raise too_large_error(name, (width, height))
    if width < 1 or height < 1:
        raise InputError(f"{name} is empty ({width}x{height} pixels)")
    return image


def too_large_error(name, size):
    what = f"{size[0]}x{size[1]} = {size[0] * size[1] / 1e6:.0f} MP" if size else "too many pixels"
    return InputError(f"{name} is too large ({what}); the limit is {megapixels()}")


def decode_pixels(image, name="the upload"):
    """Fully decode (first frame of animations); truncated or corrupt files raise InputError."""
    try:
        image.seek(0)
        image.load()
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise InputError(f"{name} could not be decoded (truncated or corrupt file: {error})") from None
    return image


def to_rgb_array(image):
    """Any PIL mode -> HxWx3 uint8 RGB. Transparency is composited on white; 16-bit and float images are
    rescaled to 0..255 rather than clipped."""
    mode = image.mode
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16"):
            scaled = values / 257.0
        else:
            low, high = float(np.nanmin(values)), float(np.nanmax(values))
            if mode == "F" and 0.0 <= low and high <= 1.0:
                scaled = values * 255.0
            elif 0.0 <= low and high <= 255.0:
                scaled = values
            else:
                scaled = (values - low) * (255.0 / max(high - low, 1e-12))
        gray = np.nan_to_num(scaled).clip(0, 255).round().astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(background, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def load_image(source):
    """Read an image from a path, bytes or PIL image as an HxWx3 uint8 RGB array, EXIF orientation applied."""
    if isinstance(source, np.ndarray):
        return array_to_rgb(source)
    name = Path(source).name if isinstance(source, (str, Path)) else "the upload"
    image = decode_pixels(open_image(source), name)
    try:
        image = ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block must not lose the picture  # noqa: BLE001
        pass
    return to_rgb_array(image)


def array_to_rgb(array):
    """An array from another library (HxW, HxWx1/3/4, any dtype) -> HxWx3 uint8."""
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4) or 0 in array.shape[:2]:
        raise InputError(f"expected an HxW or HxWxC image array, got shape {array.shape}")
    if array.dtype != np.uint8:
        values = array.astype(np.float64)
        high = float(np.nanmax(values)) if values.size else 0.0
        scale = 255.0 if high <= 1.0 else (255.0 / 65535.0 if high > 255.0 else 1.0)
        array = np.nan_to_num(values * scale).clip(0, 255).round().astype(np.uint8)
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    return np.ascontiguousarray(array[:, :, :3])


def display_size(width, height, max_side):
    """(width, height) scaled down, aspect kept, so that the longer side is at most `max_side`."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def resize_image(image, size):
    """HxWx3 uint8 -> size x size (or (w, h)) bilinear, uint8."""
    size = size_wh(size)
    if image.shape[:2] == (size[1], size[0]):
        return image
    return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def resize_mask(mask, size):
    """HxW class indices -> size x size (or (w, h)) nearest neighbour, so no new classes appear."""
    size = size_wh(size)
    if mask.shape[:2] == (size[1], size[0]):
        return mask
    return np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
