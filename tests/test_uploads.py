"""Uploaded pairs: safe ZIP unpacking, pairing loose files by name, validation that lists every problem."""

import io
import zipfile

import numpy as np
import pytest
from PIL import Image

from segdemo.data.uploads import MAX_ZIP_ENTRIES, collect_upload, pair_loose_files, unpack_zip, validate_and_load
from segdemo.errors import InputError


def png_bytes(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


def jpg_bytes(size=(16, 12)):
    buffer = io.BytesIO()
    Image.new("RGB", size, (90, 120, 30)).save(buffer, "JPEG")
    return buffer.getvalue()


def binary_mask(size=(16, 12), fill=255):
    mask = np.zeros(size[::-1], np.uint8)
    mask[:, : size[0] // 2] = fill
    return png_bytes(mask)


def write_zip(path, entries):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, payload in entries.items():
            archive.writestr(name, payload)
    return path


@pytest.fixture
def mixed_zip(tmp_path):
    """Good pairs, and one of every kind of problem."""
    colour_mask = np.zeros((12, 16, 3), np.uint8)
    colour_mask[0, 0] = (0, 255, 0)  # green is not in the pets palette
    return write_zip(tmp_path / "pairs.zip", {
        "dataset/images/good1.jpg": jpg_bytes(),
        "dataset/masks/good1.png": binary_mask(),
        "dataset/images/good2.jpg": jpg_bytes(),
        "dataset/masks/good2_mask.png": binary_mask(),
        "dataset/images/small_mask.jpg": jpg_bytes(),
        "dataset/masks/small_mask.png": binary_mask((8, 6)),
        "dataset/images/broken.jpg": b"not a jpeg at all",
        "dataset/masks/broken.png": binary_mask(),
        "dataset/images/colours.jpg": jpg_bytes(),
        "dataset/masks/colours.png": png_bytes(colour_mask),
        "dataset/images/lonely.jpg": jpg_bytes(),
        "dataset/masks/orphan.png": binary_mask(),
        "__MACOSX/dataset/._good1.jpg": b"resource fork",
    })


def test_zip_with_good_and_bad_pairs(mixed_zip, tmp_path):
    pairs, problems = collect_upload([mixed_zip], tmp_path / "work")
    assert sorted(p.name for p in pairs) == ["broken", "colours", "good1", "good2", "small_mask"]
    assert any("lonely.jpg: no mask found" in p for p in problems)
    assert any("orphan.png: mask without an image" in p for p in problems)
    reports, loaded = validate_and_load(pairs, 3, palette=[(230, 25, 75), (0, 0, 0), (255, 225, 25)])
    by_name = {r.name: r for r in reports}
    assert [name for name, _, _ in loaded] == ["good1", "good2"]
    assert by_name["good1"].ok and by_name["good1"].size == (16, 12)
    assert by_name["good1"].class_pixels == {0: 96, 1: 96}
    assert "is 16x12 but its mask small_mask.png is 8x6" in by_name["small_mask"].problem
    assert "could not be decoded" in by_name["broken"].problem or "not a readable" in by_name["broken"].problem
    assert "(0,255,0)" in by_name["colours"].problem


def test_zip_slip_symlinks_and_nested_zips_are_refused(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("../escape.png", b"x")
        archive.writestr("/abs/escape2.png", b"x")
        link = zipfile.ZipInfo("images/link.png")
        link.external_attr = (0o120777 << 16)  # a symbolic link entry
        archive.writestr(link, "/etc/passwd")
        archive.writestr("inner.zip", b"PK")
        archive.writestr("images/ok.jpg", jpg_bytes())
    dest = tmp_path / "out"
    dest.mkdir()
    problems = unpack_zip(path, dest)
    assert not (tmp_path / "escape.png").exists() and not (dest.parent / "escape.png").exists()
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()) == ["images/ok.jpg"]
    assert sum("outside the archive" in p for p in problems) == 2
    assert any("symbolic links" in p for p in problems)
    assert any("nested ZIP" in p for p in problems)


def test_zip_bomb_and_non_zip(tmp_path):
    bomb = write_zip(tmp_path / "bomb.zip", {"images/a.png": b"\0" * 50_000_000})
    dest = tmp_path / "out"
    dest.mkdir()
    assert any("zip bomb" in p for p in unpack_zip(bomb, dest))
    assert not list(dest.rglob("*.png"))
    many = write_zip(tmp_path / "many.zip", {f"f{i}.txt": b"" for i in range(MAX_ZIP_ENTRIES + 1)})
    with pytest.raises(InputError, match="holds .* files; the limit"):
        unpack_zip(many, dest)
    fake = tmp_path / "fake.zip"
    fake.write_text("hello")
    with pytest.raises(InputError, match="not a valid ZIP"):
        unpack_zip(fake, dest)


def test_loose_files_pair_by_name(tmp_path):
    names = ["a.jpg", "a.png", "b.jpg", "b_mask.png", "c.jpeg", "c-label.png", "d.jpg", "e_mask.png",
             "notes.txt", "f.jpg", "f.jpeg", "f_mask.png"]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    pairs, problems = pair_loose_files([tmp_path / n for n in names])
    assert sorted((p.image.name, p.mask.name) for p in pairs) == [
        ("a.jpg", "a.png"), ("b.jpg", "b_mask.png"), ("c.jpeg", "c-label.png")]
    text = "\n".join(problems)
    assert "d.jpg: no mask found" in text and "e_mask.png: mask without an image" in text
    assert "notes.txt: not an image" in text and "ambiguous" in text


def test_duplicate_names_are_reported(tmp_path):
    zip_a = write_zip(tmp_path / "a.zip", {"images/x.jpg": jpg_bytes(), "masks/x.png": binary_mask()})
    zip_b = write_zip(tmp_path / "b.zip", {"images/x.jpg": jpg_bytes(), "masks/x.png": binary_mask()})
    pairs, _ = collect_upload([zip_a, zip_b], tmp_path / "work")
    reports, loaded = validate_and_load(pairs, 2)
    assert len(loaded) == 1 and "duplicate name" in reports[1].problem


def test_all_background_mask_is_accepted(tmp_path):
    archive = write_zip(tmp_path / "z.zip", {"images/x.jpg": jpg_bytes(), "masks/x.png": binary_mask(fill=0)})
    reports, loaded = validate_and_load(collect_upload([archive], tmp_path / "w")[0], 2)
    assert reports[0].ok and reports[0].class_pixels == {0: 192}
