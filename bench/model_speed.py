"""Model speed at the served input size: the serving path against the seeds' way, in one process.

    python bench/model_speed.py [--model pets] [--runs 200] [--batch 8]

Rows (one image at the model's input size, so no resizing is timed):
- seeds' way: `model.predict` on one image, argmax, a Python loop colouring the mask (seed 000's `color3`)
- tf.function: one traced function calling the Keras model (weights as variables), argmax, table colouring
- serving float32: `Segmenter.predict` (frozen graph: BatchNorm folded into the convolutions)
- Keras mixed_bfloat16: the same with the model rebuilt under Keras' mixed_bfloat16 policy (an experiment)
- serving bf16 rewrite: the frozen graph with oneDNN's bfloat16 rewrite, which the app turns on for CPUs with
  native bfloat16 (`runtime.enable_bf16_inference`); on other CPUs the app serves float32
- ... mean with the mirror: the same serving with flip TTA, as a fine-tuned model is served by default
and batch throughput (images/s) of `model.predict` vs the frozen graph on batches of --batch.
Prints a table, then one JSON line. Ratios are against the seeds' way measured in this run.
"""

import argparse
import os

from common import percentiles, print_json, print_table, seed_color3, time_calls

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pets")
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from segdemo.data.images import load_image, resize_image
    from segdemo.serving.drawing import colorize
    from segdemo.serving.registry import get_segmenter
    from segdemo.serving.runtime import cpu_supports_bf16, describe_device, enable_bf16_inference
    from segdemo.serving.segmenter import Segmenter

    segmenter = get_segmenter(args.model)
    model, (width, height) = segmenter.model, segmenter.size
    colors = segmenter.palette
    image = resize_image(load_image("examples/chelsea_cat.png"), segmenter.size)
    batch = tf.constant(image[None].astype(np.float32))

    def seeds_way():
        labels = model.predict(image[None].astype(np.float32), verbose=0)[0].argmax(-1)
        return seed_color3(labels, colors)

    traced = tf.function(lambda x: tf.argmax(model(x, training=False), axis=-1))

    def variables_way():
        return colorize(traced(batch).numpy()[0].astype(np.uint8), colors)

    def serving():
        return colorize(segmenter.predict(image).labels, colors)

    mirrored = Segmenter(model, segmenter.card, tta=True)

    def serving_mirrored():
        return colorize(mirrored.predict(image).labels, colors)

    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    bf16_model = keras.Model.from_config(model.get_config())
    keras.mixed_precision.set_global_policy("float32")
    bf16_model.set_weights(model.get_weights())
    bf16 = Segmenter(bf16_model, segmenter.card)

    def keras_bf16():
        return colorize(bf16.predict(image).labels, colors)

    # float32 rows first: switching the bfloat16 rewrite on re-optimises every graph the process runs
    rows, result = [], {"model": args.model, "input": f"{width}x{height}"}
    images = np.repeat(image[None], args.batch, axis=0).astype(np.float32)
    frozen_batch = convert_variables_to_constants_v2(
        tf.function(lambda x: model(x, training=False)).get_concrete_function(
            tf.TensorSpec([args.batch, height, width, 3], tf.float32)))
    reference = serving()
    paths = [("seeds' way (predict + loop colouring)", seeds_way),
             ("tf.function, weights as variables", variables_way),
             ("serving float32 (frozen graph)", serving),
             ("serving float32, mean with the mirror (fine-tunes)", serving_mirrored),
             ("Keras mixed_bfloat16 policy (experiment)", keras_bf16)]

    def measure(name, function):
        agreement = float((function() == reference).all(-1).mean())
        runs = args.runs if "seeds" not in name else max(20, args.runs // 10)
        rows.append({"path": name, **percentiles(time_calls(function, runs)),
                     "agrees_with_float32": round(agreement, 4)})

    for name, function in paths:
        measure(name, function)
    throughput = {"batch": args.batch,
                  "model.predict": args.batch / float(np.median(
                      time_calls(lambda: model.predict(images, verbose=0), 10))),
                  "frozen graph float32": args.batch / float(np.median(
                      time_calls(lambda: frozen_batch(tf.constant(images))[0].numpy(), 20)))}
    if cpu_supports_bf16():
        enable_bf16_inference(force=True)
        measure("serving bf16 rewrite (the app's default here)", serving)
        measure("serving bf16, mean with the mirror (fine-tunes here)", serving_mirrored)
        throughput["frozen graph bf16 rewrite"] = args.batch / float(np.median(
            time_calls(lambda: frozen_batch(tf.constant(images))[0].numpy(), 20)))
    seeds_p50 = rows[0]["p50_ms"]
    for row in rows:
        row["speedup_vs_seeds"] = round(seeds_p50 / row["p50_ms"], 1)
    result.update(device=describe_device(), per_image=rows,
                  batch_throughput_images_per_s={k: round(v, 1) for k, v in throughput.items()})
    print(f"{args.model} at {width}x{height} on {describe_device()}")
    print_table(rows, ["path", "p50_ms", "p95_ms", "n", "speedup_vs_seeds", "agrees_with_float32"])
    print(f"batch of {args.batch}, images/s: " + ", ".join(
        f"{name} {value:.1f}" for name, value in throughput.items() if name != "batch"))
    print_json(result)


if __name__ == "__main__":
    main()
