"""Batch at the model's pace: N real photos (the Oxford-IIIT pets test images under ../shared; generated 500x375
JPEGs with --synthetic) in one run:

- in process: `serving.batch.segment_files` on the bench's own Segmenter (the model's pace, no HTTP);
- over the API on one server with `gradio_client`: `segment_batch` given the N files (N uploads), `segment_batch`
  given one ZIP of them (one upload; the ZIP is built by the bench and timed with the call), and N `segment`
  calls one after the other.

    python bench/batch_speed.py [--images 50] [--model pets] [--repeats 3] [--shared ../shared] [--synthetic]

Every path is warmed up first (one `segment` call; one small `segment_batch`, which builds the batch graph);
then the three API paths and the in-process path alternate --repeats times; medians. Prints images/s for each and
the API's rate against the in-process one, then one JSON line. Everything stays on 127.0.0.1.
"""

import argparse
import re
import statistics
import tempfile
import time
import zipfile
from pathlib import Path

from common import ROOT, print_json, print_table, start_server

SIZE = (500, 375)
WARMUP_IMAGES = 8
HANDLER_SECONDS = re.compile(r"segmented\*\* with \d+ classes in ([0-9.]+) s")  # the summary's own timing


def make_images(folder, count):
    """`count` distinct 500x375 JPEGs: the shipped photos, shifted and mirrored."""
    from PIL import Image, ImageOps

    sources = [Image.open(f"examples/{name}").convert("RGB") for name in ("chelsea_cat.png", "coffee_cup.png",
                                                                          "astronaut.png")]
    paths = []
    for index in range(count):
        image = sources[index % len(sources)].resize((SIZE[0] + index % 7 * 10, SIZE[1] + index % 5 * 10))
        image = image.crop((index % 7 * 10, index % 5 * 10, index % 7 * 10 + SIZE[0], index % 5 * 10 + SIZE[1]))
        if index % 2:
            image = ImageOps.mirror(image)
        path = Path(folder) / f"image_{index:03d}.jpg"
        image.save(path, "JPEG", quality=90)
        paths.append(str(path))
    return paths


def pets_images(shared, count):
    """The first `count` pets test images (annotations/test.txt order)."""
    root = Path(shared) / "datasets" / "oxford-pets-subset"
    names = [line.split()[0] for line in (root / "annotations" / "test.txt").read_text().splitlines() if line.strip()]
    paths = [root / "images" / f"{name}.jpg" for name in names]
    return [str(path) for path in paths if path.is_file()][:count]


def as_zip(paths, path):
    """The images in one ZIP, stored (JPEGs do not deflate)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for item in paths:
            archive.write(item, Path(item).name)
    return str(path)


def in_process(paths, model, work):
    """Seconds for `segment_files` on `paths` in this process (a warm Segmenter)."""
    from segdemo.serving.batch import segment_files
    from segdemo.serving.registry import get_segmenter
    from segdemo.serving.runtime import enable_bf16_inference

    enable_bf16_inference()  # as the app serves
    segmenter = get_segmenter(model)
    folder = Path(tempfile.mkdtemp(dir=work))
    started = time.perf_counter()
    outcome = segment_files(paths, segmenter, folder)
    assert len(outcome.images) == len(paths), outcome.problems
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--model", default="pets")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--synthetic", action="store_true", help="generated 500x375 JPEGs, not the pets photos")
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="segdemo-batch-bench-"))
    paths = make_images(work, args.images) if args.synthetic else pets_images(args.shared, args.images)
    assert len(paths) == args.images, f"{len(paths)} images found under {args.shared}"
    in_process(paths[:WARMUP_IMAGES], args.model, work)  # builds the batch graph here too
    times = {"in_process": [], "api_files": [], "api_zip": [], "api_zip_handler": [], "api_single": []}
    process, url, _ = start_server(work / "server.log")
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(paths[0]), args.model, "", 0.5, api_name="/segment")
        client.predict([handle_file(path) for path in paths[:WARMUP_IMAGES]], args.model, api_name="/segment_batch")
        for repeat in range(args.repeats):
            started = time.perf_counter()
            zip_path, csv_path, summary, _ = client.predict([handle_file(path) for path in paths], args.model,
                                                         api_name="/segment_batch")
            times["api_files"].append(time.perf_counter() - started)
            check(zip_path, csv_path, summary, args.images)

            started = time.perf_counter()
            archive = as_zip(paths, work / f"images{repeat}.zip")
            zip_path, csv_path, summary, _ = client.predict([handle_file(archive)], args.model,
                                                            api_name="/segment_batch")
            times["api_zip"].append(time.perf_counter() - started)
            check(zip_path, csv_path, summary, args.images)
            times["api_zip_handler"].append(float(HANDLER_SECONDS.search(summary).group(1)))

            if repeat == 0:  # the slow path once
                started = time.perf_counter()
                for path in paths:
                    client.predict(handle_file(path), args.model, "", 0.5, api_name="/segment")
                times["api_single"].append(time.perf_counter() - started)
            times["in_process"].append(in_process(paths, args.model, work))
    finally:
        process.kill()
        process.wait()
    seconds = {path: statistics.median(values) for path, values in times.items()}
    rate = {path: round(args.images / value, 2) for path, value in seconds.items()}
    result = {"images": args.images, "source": "synthetic 500x375" if args.synthetic else "pets test images",
              "model": args.model, "repeats": args.repeats, "images_per_s": rate,
              "api_zip_vs_in_process": round(rate["api_zip"] / rate["in_process"], 2),
              "api_files_vs_in_process": round(rate["api_files"] / rate["in_process"], 2),
              "seconds": {path: [round(value, 2) for value in values] for path, values in times.items()}}
    print(f"{args.images} images ({result['source']}), model {args.model}, median of {args.repeats} "
          "(the single calls once):")
    print_table([{"path": path, "seconds": round(seconds[path], 2), "images_per_s": rate[path],
                  "vs_in_process": round(rate[path] / rate["in_process"], 2)} for path in times],
                ["path", "seconds", "images_per_s", "vs_in_process"])
    print_json(result)


def check(zip_path, csv_path, summary, images):
    with zipfile.ZipFile(zip_path) as archive:
        masks = sum(name.startswith("classes/") for name in archive.namelist())
    rows = len(Path(csv_path).read_text().splitlines()) - 1
    assert masks == rows == images, f"{masks} masks, {rows} CSV rows for {images} images: {summary}"


if __name__ == "__main__":
    main()
