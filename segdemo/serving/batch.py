"""Batch segmentation: many images (loose files and/or ZIPs, unpacked with the fine-tune's safe unpacking)
through one model in fixed-size batches, then one ZIP with each image's class-index PNG and colour mask,
`classes.csv` (size, share and mean probability of each class per image), the model card, each image's regions
as polygons (`polygons/<file>.json`) and the whole batch as one COCO file (`coco.json`, for CVAT, Label Studio
and COCO trainers; serving.annotations); a small overlay per image for a gallery. Unreadable files are listed and
skipped; the rest still come out."""

import csv
import json
import shutil
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from segdemo.data.images import IMAGE_SUFFIXES, display_size, load_image
from segdemo.data.uploads import new_workdir, unpack_zip
from segdemo.errors import InputError
from segdemo.limits import MAX_BATCH_IMAGES
from segdemo.serving.annotations import (
    DEFAULT_TOLERANCE,
    CocoBuilder,
    check_options,
    class_regions,
    coco_annotations,
    image_polygons,
)
from segdemo.serving.cutout import class_index_of, cutout_rgba
from segdemo.serving.drawing import mask_overlay
from segdemo.serving.segment import PNG_WRITERS, write_png
from segdemo.serving.segmenter import BATCH_SIZE, class_areas, mean_uncertainty

THUMBNAIL_SIDE = 320  # gallery overlays are at most this wide/high
CSV_NAME = "classes.csv"
LEAST_CERTAIN_FIRST = "uncertainty (least certain first)"  # the gallery's other ordering
ZIP_NAME = "segmentation.zip"
CUTOUTS = "cutouts"  # the ZIP's folder of RGBA cut-outs (when a class is asked for)
COCO_NAME = "coco.json"
POLYGONS = "polygons"  # polygons/<file>.json: one image's regions (serving.annotations.image_polygons)
DECODERS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="batch-decoder")  # PIL decodes without the GIL
IGNORED_NAMES = (".DS_Store", "Thumbs.db", "desktop.ini")


@dataclass
class BatchImage:
    """One segmented image of a batch: what classes.csv says of it and its gallery overlay."""

    name: str  # unique file stem used in the ZIP
    width: int
    height: int
    shares: dict  # {class: share of the pixels}
    mean_probs: dict  # {class: mean softmax probability over the model-size image}
    uncertainty: float = 0.0  # mean per-pixel uncertainty (segmenter.uncertainty), 0 sure .. 1 unsure
    thumbnail: str = ""  # overlay PNG path


@dataclass
class BatchOutcome:
    images: list
    problems: list  # "file: what was wrong" for every skipped file
    classes: list
    zip_path: str = ""
    csv_path: str = ""
    coco_path: str = ""
    seconds: float = 0.0

    def sorted_by(self, key):
        """The images, largest share of the class `key` first, or least certain first for
        LEAST_CERTAIN_FIRST (file order for an unknown key)."""
        if key == LEAST_CERTAIN_FIRST:
            return sorted(self.images, key=lambda item: -item.uncertainty)
        if key not in self.classes:
            return list(self.images)
        return sorted(self.images, key=lambda item: -item.shares[key])


def batch_inputs(paths, workdir):
    """(image files as (display name, path), problems) from uploaded files and ZIPs, in upload order.
    ZIPs are unpacked safely into `workdir` (uploads.unpack_zip: no zip slip, links, nested ZIPs, bombs)."""
    found, problems = [], []
    for index, path in enumerate(map(Path, paths)):
        if path.suffix.lower() == ".zip":
            dest = Path(workdir) / f"zip{index}"
            dest.mkdir(parents=True)
            problems += unpack_zip(path, dest)
            for member in sorted(p for p in dest.rglob("*") if p.is_file()):
                relative = member.relative_to(dest).as_posix()
                if member.name in IGNORED_NAMES:
                    continue
                if member.suffix.lower() in IMAGE_SUFFIXES:
                    found.append((f"{path.name}/{relative}", member))
                else:
                    problems.append(f"{path.name}/{relative}: skipped, not an image file type "
                                    f"(accepted: {', '.join(IMAGE_SUFFIXES)})")
        else:
            found.append((path.name, path))
    if len(found) > MAX_BATCH_IMAGES:
        raise InputError(f"{len(found)} images uploaded; a batch holds at most {MAX_BATCH_IMAGES}")
    return found, problems


def unique_stem(name, taken):
    """The file's stem, with _2, _3 ... when another image of the batch already has it."""
    stem = Path(name).stem or "image"
    candidate, number = stem, 1
    while candidate.lower() in taken:
        number += 1
        candidate = f"{stem}_{number}"
    taken.add(candidate.lower())
    return candidate


def decode(entry):
    """(display name, RGB array or None, problem)."""
    name, path = entry
    try:
        return name, load_image(path), ""
    except InputError as error:
        return name, None, f"{name}: skipped ({error})"


def decoded_chunks(entries):
    """(entries done, [(name, image or None, problem)]) per BATCH_SIZE entries; the next chunk is decoded
    while the model runs on this one."""
    chunks = [entries[start:start + BATCH_SIZE] for start in range(0, len(entries), BATCH_SIZE)]
    upcoming = [DECODERS.submit(decode, entry) for entry in chunks[0]] if chunks else []
    done = 0
    for index, chunk in enumerate(chunks):
        current = upcoming
        upcoming = [DECODERS.submit(decode, entry) for entry in chunks[index + 1]] if index + 1 < len(chunks) else []
        done += len(chunk)
        yield done, [future.result() for future in current]


def write_outputs(image, prediction, stem, folder, segmenter, segmentation, tolerance, cutout_index=None):
    """The class-index PNG, the colour mask and the polygons (full size) and the gallery overlay of one image;
    returns (overlay path, the image's COCO annotations). Run in a writer thread: tracing the outlines overlaps
    the model's next batch like the PNG encoding does."""
    write_png(prediction.labels, folder / "classes", stem)
    write_png(prediction.labels, folder / "masks", stem, segmenter.palette)
    size = display_size(image.shape[1], image.shape[0], THUMBNAIL_SIDE)  # shrunk, never enlarged
    overlay = write_png(mask_overlay(image, prediction.labels, segmenter.palette, size), folder / "overlays", stem)
    if cutout_index is not None:  # the class kept on a transparent background, its probability as a soft edge
        write_png(cutout_rgba(image, prediction, cutout_index), folder / CUTOUTS, stem)
    regions = class_regions(prediction.labels, segmenter.classes, tolerance)
    polygons = image_polygons(prediction.labels, segmenter.classes, tolerance, regions)
    (folder / POLYGONS / f"{stem}.json").write_text(json.dumps(polygons, separators=(",", ":")))
    return overlay, coco_annotations(prediction.labels, segmenter.classes, segmentation, tolerance, regions)


def describe(stem, image, prediction, classes):
    mean_probs = prediction.probs.reshape(-1, len(classes)).mean(axis=0)
    return BatchImage(stem, image.shape[1], image.shape[0], class_areas(prediction.labels, classes),
                      {name: float(value) for name, value in zip(classes, mean_probs)},
                      mean_uncertainty(prediction.probs))


def segment_files(paths, segmenter, folder, progress=None, segmentation="polygon", tolerance=DEFAULT_TOLERANCE,
                  cutout_class=""):
    """Segment every image in `paths` (files and/or ZIPs) with `segmenter`; the outputs go into `folder`.
    `progress(done, total)` is called after each batch. `segmentation` ("polygon" or "rle") is how coco.json
    encodes the regions and `tolerance` how many pixels the polygons' outlines may move when simplified (0:
    exact); serving.annotations says why. `cutout_class` (a class name; "": none) adds cutouts/<image>.png, the
    image at full size with only that class opaque (serving.cutout, soft edge). Returns a BatchOutcome whose
    ZIP, CSV and COCO file are written.

    coco.json's `file_name` of an image is its name in the ZIP's classes/ and masks/ (the stem, made unique within
    the batch) with the uploaded file's own extension: the image the user has, so that CVAT (which matches a
    task's images by name without the extension) and Label Studio (which looks the file up where the images are
    served) find it."""
    if not paths:
        raise InputError("No files given: upload images or a ZIP of images (at most "
                         f"{MAX_BATCH_IMAGES} images).")
    segmentation, tolerance = check_options(segmentation, tolerance)
    cutout_index = class_index_of(segmenter.classes, cutout_class, None) if cutout_class else None
    started = time.perf_counter()
    workdir = new_workdir("segdemo_batch_")
    folder = Path(folder)
    for sub in ("classes", "masks", "overlays", POLYGONS, *([CUTOUTS] if cutout_index is not None else [])):
        (folder / sub).mkdir()
    coco = CocoBuilder(segmenter.classes, segmentation, tolerance, segmenter.palette[:len(segmenter.classes)].tolist(),
                       {"description": f"Segmented by {segmenter.card.name} (segdemo)", "model": segmenter.card.name})
    try:
        entries, problems = batch_inputs(paths, workdir)
        outcome = BatchOutcome([], problems, list(segmenter.classes))
        taken, writes = set(), []
        for done, decoded in decoded_chunks(entries):
            outcome.problems += [problem for _, image, problem in decoded if image is None]
            good = [(name, image) for name, image, _ in decoded if image is not None]
            predictions = segmenter.predict_batch([image for _, image in good]) if good else []
            for (name, image), prediction in zip(good, predictions):
                stem = unique_stem(name, taken)
                item = describe(stem, image, prediction, outcome.classes)
                outcome.images.append(item)
                writes.append((item, Path(name).suffix, PNG_WRITERS.submit(
                    write_outputs, image, prediction, stem, folder, segmenter, segmentation, tolerance, cutout_index)))
            if progress:
                progress(done, len(entries))
        for item, suffix, write in writes:
            item.thumbnail, annotations = write.result()
            coco.add_annotations(f"{item.name}{suffix}", item.width, item.height, annotations)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not outcome.images:
        listed = "; ".join(outcome.problems) or "no images found"
        raise InputError(f"No image in the batch could be segmented: {listed}")
    outcome.csv_path = write_csv(outcome, folder / CSV_NAME)
    outcome.coco_path = coco.write(folder / COCO_NAME)
    outcome.zip_path = write_zip(outcome, folder, segmenter.card)
    outcome.seconds = time.perf_counter() - started
    return outcome


def csv_header(classes):
    return ["file", "width", "height", *[f"share_{name}" for name in classes],
            *[f"mean_prob_{name}" for name in classes], "mean_uncertainty"]


def write_csv(outcome, path):
    """One row per segmented image: file, width, height, share of each class, mean probability of each, mean
    uncertainty."""
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(csv_header(outcome.classes))
        for item in outcome.images:
            writer.writerow([f"{item.name}.png", item.width, item.height,
                             *[f"{item.shares[name]:.6f}" for name in outcome.classes],
                             *[f"{item.mean_probs[name]:.6f}" for name in outcome.classes],
                             f"{item.uncertainty:.6f}"])
    return str(path)


def write_zip(outcome, folder, card):
    """classes/<file>.png (pixel = class index), masks/<file>.png (class colours), classes.csv, the model
    card (JSON and Markdown), polygons/<file>.json, coco.json, cutouts/<file>.png (RGBA) when asked for and
    skipped.txt when files were skipped. PNGs are stored, not recompressed; the JSON is deflated (outlines
    compress several times)."""
    path = folder / ZIP_NAME
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for item in outcome.images:
            for sub in ("classes", "masks", CUTOUTS):
                if sub == CUTOUTS and not (folder / sub).is_dir():
                    continue
                archive.write(folder / sub / f"{item.name}.png", f"{sub}/{item.name}.png")
        archive.write(outcome.csv_path, CSV_NAME)
        for item in outcome.images:
            archive.write(folder / POLYGONS / f"{item.name}.json", f"{POLYGONS}/{item.name}.json", zipfile.ZIP_DEFLATED)
        archive.write(outcome.coco_path, COCO_NAME, zipfile.ZIP_DEFLATED)
        archive.writestr("model_card.json", json.dumps(card.to_dict(), indent=2) + "\n", zipfile.ZIP_DEFLATED)
        archive.writestr("model_card.md", card.markdown(), zipfile.ZIP_DEFLATED)
        if outcome.problems:
            archive.writestr("skipped.txt", "\n".join(outcome.problems) + "\n", zipfile.ZIP_DEFLATED)
    return str(path)
