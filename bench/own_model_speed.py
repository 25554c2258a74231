"""Your own model's serving cost against a bundled model's, same weights, same input size, same parameter
count, in one process:

    python bench/own_model_speed.py [--model pets] [--runs 100]

The bundled model (logits, RGB 0..255 in, stretched) is wrapped the way a user's model commonly differs: it
takes pixels in 0..1 (a Rescaling(255) layer in front undoes the card's scaling), returns softmax
probabilities (a Softmax after its logits), and is served letterboxed (its card says resize "letterbox", so
the prediction is cropped to the image's part of the grid). Both go through `Segmenter` (the app's compiled,
frozen path, bfloat16 where the CPU has it, as the app serves). Timed, alternately, on one 640x480 photo:
`predict` (the Segment tab's path) and `predict_batch` of 8 (the Batch tab's). Prints a table and one JSON
line with the ratios own / bundled (the goal: at most 1.2x).
"""

import argparse
import os

from common import ROOT, percentiles, print_json, print_table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
PHOTO_SIZE = (640, 480)
BATCH = 8
GOAL_RATIO = 1.2


def own_form(model):
    """The bundled model as a user's: 0..1 pixels in, softmax out (built-in layers only)."""
    import keras

    inputs = keras.Input(model.input_shape[1:])
    return keras.Model(inputs, keras.layers.Softmax()(model(keras.layers.Rescaling(255.0)(inputs))), name="own")


def alternate(functions, runs):
    """Seconds of each function's calls, called in turn (so load on the machine falls on both alike)."""
    import time

    seconds = {name: [] for name in functions}
    for function in functions.values():  # warm-up
        function()
    for _ in range(runs):
        for name, function in functions.items():
            started = time.perf_counter()
            function()
            seconds[name].append(time.perf_counter() - started)
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pets")
    parser.add_argument("--runs", type=int, default=100)
    args = parser.parse_args()

    from PIL import Image

    from segdemo.serving.registry import get_segmenter
    from segdemo.serving.runtime import describe_device, enable_bf16_inference
    from segdemo.serving.segmenter import Segmenter

    enable_bf16_inference()
    bundled = get_segmenter(args.model, tta=False)
    card = bundled.card.replace(input_scale="0..1", output="softmax", resize="letterbox", flip_tta=False)
    own = Segmenter(own_form(bundled.model), card).warm_up()
    photo = Image.open(ROOT / "examples" / "chelsea_cat.png").convert("RGB").resize(PHOTO_SIZE)
    import numpy as np

    image = np.asarray(photo)
    images = [image] * BATCH
    agreement = float((own.predict(image).labels == bundled.predict(image).labels).mean())
    seconds = alternate({"bundled predict": lambda: bundled.predict(image), "own predict": lambda: own.predict(image),
                         "bundled batch": lambda: bundled.predict_batch(images),
                         "own batch": lambda: own.predict_batch(images)}, args.runs)
    rows = [{"path": name, **percentiles(values)} for name, values in seconds.items()]
    ratios = {kind: round(percentiles(seconds[f"own {kind}"])["p50_ms"] / percentiles(seconds[f"bundled {kind}"])
                          ["p50_ms"], 3) for kind in ("predict", "batch")}
    print(f"{args.model} ({bundled.model.count_params():,} parameters, {bundled.size[0]}x{bundled.size[1]}) on "
          f"{describe_device()}; one {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} photo, batches of {BATCH}")
    print_table(rows, ["path", "p50_ms", "p95_ms", "n"])
    print(f"own / bundled p50: predict {ratios['predict']}x, batch {ratios['batch']}x (goal <= {GOAL_RATIO}x); "
          f"the two label maps agree on {100 * agreement:.1f}% of pixels (letterbox vs stretch)")
    print_json({"bench": "own_model_speed", "model": args.model, "parameters": bundled.model.count_params(),
                "device": describe_device(), "rows": rows, "ratio_p50": ratios, "goal": GOAL_RATIO,
                "label_agreement": round(agreement, 4)})


if __name__ == "__main__":
    main()
