"""Each use of what is not Keras's, TensorFlow's or Gradio's public API (segdemo/compat.py and
segdemo/ui/gradio_compat.py), run on the installed
versions: an upgrade that changes one fails here, with the version it was checked against in the message."""

import asyncio

import keras
import numpy as np
import tensorflow as tf

from segdemo import compat

KERAS = f"(checked against Keras {compat.CHECKED_KERAS}, installed {keras.__version__})"
TF = f"(checked against TensorFlow {compat.CHECKED_TENSORFLOW}, installed {tf.__version__})"


def nested_model():
    inner = keras.Sequential([keras.layers.Conv2D(4, 3, padding="same", name="inner_conv"),
                              keras.layers.BatchNormalization(name="inner_bn")], name="block")
    inputs = keras.Input((8, 8, 3))
    x = inner(inputs)
    outputs = keras.layers.Conv2D(2, 1, name="head")(keras.layers.ReLU(name="relu")(x))
    return keras.Model(inputs, outputs)


def test_all_layers_reaches_into_nested_models():
    model = nested_model()
    names = [layer.name for layer in compat.all_layers(model)]
    assert {"inner_conv", "inner_bn", "relu", "head", "block"} <= set(names), (names, KERAS)
    assert model.name not in names
    assert compat.all_layers(model, include_self=True)[0] is model, KERAS


def test_producer_history_and_inbound_nodes_walk_the_graph():
    model = nested_model()
    layer, node_index = compat.producer_history(model.outputs[0])
    assert layer.name == "head", KERAS
    node = compat.inbound_nodes(layer)[node_index]
    parent, _ = compat.producer_history(node.input_tensors[0])
    assert parent.name == "relu", KERAS
    assert compat.producer_history(model.inputs[0])[0].__class__.__name__ == "InputLayer", KERAS


def test_run_through_graph_reuses_the_layers():
    model = nested_model()
    x = np.random.default_rng(0).uniform(size=(1, 8, 8, 3)).astype("float32")
    calls = []

    def call(layer, *args, **kwargs):
        calls.append(layer.name)
        return layer(*args, **kwargs)

    out = compat.run_through_graph(model, tf.constant(x), call)
    assert np.allclose(np.asarray(out), np.asarray(model(x)), atol=1e-5), KERAS
    assert calls[-1] == "head", (calls, KERAS)


def test_freeze_concrete_function_keeps_the_outputs():
    model = nested_model()
    x = np.random.default_rng(1).uniform(size=(1, 8, 8, 3)).astype("float32")
    function = tf.function(lambda t: model(t, training=False),
                           input_signature=[tf.TensorSpec([1, 8, 8, 3], tf.float32)])
    frozen = compat.freeze_concrete_function(function.get_concrete_function())
    assert not frozen.variables, TF
    out = frozen(tf.constant(x))
    out = out[0] if isinstance(out, (list, tuple)) else out
    assert np.allclose(np.asarray(out), np.asarray(model(x, training=False)), atol=1e-5), TF


def test_mcp_outputs_are_spread():
    import gradio
    from gradio import mcp

    from segdemo.ui import gradio_compat

    gradio_compat.spread_mcp_outputs()
    patched = mcp.GradioMCPServer._execute_tool_without_progress

    class Job:
        def result(self):
            return ("a", "b")

    versions = f"(checked against Gradio {gradio_compat.CHECKED_GRADIO}, installed {gradio.__version__})"
    assert asyncio.run(patched(None, Job())) == ["a", "b"], versions
