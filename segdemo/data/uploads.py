"""Uploaded training pairs: safe ZIP unpacking, pairing loose files by name, and a validation report that
lists every file with what was found or what was wrong (nothing is dropped silently).

Pairing rule for loose files (and ZIPs without a known layout): an image `x.jpg` pairs with a mask `x.png`
or `x_mask.png` (any of `data.MASK_STEM_WORDS` after `_`, `-`, `.` or a space). A file whose stem carries a
mask suffix is a mask; when two files share a stem, the `.png` one is the mask.
"""

import shutil
import stat
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from segdemo.data.images import IMAGE_SUFFIXES
from segdemo.data.masks import MASK_SUFFIXES
from segdemo.data.pairs import MASK_STEM_SUFFIX, Pair, find_pairs, mask_stem, read_pair
from segdemo.errors import InputError
from segdemo.limits import MAX_ENTRY_BYTES, MAX_ZIP_BYTES, MAX_ZIP_ENTRIES
from segdemo.models.cards import binary_mask_classes, class_colors

INVERTED_BORDER_SHARE = 0.6  # white on more of the border than this: the masks probably mark the background
MAX_COMPRESSION_RATIO = 200  # a higher ratio marks a zip bomb
METADATA_PREFIXES = ("__MACOSX/",)


@dataclass
class PairReport:
    """One uploaded pair after reading: sizes and class histogram, or the problem that excludes it."""

    pair: Pair
    size: tuple = None
    class_pixels: dict = field(default_factory=dict)
    problem: str = ""
    encoding: str = ""  # how the mask was read (detect_encoding)
    white_on_border: float = None  # black/white masks: share of the image border that is white

    @property
    def ok(self):
        return not self.problem

    @property
    def name(self):
        return self.pair.name


def is_symlink(info):
    return stat.S_ISLNK(info.external_attr >> 16)


def safe_member_path(name):
    """The relative path a ZIP entry may be written to, or None if it escapes the folder (zip slip)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return None
    return path


def unpack_zip(zip_path, dest):
    """Extract a ZIP into `dest` entry by entry, refusing zip slip, symlinks, nested archives and bombs
    (sizes are checked from the central directory before anything is written). Returns problem messages
    for the entries that were skipped."""
    zip_name = Path(zip_path).name
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError):
        raise InputError(f"{zip_name} is not a valid ZIP archive") from None
    problems = []
    with archive:
        entries = [info for info in archive.infolist() if not info.is_dir()]
        if len(entries) > MAX_ZIP_ENTRIES:
            raise InputError(f"{zip_name} holds {len(entries)} files; the limit is {MAX_ZIP_ENTRIES}")
        total = sum(info.file_size for info in entries)
        if total > MAX_ZIP_BYTES:
            raise InputError(f"{zip_name} unpacks to {total / 1e6:.0f} MB; the limit is {MAX_ZIP_BYTES / 1e6:.0f} MB")
        for info in entries:
            name = info.filename
            if name.startswith(METADATA_PREFIXES) or PurePosixPath(name).name.startswith("._"):
                continue  # macOS resource forks: not user files
            relative = safe_member_path(name)
            if relative is None:
                problems.append(f"{name}: skipped, its path points outside the archive folder")
            elif is_symlink(info):
                problems.append(f"{name}: skipped, symbolic links are not accepted")
            elif relative.suffix.lower() == ".zip":
                problems.append(f"{name}: skipped, nested ZIP archives are not unpacked")
            elif info.file_size > MAX_ENTRY_BYTES:
                problems.append(f"{name}: skipped, {info.file_size / 1e6:.0f} MB is over the "
                                f"{MAX_ENTRY_BYTES / 1e6:.0f} MB limit per file")
            elif info.compress_size and info.file_size / info.compress_size > MAX_COMPRESSION_RATIO:
                problems.append(f"{name}: skipped, compression ratio {info.file_size // info.compress_size}:1 "
                                "looks like a zip bomb")
            else:
                target = Path(dest, *relative.parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                try:
                    with archive.open(info) as source, open(target, "wb") as sink:
                        shutil.copyfileobj(source, sink, length=1 << 20)
                except (zipfile.BadZipFile, OSError, EOFError) as error:
                    problems.append(f"{name}: skipped, could not be extracted ({error})")
                    target.unlink(missing_ok=True)
    return problems


def pair_loose_files(paths):
    """Pair files by name (see the module docstring). Returns (pairs, problems)."""
    groups = {}
    for path in paths:
        groups.setdefault(mask_stem(path).lower(), []).append(Path(path))
    pairs, problems = [], []
    for stem, files in sorted(groups.items()):
        # a mask is a lossless file named like one (a JPEG named x_mask.jpg is still an image)
        masks = [f for f in files if MASK_STEM_SUFFIX.search(f.stem) and f.suffix.lower() in MASK_SUFFIXES]
        images = [f for f in files if f not in masks]
        if not masks and len(images) == 2:
            pngs = [f for f in images if f.suffix.lower() == ".png"]
            if len(pngs) == 1:
                masks, images = pngs, [f for f in images if f is not pngs[0]]
        unknown = [f for f in images if f.suffix.lower() not in IMAGE_SUFFIXES]
        for f in unknown:
            problems.append(f"{f.name}: not an image or mask file type (accepted: {', '.join(IMAGE_SUFFIXES)})")
        images = [f for f in images if f not in unknown]
        if len(images) == 1 and len(masks) == 1:
            pairs.append(Pair(images[0], masks[0]))
        elif not masks:
            problems += [f"{f.name}: no mask found (expected {f.stem}.png or {f.stem}_mask.png)" for f in images]
        elif not images:
            problems += [f"{f.name}: mask without an image (expected {stem}.jpg or similar)" for f in masks]
        else:
            names = ", ".join(sorted(f.name for f in images + masks))
            problems.append(f"{names}: ambiguous, several files share the name {stem!r}; rename them")
    return pairs, problems


def collect_upload(paths, workdir):
    """Turn uploaded files (ZIPs and/or loose images and masks) into pairs plus problems. ZIPs are unpacked
    into `workdir`; a ZIP with a known layout (images/+masks/, Images/+Labels/, Oxford) is read as such,
    possibly inside one top-level folder."""
    pairs, problems, loose = [], [], []
    for index, path in enumerate(map(Path, paths)):
        if path.suffix.lower() == ".zip":
            dest = Path(workdir) / f"zip{index}"
            dest.mkdir(parents=True, exist_ok=True)
            problems += unpack_zip(path, dest)
            found, found_problems = pairs_in_folder(dest)
            pairs += found
            problems += found_problems
        else:
            loose.append(path)
    found, found_problems = pair_loose_files(loose)
    return pairs + found, problems + found_problems


def unpaired_problems(search):
    """Messages for the files a `find_pairs` search could not pair."""
    problems = [f"{p.name}: no mask found" for p in search.unpaired_images]
    return problems + [f"{p.name}: mask without an image" for p in search.unpaired_masks]


def pairs_in_folder(root):
    """Pairs in an unpacked folder: a known layout at the top or one folder down, else pairing by name."""
    candidates = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    for folder in candidates:
        try:
            search = find_pairs(folder)
        except InputError:
            continue
        return search.pairs, unpaired_problems(search)
    files = [p for p in root.rglob("*") if p.is_file()]
    return pair_loose_files(files)


def validate_and_load(pairs, num_classes=None, palette=None, binary=(0, 1)):
    """Read every pair once. A pair that fails (unreadable, size mismatch, unexpected colours or classes,
    duplicate name) stays in the report with its problem. `binary`: the (black, white) classes of
    black/white masks. Returns ([PairReport], [(name, image, mask)] of the good pairs)."""
    reports, loaded, seen = [], [], set()
    for pair in pairs:
        report = PairReport(pair)
        if pair.name.lower() in seen:
            report.problem = f"duplicate name {pair.name!r}: only the first pair with this name is used"
        else:
            seen.add(pair.name.lower())
            try:
                image, mask, report.encoding = read_pair(pair, num_classes, palette, binary)
                if report.encoding == "binary":
                    report.white_on_border = float(np.mean(border_pixels(mask) == binary[1]))
                report.size = (image.shape[1], image.shape[0])
                counts = np.bincount(mask.reshape(-1))
                report.class_pixels = {int(c): int(n) for c, n in enumerate(counts) if n}
                loaded.append((pair.name, image, mask))
            except InputError as error:
                report.problem = str(error)
        reports.append(report)
    return reports, loaded


def border_pixels(mask):
    """The pixels of a mask's outermost rows and columns."""
    return np.concatenate([mask[0], mask[-1], mask[1:-1, 0], mask[1:-1, -1]])


def looks_inverted(reports, threshold=INVERTED_BORDER_SHARE):
    """True when the black/white masks' white class covers most of the image borders: the usual sign of a
    mask where white marks the background, not the object."""
    shares = [r.white_on_border for r in reports if r.ok and r.white_on_border is not None]
    return bool(shares) and float(np.mean(shares)) > threshold


def read_pairs_source(source, split=None, workdir=None):
    """Pairs from a dataset folder (known layout), a folder of loose files, or a ZIP. Returns (pairs, problems)."""
    source = Path(source)
    if source.is_file():
        return collect_upload([source], workdir or new_workdir())
    try:
        search = find_pairs(source, split)
        return search.pairs, unpaired_problems(search)
    except InputError:
        return pair_loose_files([p for p in sorted(source.rglob("*")) if p.is_file()])


def new_workdir(prefix="segdemo_upload_"):
    """A private temporary folder for one upload (mode 0700)."""
    return Path(tempfile.mkdtemp(prefix=prefix))


def read_upload(paths, card):
    """Unpack and pair uploaded files (ZIPs and loose files), read every pair for `card`'s classes (black/white
    masks as `cards.binary_mask_classes` says). Returns (reports, loaded pairs [(name, image, mask)], problems)."""
    if not paths:
        raise InputError("No files uploaded: add a ZIP of images/ + masks/, or images with their masks.")
    workdir = new_workdir()
    try:
        pairs, problems = collect_upload(paths, workdir)
        reports, loaded = validate_and_load(pairs, len(card.classes), class_colors(card), binary_mask_classes(card))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the decoded arrays are all we keep
    return reports, loaded, problems
