"""Batch against single calls, end to end through the API with `gradio_client`, in one run on one server:
N images of 500x375 (JPEG) through `segment_batch` (upload, segmentation in batches, ZIP + CSV download)
against N `segment` calls one after the other.

    python bench/batch_speed.py [--images 50] [--model pets]

Both paths are warmed up first (one `segment` call; one small `segment_batch`, which builds the batch graph).
Prints images/s for both and their ratio, then one JSON line. Everything stays on 127.0.0.1.
"""

import argparse
import tempfile
import time
import zipfile
from pathlib import Path

from common import print_json, start_server

SIZE = (500, 375)
WARMUP_IMAGES = 8


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--model", default="pets")
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="segdemo-batch-bench-"))
    paths = make_images(work, args.images)
    process, url, _ = start_server(work / "server.log")
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(paths[0]), args.model, "", 0.5, api_name="/segment")
        client.predict([handle_file(path) for path in paths[:WARMUP_IMAGES]], args.model, api_name="/segment_batch")

        started = time.perf_counter()
        for path in paths:
            client.predict(handle_file(path), args.model, "", 0.5, api_name="/segment")
        single_s = time.perf_counter() - started

        started = time.perf_counter()
        zip_path, csv_path, summary = client.predict([handle_file(path) for path in paths], args.model,
                                                     api_name="/segment_batch")
        batch_s = time.perf_counter() - started
    finally:
        process.kill()
        process.wait()
    with zipfile.ZipFile(zip_path) as archive:
        masks = sum(name.startswith("classes/") for name in archive.namelist())
    rows = len(Path(csv_path).read_text().splitlines()) - 1
    assert masks == rows == args.images, f"{masks} masks, {rows} CSV rows for {args.images} images: {summary}"
    result = {"images": args.images, "size": f"{SIZE[0]}x{SIZE[1]}", "model": args.model,
              "single_images_per_s": round(args.images / single_s, 2),
              "batch_images_per_s": round(args.images / batch_s, 2),
              "speedup": round(single_s / batch_s, 2), "single_s": round(single_s, 2), "batch_s": round(batch_s, 2)}
    print(f"{args.images} images {result['size']}, model {args.model}, through the API on one server:")
    print(f"  {args.images} x segment:     {single_s:6.2f} s = {result['single_images_per_s']:5.1f} images/s")
    print(f"  1 x segment_batch:  {batch_s:6.2f} s = {result['batch_images_per_s']:5.1f} images/s "
          f"({result['speedup']}x)")
    print_json(result)


if __name__ == "__main__":
    main()
