"""Running an export in the runtime it is for, to check it against the Keras model: ONNX Runtime for `.onnx`,
LiteRT (the runtime a phone app links) for `.tflite`. Imported as `tests.export_helpers`."""

import numpy as np

from segdemo.export import ONNX_INPUT, ONNX_OUTPUT


def onnx_predict(path, images):
    """Run an ONNX export on a (n, h, w, 3) batch in 0..255 with ONNX Runtime; returns (n, h, w, C) logits."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([ONNX_OUTPUT], {ONNX_INPUT: np.asarray(images, np.float32)})[0]


def lite_interpreter(path):
    """A TFLite interpreter for `path`: LiteRT's (`ai-edge-litert`) when it is installed, else TensorFlow's
    deprecated `tf.lite.Interpreter`."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter  # noqa: N806 - deprecated since TF 2.20, the fallback only
    return Interpreter(model_path=str(path))


def tflite_predict(path, image):
    """Run a TFLite model on one (h, w, 3) image in 0..255 at its input size; returns (h, w, C) logits."""
    interpreter = lite_interpreter(path)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image[None].astype(np.float32))
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]
