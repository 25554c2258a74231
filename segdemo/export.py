"""Export a model for other runtimes: TensorFlow Lite with float16 weights (for mobile), ONNX (float32, for
ONNX Runtime), or `.keras`.

    python -m segdemo.export --model pets --out pets.tflite      (or --format onnx)

Every export is the model's own forward pass: float32 NHWC at the card's input size, its pixels as the card
says (the bundled models take RGB 0..255 unnormalised and rescale themselves; your own model takes what it
was trained on), out what the model returns (the bundled ones: per-pixel class logits); `export_io` words
it, and the card's JSON is written beside the export with that description under "export". The card's
resize, `flip_tta` (the mean with the mirrored image's prediction) and output decoding are the caller's
to apply.
"""

import argparse
import json
import tempfile
import warnings
from pathlib import Path

from segdemo.compat import LazyModule
from segdemo.errors import InputError
from segdemo.models import cards
from segdemo.models.cards import size_wh
from segdemo.serving.runtime import float32_graphs

tf = LazyModule("tensorflow")  # not imported with the page: see segdemo.compat

ONNX_INPUT = "image"
ONNX_OUTPUT = "logits"
FORMATS = {"tflite": ".tflite", "onnx": ".onnx", "keras": cards.MODEL_SUFFIX}  # --format -> file suffix
FORMAT_LABELS = {  # what a UI offers: label -> suffix
    "TensorFlow Lite, float16 (.tflite)": ".tflite",
    "ONNX, float32 (.onnx)": ".onnx",
    "Keras (.keras)": cards.MODEL_SUFFIX,
}
DEFAULT_FORMAT_LABEL = next(iter(FORMAT_LABELS))
def suffix_for_label(format_label):
    """The file suffix of a format as a UI offers it (FORMAT_LABELS); InputError for another."""
    if format_label not in FORMAT_LABELS:
        raise InputError(f"unknown format {str(format_label)[:60]!r}; formats: {', '.join(FORMAT_LABELS)}")
    return FORMAT_LABELS[format_label]


def export_io(card, suffix):
    """{"input": ..., "output": ...}: what an export of the card's model takes and returns, in words."""
    width, height = card.size
    batch = "1" if suffix == ".tflite" else "N"
    names = (f"'{ONNX_INPUT}': ", f"'{ONNX_OUTPUT}': ") if suffix == ".onnx" else ("", "")
    grid_w, grid_h = cards.size_wh(card.output_size) if card.output_size else (width, height)
    channels = card.output_channels
    grid = f"{grid_h * grid_w}" if card.output_layout == "flat" else f"{grid_h} x {grid_w}"
    return {"input": f"{names[0]}{batch} x {height} x {width} x {card.input_channels} float32 (NHWC), "
                     f"{card.io.input_words()}",
            "output": f"{names[1]}{batch} x {grid} x {channels} float32 {card.io.output_words()}"}
ONNX_NEEDS = "ONNX export needs tf2onnx and onnx (pip install -r requirements.txt)"


def export_tflite(model, input_size, path, channels=3):
    """Convert a Keras model to TFLite with float16 weights at a fixed 1 x H x W x `channels` input. Returns the
    path.

    Goes through a SavedModel export (Keras 3's supported route to the converter)."""
    import keras

    width, height = size_wh(input_size)
    image = keras.Input((height, width, channels), batch_size=1, name="image")
    fixed = keras.Model(image, model(image), name=f"{model.name}_fixed")
    with tempfile.TemporaryDirectory() as saved:
        fixed.export(saved, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(saved)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
        flatbuffer = converter.convert()
    path = Path(path)
    path.write_bytes(flatbuffer)
    return path


def rename_onnx_output(path, name):
    """Name the graph's single output `name` (tf2onnx calls it after the TF tensor, e.g. 'Identity:0')."""
    import onnx

    model = onnx.load(str(path))
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [name if output == old else output for output in node.output]
        node.input[:] = [name if value == old else value for value in node.input]
    model.graph.output[0].name = name
    onnx.save(model, str(path))


def export_onnx(model, input_size, path, channels=3):
    """Convert a Keras model to ONNX (float32, through tf2onnx) with input 'image' of N x H x W x `channels`
    and output 'logits'. Returns the path."""
    try:
        import onnx  # noqa: F401 - checked here for a clear message; rename_onnx_output uses it
        import tf2onnx  # noqa: F401 - what Keras's ONNX export calls on the TensorFlow backend
    except ImportError as error:
        raise RuntimeError(f"{ONNX_NEEDS}: {error}") from None
    width, height = size_wh(input_size)
    signature = [tf.TensorSpec((None, height, width, channels), tf.float32, name=ONNX_INPUT)]
    path = Path(path)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*np.object.*", category=FutureWarning)  # Keras's tf2onnx patch
        model.export(str(path), format="onnx", input_signature=signature, verbose=False)
    rename_onnx_output(path, ONNX_OUTPUT)
    return path


def export_model(segmenter, path):
    """Write the segmenter's model as `.tflite`, `.onnx` or `.keras` (by suffix), with its card beside it."""
    from segdemo.models.files import save_keras_model

    path = Path(path)
    if path.suffix == ".tflite":
        with float32_graphs():
            export_tflite(segmenter.model, segmenter.size, path, segmenter.card.input_channels)
    elif path.suffix == ".onnx":
        with float32_graphs():  # tf2onnx runs TensorFlow's graph optimiser too
            export_onnx(segmenter.model, segmenter.size, path, segmenter.card.input_channels)
    elif path.suffix == cards.MODEL_SUFFIX:
        save_keras_model(segmenter.model, path)
    else:
        raise ValueError(f"export to {', '.join(FORMATS.values())}, not {path.suffix!r}")
    card = segmenter.card.replace(export=export_io(segmenter.card, path.suffix))
    cards.card_path(path).write_text(json.dumps(card.to_dict(), indent=2) + "\n")
    return path


def output_path(out, fmt, model):
    """The export's path: --out as given (its suffix must match --format), else <model>.<format>."""
    if out is None:
        return Path(f"{Path(model).stem}{FORMATS[fmt or 'tflite']}")
    out = Path(out)
    if fmt and out.suffix != FORMATS[fmt]:
        raise ValueError(f"--out {out} does not end in {FORMATS[fmt]} (--format {fmt})")
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="bundled model name or .keras path")
    parser.add_argument("--format", choices=sorted(FORMATS), default=None,
                        help="tflite, onnx or keras (default: from --out's suffix, else tflite)")
    parser.add_argument("--out", default=None, help="output path ending in .tflite, .onnx or .keras")
    args = parser.parse_args(argv)
    try:
        out = output_path(args.out, args.format, args.model)
    except ValueError as error:
        parser.error(str(error))
    from segdemo.serving.registry import get_segmenter

    path = export_model(get_segmenter(args.model), out)
    print(json.dumps({"model": args.model, "out": str(path), "bytes": path.stat().st_size,
                      **export_io(cards.ModelCard.load(path), path.suffix)}))


if __name__ == "__main__":
    main()
