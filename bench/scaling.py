"""Pre/post-processing time against image size: it should grow linearly with the pixels, not worse.

    python bench/scaling.py [--model pets] [--runs 5]

For JPEGs of 0.1 to 12 megapixels (the shipped cat photo, resized), runs the `segment` handler in process and
reports each step's median time; "pixel work" is everything but the fixed-size forward pass (decode,
preprocess, the resize back + argmax, postprocess, encode). The log-log slope of pixel work against pixels
is printed: 1.0 is linear. Prints a table, then one JSON line.
"""

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
from common import print_json, print_table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MEGAPIXELS = (0.1, 0.3, 1.0, 3.0, 6.0, 12.0)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pets")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    import tensorflow as tf
    from PIL import Image

    from segdemo.serving.registry import get_segmenter
    from segdemo.serving.runtime import describe_device, enable_bf16_inference
    from segdemo.serving.segment import STEPS, segment_and_render

    enable_bf16_inference()  # as the app does
    segmenter = get_segmenter(args.model)
    width, height = segmenter.size
    forward = segmenter._frozen
    batch = tf.zeros([1, height, width, 3])
    forward_s = []
    for _ in range(20):  # the fixed cost: the forward pass at the model's size, mapped back to that size
        started = tf.timestamp()
        forward(batch, tf.constant([height, width]))[1].numpy()
        forward_s.append(float(tf.timestamp() - started))
    fixed_ms = 1000 * float(np.median(forward_s))

    folder = Path(tempfile.mkdtemp(prefix="segdemo-scaling-"))
    cat = Image.open("examples/chelsea_cat.png").convert("RGB")
    rows = []
    for megapixels in MEGAPIXELS:
        side_w = round((megapixels * 1e6 * 4 / 3) ** 0.5)
        size = (side_w, round(side_w * 3 / 4))
        path = folder / f"{megapixels}mp.jpg"
        cat.resize(size, Image.BICUBIC).save(path, quality=90)
        steps = {step: [] for step in STEPS}
        for index in range(args.runs + 1):
            result, _ = segment_and_render(str(path), segmenter, "", 0.5, folder)
            if index:
                for step in STEPS:
                    steps[step].append(result.seconds[step])
        row = {"megapixels": round(size[0] * size[1] / 1e6, 2), "size": f"{size[0]}x{size[1]}"}
        row.update({f"{step}_ms": round(1000 * float(np.median(values)), 1) for step, values in steps.items()})
        row["pixel_work_ms"] = round(sum(row[f"{s}_ms"] for s in STEPS) - fixed_ms, 1)
        row["ms_per_mp"] = round(row["pixel_work_ms"] / row["megapixels"], 1)
        rows.append(row)
    pixels = np.log([row["megapixels"] for row in rows[2:]])  # from 1 MP: below it the fixed costs dominate
    work = np.log([max(row["pixel_work_ms"], 1e-3) for row in rows[2:]])
    slope = float(np.polyfit(pixels, work, 1)[0])
    print(f"model {args.model} ({width}x{height}) on {describe_device()}; fixed forward pass {fixed_ms:.1f} ms")
    print_table(rows, ["megapixels", "size", *[f"{s}_ms" for s in STEPS], "pixel_work_ms", "ms_per_mp"])
    print(f"log-log slope of pixel work vs pixels, 1-12 MP: {slope:.2f} (1.0 = linear)")
    print_json({"model": args.model, "fixed_forward_ms": round(fixed_ms, 1), "rows": rows, "slope": round(slope, 2)})


if __name__ == "__main__":
    main()
