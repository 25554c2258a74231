"""Export a model for other runtimes: TensorFlow Lite with float16 weights (for mobile), or `.keras`.

    python -m segdemo.export --model pets --out pets.tflite

The TFLite model has a fixed input of 1 x S x S x 3 float32 RGB in 0..255 (S = the card's input size) and
returns class logits; the card's JSON is written beside it.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from segdemo import cards
from segdemo.cards import size_wh
from segdemo.runtime import float32_graphs
from segdemo.lazy import LazyModule

tf = LazyModule("tensorflow")  # not imported with the page: see segdemo.lazy


def export_tflite(model, input_size, path):
    """Convert a Keras model to TFLite with float16 weights at a fixed 1 x S x S x 3 input. Returns the path.

    Goes through a SavedModel export (Keras 3's supported route to the converter)."""
    import keras

    width, height = size_wh(input_size)
    image = keras.Input((height, width, 3), batch_size=1, name="image")
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


def lite_interpreter(path):
    """A TFLite interpreter for `path`: LiteRT's (`ai-edge-litert`, the runtime a phone app links) when it is
    installed, else TensorFlow's deprecated `tf.lite.Interpreter`."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = tf.lite.Interpreter  # noqa: N806 - deprecated since TF 2.20, the fallback only
    return Interpreter(model_path=str(path))


def tflite_predict(path, image):
    """Run a TFLite model on one (h, w, 3) image in 0..255 at its input size; returns (h, w, C) logits."""
    interpreter = lite_interpreter(path)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None].astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]


def export_model(segmenter, path):
    """Write the segmenter's model as `.tflite` or `.keras` (by suffix), with its card beside it."""
    from segdemo.registry import save_keras_model

    path = Path(path)
    if path.suffix == ".tflite":
        with float32_graphs():
            export_tflite(segmenter.model, segmenter.size, path)
    elif path.suffix == cards.MODEL_SUFFIX:
        save_keras_model(segmenter.model, path)
    else:
        raise ValueError(f"export to .tflite or .keras, not {path.suffix!r}")
    cards.card_path(path).write_text(json.dumps(segmenter.card, indent=2) + "\n")
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True, help="bundled model name or .keras path")
    parser.add_argument("--out", required=True, help="output path ending in .tflite or .keras")
    args = parser.parse_args(argv)
    from segdemo.registry import get_segmenter

    path = export_model(get_segmenter(args.model), args.out)
    print(json.dumps({"model": args.model, "out": str(path), "bytes": path.stat().st_size}))


if __name__ == "__main__":
    main()
