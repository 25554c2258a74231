"""Serving runtimes side by side, for issue 37: today's TensorFlow frozen graph (float32, and with oneDNN's
bfloat16 rewrite as the app serves on CPUs that have it) against OpenVINO float32, bfloat16 and int8 (NNCF
post-training quantisation calibrated on the model's own training images), on one bundled model.

    pip install -r bench/requirements-runtimes.txt
    python bench/runtime_speed.py --model pets --data ../shared/datasets/oxford-pets-subset \
        --calibration-split trainval --test-split test

What is converted is the Segmenter's whole probabilities function (the card's pixel scaling, the model, its
output decoding), from its traced TensorFlow function, so every runtime computes what the app serves.
Post-processing (the image's part of the grid resized back to the image, argmax) is the Segmenter's own for
every runtime and is not timed. Each row is checked on --test images against float32 TensorFlow: pixel
agreement of the served labels at the images' own size, and mean IoU against the masks.

int8 rows: "int8" quantises every layer NNCF's mixed preset quantises; "int8, checked" is NNCF's accuracy
control, which puts back to floating point the layers that cost agreement, until the agreement with float32
on --validation held-out training images drops by no more than --max-drop (0.005); "rest bfloat16" runs
those layers in bfloat16 instead of float32.

Timing: one image (batch 1) and batches of --batch, each path in turn, --rounds rounds (paths alternate, so
a change in the machine's load hits every path alike). Prints a table, then one JSON line; ratios are
against the TensorFlow bfloat16 graph (today's serving) of this run.
"""

import argparse
import os
import time

from common import print_json, print_table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pets")
    parser.add_argument("--data", required=True, help="the model's dataset (any layout segdemo reads)")
    parser.add_argument("--calibration-split", default=None, help="split the calibration images come from")
    parser.add_argument("--test-split", default=None, help="split the test images come from")
    parser.add_argument("--test-names", nargs="*", help="test pairs by name (e.g. ISBI's 25-29); the rest calibrate")
    parser.add_argument("--calibration", type=int, default=48, help="calibration images")
    parser.add_argument("--validation", type=int, default=16, help="held-out training images for the check")
    parser.add_argument("--test", type=int, default=50, help="test images")
    parser.add_argument("--max-drop", type=float, default=0.005,
                        help="agreement with float32 the checked int8 model may lose on --validation images")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--runs", type=int, default=5, help="single-image calls per round")
    return parser.parse_args()


def data_pairs(args):
    """(calibration pairs, test pairs) from the dataset as the arguments say."""
    from segdemo.data.pairs import find_pairs

    if args.test_names:
        pairs = find_pairs(args.data, args.calibration_split).pairs
        wanted = set(args.test_names)
        return [p for p in pairs if p.name not in wanted], [p for p in pairs if p.name in wanted]
    return find_pairs(args.data, args.calibration_split).pairs, find_pairs(args.data, args.test_split).pairs


def served_labels(probs, segmenter, box, image_shape):
    """What the app shows for one image: the Segmenter's own post-processing (its part of the grid, resized to
    the image, argmax) of a runtime's probabilities."""
    return segmenter._labels(probs, box, image_shape[:2])[1].numpy()


def compiled_openvino(core, model, size, batch, hint):
    """(one-image request, batch request) of an OpenVINO model at fixed shapes, two threads, `hint` precision."""
    width, height = size
    requests = []
    for count in (1, batch):
        model.reshape({0: [count, height, width, 3]})
        compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY",
                                                     "INFERENCE_NUM_THREADS": os.cpu_count() or 2})
        requests.append(compiled.create_infer_request())
    single, batched = requests
    return (lambda x: single.infer({0: x})[0].copy()), (lambda x: batched.infer({0: x})[0].copy())


def main():
    args = parse_args()
    import nncf
    import numpy as np
    import openvino as ov
    import tensorflow as tf

    from segdemo.compat import freeze_concrete_function
    from segdemo.data.images import load_image
    from segdemo.data.pairs import load_pair
    from segdemo.models.cards import binary_mask_classes
    from segdemo.serving.registry import get_segmenter
    from segdemo.serving.runtime import cpu_supports_bf16, enable_bf16_inference
    from segdemo.training.metrics import confusion_matrix, metrics_from_confusion

    os.environ["SEGDEMO_PRECISION"] = "float32"  # the float32 reference is traced first; bf16 switched on below
    segmenter = get_segmenter(args.model)
    segmenter.loaded_model()  # before tracing: a model loaded inside a trace would freeze its initial weights
    width, height = segmenter.size
    calibration_pairs, test_pairs = data_pairs(args)
    rng = np.random.default_rng(0)
    picked = rng.choice(len(calibration_pairs), min(len(calibration_pairs), args.calibration + args.validation),
                        replace=False)

    def model_input(pair):
        return segmenter._prepare(load_image(pair.image))[0].astype(np.float32)[None]

    calibration = [model_input(calibration_pairs[i]) for i in picked[:args.calibration]]
    validation = [model_input(calibration_pairs[i]) for i in picked[args.calibration:]] or calibration[-8:]
    binary = binary_mask_classes(segmenter.card)
    tests = [load_pair(pair, len(segmenter.classes), binary=binary) for pair in test_pairs[:args.test]]
    prepared = [segmenter._prepare(image) for image, _ in tests]  # (pixels at the model's size, grid box)
    test_inputs = [pixels.astype(np.float32)[None] for pixels, _ in prepared]
    boxes = [box for _, box in prepared]

    def frozen(count):
        spec = tf.TensorSpec([count, height, width, 3], tf.float32)
        function = freeze_concrete_function(tf.function(segmenter._probabilities, input_signature=[spec])
                                            .get_concrete_function())

        def run(x):
            output = function(tf.constant(x))
            return (output[0] if isinstance(output, (list, tuple)) else output).numpy()

        return run

    dynamic = tf.function(segmenter._probabilities, input_signature=[tf.TensorSpec([None, height, width, 3],
                                                                                    tf.float32)])
    float32_single = frozen(1)
    reference = [float32_single(x)[0] for x in test_inputs]

    def convert():
        return ov.convert_model(dynamic.get_concrete_function())

    core = ov.Core()
    paths, notes = {}, {}
    started = time.perf_counter()
    paths["OpenVINO float32"] = compiled_openvino(core, convert(), segmenter.size, args.batch, "f32")
    paths["OpenVINO bfloat16"] = compiled_openvino(core, convert(), segmenter.size, args.batch, "bf16")
    notes["OpenVINO float32"] = notes["OpenVINO bfloat16"] = f"converted in {time.perf_counter() - started:.1f} s"
    started = time.perf_counter()
    quantized = nncf.quantize(convert(), nncf.Dataset(calibration), preset=nncf.QuantizationPreset.MIXED,
                              subset_size=len(calibration))
    notes["OpenVINO int8"] = f"quantised in {time.perf_counter() - started:.1f} s"
    paths["OpenVINO int8"] = compiled_openvino(core, quantized, segmenter.size, args.batch, "f32")
    validation_labels = [float32_single(x).argmax(-1) for x in validation]

    def agreement_metric(compiled, items):
        scores = [float((np.asarray(compiled(x)[0]).argmax(-1) == labels).mean()) for x, labels in items]
        return float(np.mean(scores)), scores

    started = time.perf_counter()
    checked = nncf.quantize_with_accuracy_control(
        convert(), calibration_dataset=nncf.Dataset(calibration),
        validation_dataset=nncf.Dataset(list(zip(validation, validation_labels)), lambda item: item[0]),
        validation_fn=agreement_metric, max_drop=args.max_drop, drop_type=nncf.DropType.ABSOLUTE,
        preset=nncf.QuantizationPreset.MIXED, subset_size=len(calibration))
    notes["OpenVINO int8, checked"] = f"quantised and checked in {time.perf_counter() - started:.1f} s"
    paths["OpenVINO int8, checked"] = compiled_openvino(core, checked, segmenter.size, args.batch, "f32")
    # the layers the check kept in floating point run in bfloat16 (OpenVINO's own default on such CPUs)
    paths["OpenVINO int8, checked, rest bfloat16"] = compiled_openvino(core, checked, segmenter.size, args.batch,
                                                                        "bf16")

    # graphs frozen from here on get oneDNN's bfloat16 rewrite, as the app's on CPUs with native bfloat16
    precision = enable_bf16_inference(force=cpu_supports_bf16())
    tensorflow_name = f"TensorFlow graph ({'bfloat16 rewrite' if precision == 'bf16' else 'float32'}, today)"
    paths = {tensorflow_name: (frozen(1), frozen(args.batch)), **paths}

    batch = np.concatenate([test_inputs[i % len(test_inputs)] for i in range(args.batch)])
    single_times = {name: [] for name in paths}
    batch_times = {name: [] for name in paths}
    for single, batched in paths.values():  # warm-up: first calls compile kernels
        single(test_inputs[0])
        batched(batch)
    for round_index in range(args.rounds):
        for name, (single, batched) in paths.items():
            for run in range(args.runs):
                x = test_inputs[(round_index * args.runs + run) % len(test_inputs)]
                begun = time.perf_counter()
                single(x)
                single_times[name].append(time.perf_counter() - begun)
            begun = time.perf_counter()
            batched(batch)
            batch_times[name].append(time.perf_counter() - begun)

    rows, result = [], {"model": args.model, "input": f"{width}x{height}", "test_images": len(tests), "paths": {}}
    base_single = np.median(single_times[tensorflow_name])
    base_batch = args.batch / np.median(batch_times[tensorflow_name])
    float32_labels = [served_labels(probs, segmenter, box, image.shape)
                      for (image, _), probs, box in zip(tests, reference, boxes)]
    float32_matrix = sum(confusion_matrix(mask, labels, len(segmenter.classes))
                         for (_, mask), labels in zip(tests, float32_labels))
    float32_miou = metrics_from_confusion(float32_matrix, segmenter.classes)["miou"]
    for name, (single, _) in paths.items():
        matrix, agree, pixels = 0, 0, 0
        for (image, mask), x, box, reference_labels in zip(tests, test_inputs, boxes, float32_labels):
            labels = served_labels(single(x)[0], segmenter, box, image.shape)
            agree += int((labels == reference_labels).sum())
            pixels += labels.size
            matrix = matrix + confusion_matrix(mask, labels, len(segmenter.classes))
        miou = metrics_from_confusion(matrix, segmenter.classes)["miou"]
        one = float(np.median(single_times[name]))
        per_second = args.batch / float(np.median(batch_times[name]))
        figures = {"single_ms": round(one * 1000, 2), "single_speedup": round(base_single / one, 2),
                   "batch_images_per_s": round(per_second, 1), "batch_speedup": round(per_second / base_batch, 2),
                   "agreement": round(agree / pixels, 4), "miou": miou,
                   "miou_change": round(miou - float32_miou, 4), "note": notes.get(name, "")}
        result["paths"][name] = figures
        rows.append({"path": name, "one image ms": figures["single_ms"], "x": figures["single_speedup"],
                     f"batch {args.batch} images/s": figures["batch_images_per_s"], "x ": figures["batch_speedup"],
                     "agreement": figures["agreement"], "mIoU": miou, "vs float32": figures["miou_change"],
                     "note": figures["note"]})
    result["float32_miou"] = float32_miou
    print(f"{args.model} {width}x{height}, {len(tests)} test images, float32 mIoU {float32_miou}; "
          f"OpenVINO {ov.__version__}, NNCF {nncf.__version__}")
    print_table(rows, list(rows[0]))
    print_json(result)


if __name__ == "__main__":
    main()
