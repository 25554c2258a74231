"""The `segment` handler in process (decoded upload in -> every output file written), split into decode /
preprocess / model / postprocess / encode, against the seeds' way in the same run.

    python bench/handler_speed.py [--model pets] [--runs 30]

Inputs (made from the shipped cat photo): a 500x375 JPEG, a 12-megapixel JPEG (4000x3000), a 1x1 PNG.
The seeds' way: PIL decode, resize, `model.predict`, argmax, a Python loop colouring the mask, masks resized
back with PIL, overlay in float, three PNGs saved at PIL's default compression.
Prints a table, then one JSON line.
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from common import print_json, print_table, seed_color3, time_calls

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CASES = {"500x375 JPEG": ((500, 375), "JPEG"), "12 MP JPEG": ((4000, 3000), "JPEG"), "1x1 PNG": ((1, 1), "PNG")}


def make_inputs(folder):
    """The three test files, from the shipped cat photo."""
    from PIL import Image

    cat = Image.open("examples/chelsea_cat.png").convert("RGB")
    paths = {}
    for name, (size, fmt) in CASES.items():
        path = Path(folder) / f"{name.split()[0]}.{fmt.lower()}"
        cat.resize(size, Image.BICUBIC).save(path, fmt, quality=90)
        paths[name] = str(path)
    return paths


def seeds_way(path, model, size, colors, folder):
    """Segment one file the way the seeds did."""
    import numpy as np
    from PIL import Image

    image = Image.open(path).convert("RGB")
    x = np.asarray(image.resize((size, size)), np.float32)[None]
    labels = model.predict(x, verbose=0)[0].argmax(-1)
    color_small = seed_color3(labels, colors)
    color_mask = np.asarray(Image.fromarray(color_small).resize(image.size, Image.NEAREST))
    blended = (np.asarray(image, np.float32) * 0.5 + color_mask * 0.5).astype(np.uint8)
    Image.fromarray(color_mask).save(Path(folder) / "seed_mask.png")
    Image.fromarray(blended).save(Path(folder) / "seed_overlay.png")
    Image.fromarray(labels.astype(np.uint8)).resize(image.size, Image.NEAREST).save(Path(folder) / "seed_classes.png")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pets")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args()

    import numpy as np

    from segdemo.serving.registry import get_segmenter
    from segdemo.serving.runtime import describe_device, enable_bf16_inference
    from segdemo.serving.segment import STEPS, segment_and_render

    enable_bf16_inference()  # as the app does (bfloat16 graphs on CPUs that support them)
    segmenter = get_segmenter(args.model)
    folder = tempfile.mkdtemp(prefix="segdemo-bench-")
    paths = make_inputs(folder)
    outputs = Path(folder) / "outputs"
    outputs.mkdir()
    rows = []
    for name, path in paths.items():
        steps = {step: [] for step in STEPS}

        def handler(path=path, steps=steps):
            result, _ = segment_and_render(path, segmenter, "", 0.5, outputs)
            for step in STEPS:
                steps[step].append(result.seconds[step])

        runs = args.runs if "12 MP" not in name else max(5, args.runs // 5)
        totals = time_calls(handler, runs, warmup=2)
        seed_runs = max(3, runs // 5)
        seeds = time_calls(lambda path=path: seeds_way(path, segmenter.model, segmenter.size[0], segmenter.palette,
                                                       folder), seed_runs, warmup=1)
        row = {"input": name, "handler_p50_ms": round(1000 * float(np.median(totals)), 1),
               "handler_p95_ms": round(1000 * float(np.percentile(totals, 95)), 1)}
        row.update({f"{step}_ms": round(1000 * float(np.median(values[-runs:])), 1) for step, values in steps.items()})
        row["seeds_p50_ms"] = round(1000 * float(np.median(seeds)), 1)
        row["speedup_vs_seeds"] = round(row["seeds_p50_ms"] / row["handler_p50_ms"], 1)
        rows.append(row)
    print(f"segment handler, model {args.model} ({segmenter.size[0]}x{segmenter.size[1]}) on {describe_device()}")
    print_table(rows, ["input", "handler_p50_ms", "handler_p95_ms", *[f"{s}_ms" for s in STEPS], "seeds_p50_ms",
                       "speedup_vs_seeds"])
    print_json({"model": args.model, "device": describe_device(), "rows": rows, "time": time.time()})


if __name__ == "__main__":
    main()
