"""A corpus of bad and odd inputs, generated on the fly, run through the real handlers and through
`gradio_client` against the launched app: each gives a clear message or a correct result, never a traceback,
and the app keeps serving."""

import io
import zipfile

import gradio as gr
import numpy as np
import pytest
from gradio_client import Client, handle_file
from PIL import Image

from segdemo.errors import InputError
from segdemo.models.files import load_model_file
from segdemo.ui.finetune_tab import check_pairs
from segdemo.ui.segment_tab import segment

KEEP = "keep the base model's classes"


def encode(image, fmt, **kwargs):
    buffer = io.BytesIO()
    image.save(buffer, fmt, **kwargs)
    return buffer.getvalue()


def noise(width, height, mode="RGB", seed=0):
    channels = {"RGB": 3, "L": 1}[mode]
    array = np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(array[:, :, 0] if channels == 1 else array)


def exif_rotated():
    image = Image.new("RGB", (40, 20), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6
    return encode(image, "JPEG", exif=exif.tobytes())


def animated_gif():
    frames = [Image.new("P", (30, 20), index) for index in (1, 2)]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:])


def sixteen_bit():
    return encode(Image.fromarray((np.arange(64 * 48).reshape(48, 64) * 20).astype(np.uint16)), "PNG")


def float_tiff():
    return encode(Image.fromarray(np.linspace(0, 1, 50 * 40, dtype=np.float32).reshape(40, 50)), "TIFF")


JPEG = encode(noise(300, 200), "JPEG")
PNG = encode(noise(300, 200), "PNG")

# name -> (file name, bytes factory, expected (width, height) or an error pattern)
IMAGE_CASES = {
    "empty file": ("empty.png", lambda: b"", "not a readable image"),
    "truncated JPEG": ("cut.jpg", lambda: JPEG[: len(JPEG) // 2], "truncated or corrupt"),
    "truncated PNG": ("cut.png", lambda: PNG[: len(PNG) // 2], "truncated or corrupt"),
    "text renamed .png": ("notes.png", lambda: b"hello, I am text", "not a readable image"),
    "1x1": ("dot.png", lambda: encode(Image.new("RGB", (1, 1), (9, 9, 9)), "PNG"), (1, 1)),
    "1x10000": ("line.png", lambda: encode(Image.new("L", (1, 10000), 7), "PNG"), (1, 10000)),
    "12 MP JPEG": ("big.jpg", lambda: encode(Image.new("RGB", (4000, 3000), (90, 140, 60)), "JPEG"), (4000, 3000)),
    "100 MP bomb": ("bomb.png", lambda: encode(Image.new("1", (10_000, 10_000)), "PNG"), "too large .*limit is 40"),
    "16-bit PNG": ("deep.png", sixteen_bit, (64, 48)),
    "float TIFF": ("float.tif", float_tiff, (50, 40)),
    "CMYK JPEG": ("cmyk.jpg", lambda: encode(Image.new("CMYK", (30, 20), (0, 80, 80, 0)), "JPEG"), (30, 20)),
    "LA PNG": ("la.png", lambda: encode(Image.new("LA", (30, 20), (100, 128)), "PNG"), (30, 20)),
    "RGBA PNG": ("rgba.png", lambda: encode(Image.new("RGBA", (30, 20), (1, 2, 3, 0)), "PNG"), (30, 20)),
    "P PNG": ("p.png", lambda: encode(noise(30, 20).convert("P"), "PNG"), (30, 20)),
    "animated GIF": ("anim.gif", animated_gif, (30, 20)),
    "EXIF-rotated JPEG": ("rotated.jpg", exif_rotated, (20, 40)),
}


def write_case(folder, case):
    name, factory, expected = IMAGE_CASES[case]
    path = folder / name
    path.write_bytes(factory())
    return path, expected


@pytest.mark.parametrize("case", IMAGE_CASES)
def test_segment_handler(case, tmp_path):
    path, expected = write_case(tmp_path, case)
    if isinstance(expected, str):
        with pytest.raises(gr.Error, match=expected):
            segment(str(path), "pets", "pet", 0.5)
        return
    *_, info, mask_file = segment(str(path), "pets", "pet", 0.5)
    assert Image.open(mask_file).size == expected


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


@pytest.mark.slow  # a launched server
@pytest.mark.parametrize("case", IMAGE_CASES)
def test_segment_through_the_api(client, case, tmp_path):
    path, expected = write_case(tmp_path, case)
    if isinstance(expected, str):
        with pytest.raises(Exception, match=expected) as raised:
            client.predict(handle_file(str(path)), "pets", "pet", 0.5, api_name="/segment")
        assert "Traceback" not in str(raised.value)
    else:
        *_, mask_file = client.predict(handle_file(str(path)), "pets", "pet", 0.5, api_name="/segment")
        assert Image.open(mask_file).size == expected
    # the app keeps serving after every case
    assert client.predict(handle_file("examples/coffee_cup.png"), "pets", "pet", 0.5, api_name="/segment")


def bad_pairs_zip(path):
    """One archive with every pair problem and every unsafe entry kind."""
    image = encode(noise(40, 30), "JPEG")
    good_mask = np.zeros((30, 40), np.uint8)
    good_mask[5:20, 5:25] = 0
    good_mask[20:, :] = 1
    colours = np.zeros((30, 40, 3), np.uint8)
    colours[:10] = (0, 255, 0)
    colours[10:] = (12, 34, 250)
    too_many = good_mask.copy()
    too_many[0, 0] = 7
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("images/good.jpg", image)
        archive.writestr("masks/good.png", encode(Image.fromarray(good_mask), "PNG"))
        archive.writestr("images/background_only.jpg", image)
        archive.writestr("masks/background_only.png", encode(Image.fromarray(np.ones((30, 40), np.uint8)), "PNG"))
        archive.writestr("images/other_size.jpg", image)
        archive.writestr("masks/other_size.png", encode(Image.fromarray(good_mask[:15]), "PNG"))
        archive.writestr("images/colours.jpg", image)
        archive.writestr("masks/colours.png", encode(Image.fromarray(colours), "PNG"))
        archive.writestr("images/too_many.jpg", image)
        archive.writestr("masks/too_many.png", encode(Image.fromarray(too_many), "PNG"))
        archive.writestr("images/no_mask.jpg", image)
        archive.writestr("../../escape.png", b"x")
        archive.writestr("/etc/absolute.png", b"x")
        link = zipfile.ZipInfo("images/link.jpg")
        link.external_attr = 0o120777 << 16
        archive.writestr(link, "/etc/passwd")
        archive.writestr("inner.zip", b"PK\x05\x06" + b"\0" * 18)
        archive.writestr("images/bomb.jpg", b"\0" * 30_000_000, compress_type=zipfile.ZIP_DEFLATED)
    return path


PAIR_EXPECTATIONS = {
    "good": "ok",
    "background_only": "ok",
    "other_size": "is 40x30 but its mask other_size.png is 40x15",
    "colours": "colours not in the class palette: (0,255,0), (12,34,250)",
    "too_many": "class values [7] but the model has 3 classes",
}
REPORT_EXPECTATIONS = ["no_mask.jpg: no mask found", "../../escape.png: skipped, its path points outside",
                       "/etc/absolute.png: skipped", "images/link.jpg: skipped, symbolic links",
                       "inner.zip: skipped, nested ZIP", "images/bomb.jpg: skipped, compression ratio"]


def check_pair_report(table, report):
    rows = {row[0]: row[-1] for row in table}
    for name, expected in PAIR_EXPECTATIONS.items():
        assert expected in rows[name], (name, rows[name])
    for expected in REPORT_EXPECTATIONS:
        assert expected in report, expected


def test_pair_problems_through_the_handler(tmp_path):
    table, gallery, report = check_pairs([str(bad_pairs_zip(tmp_path / "bad.zip"))], "pets", KEEP, "")
    check_pair_report(table.values.tolist(), report)
    assert not (tmp_path.parent / "escape.png").exists()
    assert len(gallery) == 2


@pytest.mark.slow  # a launched server
def test_pair_problems_through_the_api(client, tmp_path):
    table, _, report = client.predict([handle_file(str(bad_pairs_zip(tmp_path / "bad.zip")))], "pets", KEEP, "",
                                      api_name="/check_pairs")
    check_pair_report(table["data"], report)


@pytest.mark.slow  # a launched server
def test_duplicate_names_and_fake_zip_through_the_api(client, tmp_path):
    image, mask = encode(noise(8, 8), "JPEG"), encode(Image.new("L", (8, 8), 1), "PNG")
    archives = []
    for index in range(2):
        path = tmp_path / f"copy{index}.zip"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("images/same.jpg", image)
            archive.writestr("masks/same.png", mask)
        archives.append(handle_file(str(path)))
    table, _, _ = client.predict(archives, "pets", KEEP, "", api_name="/check_pairs")
    assert [row[-1] for row in table["data"]][1].startswith("skipped: duplicate name")
    fake = tmp_path / "fake.zip"
    fake.write_bytes(b"%PDF-1.4 not a zip")
    with pytest.raises(Exception, match="not a valid ZIP"):
        client.predict([handle_file(str(fake))], "pets", KEEP, "", api_name="/check_pairs")


def test_model_files_load_in_safe_mode_only(tmp_path):
    import keras

    marker = tmp_path / "code_ran"
    source = f"lambda x: (open({str(marker)!r}, 'w').write('ran'), x)[1]"  # would leave a file if it ran
    inputs = keras.Input((4, 4, 3))
    outputs = keras.layers.Lambda(eval(source))(inputs)
    keras.Model(inputs, outputs).save(tmp_path / "lambda.keras")
    marker.unlink(missing_ok=True)
    with pytest.raises(InputError, match="lambda.keras contains a Lambda layer"):
        load_model_file(tmp_path / "lambda.keras")
    assert not marker.exists()
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(InputError, match="corrupt.keras"):
        load_model_file(corrupt)
