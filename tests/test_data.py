"""Image reading (modes, sizes, EXIF, bad files), mask decoding, pair discovery."""

import io

import numpy as np
import pytest
from PIL import Image

from segdemo.data import masks as data
from segdemo.data.images import load_image, resize_image, resize_mask
from segdemo.data.masks import decode_mask
from segdemo.data.pairs import find_pairs, load_pair, load_resized_pairs, match_by_stem
from segdemo.errors import InputError


def encoded(image, fmt="PNG", **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


@pytest.mark.parametrize("mode", ["L", "LA", "P", "RGBA", "RGB", "CMYK", "I;16", "I", "F", "1"])
def test_every_mode_becomes_rgb_uint8(mode):
    base = Image.fromarray(np.arange(48 * 64, dtype=np.uint8).reshape(48, 64) % 251).convert("RGB")
    wide_types = {"I;16": (np.uint16, 257), "I": (np.int32, 1000), "F": (np.float32, 1000)}
    if mode in wide_types:  # 16/32-bit and float images with values far above 255
        dtype, factor = wide_types[mode]
        image = Image.fromarray((np.asarray(base.convert("L"), np.float64) * factor).astype(dtype))
    else:
        image = base.convert(mode)
    fmt = {"CMYK": "JPEG", "F": "TIFF", "I": "TIFF"}.get(mode, "PNG")
    array = load_image(encoded(image, fmt))
    assert array.shape == (48, 64, 3) and array.dtype == np.uint8
    if mode in ("I;16", "I", "F"):  # rescaled, not clipped to white
        assert array.min() < 50 and array.max() > 200


def test_sixteen_bit_png_keeps_contrast():
    ramp = (np.linspace(0, 65535, 100).astype(np.uint16)[None, :]).repeat(10, 0)
    array = load_image(encoded(Image.fromarray(ramp)))
    assert array[0, 0, 0] == 0 and array[0, -1, 0] == 255


def test_transparency_is_composited_on_white():
    rgba = np.zeros((4, 4, 4), np.uint8)  # fully transparent black
    assert (load_image(encoded(Image.fromarray(rgba, "RGBA"))) == 255).all()


@pytest.mark.parametrize("size", [(1, 1), (37, 1001), (1001, 37), (1, 10000)])
def test_odd_sizes(size):
    width, height = size
    array = load_image(encoded(Image.new("RGB", size, (10, 20, 30))))
    assert array.shape == (height, width, 3)


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (255, 0, 0))
    image.paste((0, 0, 255), (0, 0, 10, 20))  # blue strip on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # stored rotated: viewers turn it 90° clockwise
    array = load_image(encoded(image, "JPEG", exif=exif.tobytes(), quality=95))
    assert array.shape == (40, 20, 3)
    assert array[2, 10, 2] > 200 and array[2, 10, 0] < 60  # blue strip now at the top


def test_animated_gif_gives_first_frame():
    frames = [Image.new("P", (8, 8), color) for color in (1, 2)]
    frames[0].putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    frames[1].putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * 759)
    payload = encoded(frames[0], "GIF", save_all=True, append_images=frames[1:])
    assert tuple(load_image(payload)[0, 0]) == (255, 0, 0)


def test_bad_files_give_clear_errors(tmp_path):
    text = tmp_path / "note.png"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not a readable image"):
        load_image(text)
    with pytest.raises(InputError, match="not a readable image"):
        load_image(b"")
    truncated = encoded(Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)),
                        "JPEG")
    with pytest.raises(InputError, match="truncated or corrupt"):
        load_image(truncated[: len(truncated) // 2])
    with pytest.raises(InputError, match="not found"):
        load_image(tmp_path / "missing.jpg")


def test_decompression_bomb_is_refused_before_decoding():
    bomb = encoded(Image.new("1", (10_000, 10_000)))  # 100 MP, a few KB on disk
    with pytest.raises(InputError, match="too large .*100 MP.*limit is 40 megapixels"):
        load_image(bomb)


def test_array_inputs():
    assert load_image(np.zeros((5, 6), np.float32)).shape == (5, 6, 3)
    assert load_image(np.zeros((5, 6, 4), np.uint8)).shape == (5, 6, 3)
    with pytest.raises(InputError):
        load_image(np.zeros((5,), np.uint8))


# --- masks ---


def test_binary_mask_with_antialiasing_is_thresholded():
    mask = np.array([[0, 0, 255, 255], [0, 127, 128, 255], [3, 250, 5, 255]], np.uint8)
    expected = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 1, 0, 1]], np.uint8)
    assert np.array_equal(decode_mask(mask, "binary"), expected)
    assert np.array_equal(decode_mask(mask, "auto", num_classes=2), expected)


def test_pure_binary_mask_detected_as_binary():
    mask = np.array([[0, 255], [255, 0]], np.uint8)
    assert np.array_equal(decode_mask(mask), [[0, 1], [1, 0]])


def test_index_mask_and_class_count_check():
    mask = np.array([[0, 1], [2, 255]], np.uint8)
    assert np.array_equal(decode_mask(mask, "auto", num_classes=3), mask)
    with pytest.raises(InputError, match=r"class values \[2\] but the model has 2 classes"):
        decode_mask(mask, "index", num_classes=2)


def test_trimap():
    assert np.array_equal(decode_mask(np.array([[1, 2, 3]]), "trimap"), [[0, 1, 2]])
    with pytest.raises(InputError, match="not an Oxford trimap"):
        decode_mask(np.array([[0, 1]]), "trimap")


def test_palette_mask_nearest_colour_and_unexpected_colours():
    palette = [(0, 0, 0), (255, 0, 0), (0, 0, 255)]
    rgb = np.array([[[0, 0, 0], [250, 5, 5]], [[0, 0, 255], [255, 0, 0]]], np.uint8)
    assert np.array_equal(decode_mask(rgb, "auto", palette=palette), [[0, 1], [2, 1]])
    rgb[0, 0] = (0, 255, 0)
    with pytest.raises(InputError, match=r"colours not in the class palette: \(0,255,0\)"):
        decode_mask(rgb, palette=palette)
    with pytest.raises(InputError, match="no class colours"):
        decode_mask(rgb)


def test_palette_png_keeps_indices(tmp_path):
    indexed = Image.fromarray(np.array([[0, 1], [2, 1]], np.uint8), "P")
    indexed.putpalette([0, 0, 0, 200, 10, 10, 10, 10, 200] + [0] * 759)
    indexed.save(tmp_path / "m.png")
    assert np.array_equal(data.load_mask_array(tmp_path / "m.png"), [[0, 1], [2, 1]])


# --- pairs ---


def write_pair(image_dir, mask_dir, stem, size=(8, 6), mask_size=None, mask_name=None):
    image_dir.mkdir(parents=True, exist_ok=True)
    mask_dir.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (100, 50, 0)).save(image_dir / f"{stem}.jpg")
    mask = np.zeros((mask_size or size)[::-1], np.uint8)
    mask[:, : mask.shape[1] // 2] = 255
    Image.fromarray(mask).save(mask_dir / (mask_name or f"{stem}.png"))


def test_images_masks_layout_pairs_by_stem(tmp_path):
    write_pair(tmp_path / "images", tmp_path / "masks", "a")
    write_pair(tmp_path / "images", tmp_path / "masks", "b", mask_name="b_mask.png")
    write_pair(tmp_path / "images", tmp_path / "masks", "c", mask_name="zzz.png")
    search = find_pairs(tmp_path)
    assert search.layout == "images+masks"
    assert [p.name for p in search.pairs] == ["a", "b"]
    assert [p.name for p in search.unpaired_images] == ["c.jpg"]
    assert [p.name for p in search.unpaired_masks] == ["zzz.png"]
    image, mask = load_pair(search.pairs[1], num_classes=2)
    assert image.shape == (6, 8, 3) and mask.tolist()[0] == [1, 1, 1, 1, 0, 0, 0, 0]


def test_seed_layout_and_split_file(tmp_path):
    for stem in ("x", "y"):
        write_pair(tmp_path / "Images", tmp_path / "Labels", stem)
    (tmp_path / "test.txt").write_text("y\n")
    assert find_pairs(tmp_path).layout == "seed"
    assert [p.name for p in find_pairs(tmp_path, "test").pairs] == ["y"]


def test_oxford_layout_with_trimaps_and_split(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "annotations" / "trimaps").mkdir(parents=True)
    for stem in ("Cat_1", "dog_2"):
        Image.new("RGB", (5, 4)).save(tmp_path / "images" / f"{stem}.jpg")
        Image.fromarray(np.full((4, 5), 3, np.uint8)).save(tmp_path / "annotations" / "trimaps" / f"{stem}.png")
    (tmp_path / "annotations" / "test.txt").write_text("dog_2 1 2 1\n")
    search = find_pairs(tmp_path, "test")
    assert search.layout == "oxford" and [p.name for p in search.pairs] == ["dog_2"]
    assert (load_pair(search.pairs[0])[1] == 2).all()


def test_size_mismatch_is_explained(tmp_path):
    write_pair(tmp_path / "images", tmp_path / "masks", "a", size=(8, 6), mask_size=(4, 3))
    with pytest.raises(InputError, match="a.jpg is 8x6 but its mask a.png is 4x3"):
        load_pair(find_pairs(tmp_path).pairs[0])


def test_unknown_layout(tmp_path):
    with pytest.raises(InputError, match="no known layout"):
        find_pairs(tmp_path)


def test_duplicate_stems_pair_once(tmp_path):
    images = [tmp_path / "a.jpg", tmp_path / "a.png"]
    pairs, unpaired_images, _ = match_by_stem(images, [tmp_path / "masks" / "a.png"])
    assert len(pairs) == 1 and unpaired_images == [tmp_path / "a.png"]


def test_camvid_layout_ignores_unlabelled(tmp_path):
    (tmp_path / "test").mkdir()
    (tmp_path / "testannot").mkdir()
    Image.new("RGB", (6, 4)).save(tmp_path / "test" / "f001.png")
    Image.fromarray(np.array([[0, 3, 10, 11, 11, 5]] * 4, np.uint8)).save(tmp_path / "testannot" / "f001.png")
    search = find_pairs(tmp_path, "test")
    assert search.layout == "camvid"
    _, mask = load_pair(search.pairs[0], num_classes=11)
    assert mask[0].tolist() == [0, 3, 10, 255, 255, 5]  # 11 = unlabelled -> ignore


def test_non_square_resizing_and_loading(tmp_path):
    write_pair(tmp_path / "images", tmp_path / "masks", "a", size=(8, 6))
    images, masks = load_resized_pairs(find_pairs(tmp_path).pairs, (64, 32), num_classes=2)
    assert images.shape == (1, 32, 64, 3) and masks.shape == (1, 32, 64)
    assert resize_image(np.zeros((6, 8, 3), np.uint8), (16, 12)).shape == (12, 16, 3)
    same = np.zeros((12, 16), np.uint8)
    assert resize_mask(same, (16, 12)) is same  # already the size: no copy
