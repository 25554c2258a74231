"""Model files in the layouts old Keras versions wrote, built by the tests with h5py (no old Keras installs here).

`write_keras2_h5(model, path, ...)` writes a Keras 3 model as Keras 2.0-2.3 / tf.keras 1.x-2.x wrote a whole
model to HDF5: `model_config` in the old JSON form (a list-form `Sequential` for Keras <= 2.1, class "Model",
`batch_input_shape`, `inbound_nodes` as lists, initializers and dtypes in the old forms), `training_config` with
a custom loss, and the weights under `model_weights/<layer>/<layer>/<var>:0` in Keras 2's order (trainable
first). A Lambda's function is stored as Keras 2 stored it: base64 of marshalled bytecode, here of a Python
version that cannot run on this one (its bytes are never loaded)."""

import base64
import json

import h5py
import keras
import numpy as np

OLD_KERAS_VERSION = "2.0.8"
# What `marshal.dumps((lambda x: x / 255.).__code__)` gave on Python 3.6: bytes of another Python's bytecode
# (its header and layout differ from this Python's). Stored as Keras 2 stored a Lambda's function.
PY36_LAMBDA_DIV_255 = (
    b"\xe3\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x02\x00\x00\x00S\x00\x00\x00s\x08\x00\x00\x00|\x00"
    b"d\x01\x1b\x00S\x00)\x02N\xe7\x00\x00\x00\x00\x00\xe0o@\xa9\x00)\x01\xda\x01xr\x02\x00\x00\x00r\x02\x00"
    b"\x00\x00\xfa\x08train.py\xda\x08<lambda>\x0c\x00\x00\x00\xf3\x00\x00\x00\x00")
PY36_LAMBDA_RESIZE = (
    b"\xe3\x01\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00\x00\x04\x00\x00\x00S\x00\x00\x00s\x14\x00\x00\x00t\x00"
    b"j\x01j\x02|\x00d\x01d\x01g\x02\x83\x02S\x00)\x02N\xe9\x80\x00\x00\x00)\x03\xda\x02tf\xda\x05image\xda"
    b"\x06resize)\x01\xda\x01x\xa9\x00r\x06\x00\x00\x00\xfa\x08model.py\xda\x08<lambda>\x14\x00\x00\x00\xf3"
    b"\x00\x00\x00\x00")


def old_object(config):
    """A Keras 3 serialised object (initializer, regularizer ...) in Keras 2's {class_name, config} form."""
    if isinstance(config, dict) and "class_name" in config:
        inner = config.get("config") or {}
        return {"class_name": config["class_name"], "config": {k: old_object(v) for k, v in inner.items()}}
    return config


def old_layer_config(layer, first_shape=None, he_normal_as_old=True):
    """A layer's config as Keras 2.0 wrote it."""
    config = {key: old_object(value) for key, value in layer.get_config().items()}
    config["dtype"] = "float32"
    for key in ("kernel_initializer", "depthwise_initializer"):
        init = config.get(key)
        if he_normal_as_old and isinstance(init, dict) and init["class_name"] == "HeNormal":
            # Keras 2.0 spelled he_normal as VarianceScaling with distribution "normal" (truncated)
            config[key] = {"class_name": "VarianceScaling",
                           "config": {"scale": 2.0, "mode": "fan_in", "distribution": "normal", "seed": None}}
    if first_shape is not None:
        config["batch_input_shape"] = [None, *first_shape]
    return config


def old_weights(layer):
    """Keras 2 stored a layer's weights trainable first, then the others (moving statistics)."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def sequential_config(model, list_form=True):
    shape = list(model.inputs[0].shape[1:])
    layers = [{"class_name": type(layer).__name__,
               "config": old_layer_config(layer, shape if index == 0 else None)}
              for index, layer in enumerate(model.layers)]
    if list_form:  # Keras <= 2.1
        return {"class_name": "Sequential", "config": layers}
    return {"class_name": "Sequential", "config": {"name": model.name, "layers": layers}}


def functional_config(model):
    layers, names = [], {}
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            config = {"batch_input_shape": [None, *layer.batch_shape[1:]], "dtype": "float32", "sparse": False,
                      "name": layer.name}
        else:
            config = old_layer_config(layer)
        inbound = []
        for node in layer._inbound_nodes:  # test fixture only: the graph as Keras 2 listed it
            entries = []
            for tensor in node.input_tensors:
                source, node_index, tensor_index = tensor._keras_history
                entries.append([source.name, node_index, tensor_index, {}])
            if entries:
                inbound.append(entries)
        layers.append({"name": layer.name, "class_name": type(layer).__name__, "config": config,
                       "inbound_nodes": inbound})
        names[layer.name] = layer

    def ends(tensors):
        return [[t._keras_history[0].name, t._keras_history[1], t._keras_history[2]] for t in tensors]

    return {"class_name": "Model", "config": {"name": model.name, "layers": layers,
                                             "input_layers": ends(model.inputs),
                                             "output_layers": ends(model.outputs)}}


def write_keras2_h5(model, path, config=None, list_form=True, keras_version=OLD_KERAS_VERSION, lambdas=None):
    """`model` as an old Keras whole-model HDF5 file. `config`: the model_config to write (default: converted
    from `model`); `lambdas`: {layer name: stored function bytes} for layers to write as Lambda layers."""
    if config is None:
        config = (sequential_config(model, list_form) if isinstance(model, keras.Sequential)
                  else functional_config(model))
    for name, code in (lambdas or {}).items():
        for item in (config["config"] if isinstance(config["config"], list) else config["config"]["layers"]):
            if item["config"].get("name") == name or item.get("name") == name:
                old = item["config"]
                item["class_name"] = "Lambda"
                item["config"] = {"name": name, "trainable": True, "dtype": "float32",
                                  "function": [base64.b64encode(code).decode("ascii") + "\n", None, None],
                                  "function_type": "lambda", "output_shape": None, "output_shape_type": "raw",
                                  "arguments": {}, **({"batch_input_shape": old["batch_input_shape"]}
                                                      if "batch_input_shape" in old else {})}
    with h5py.File(path, "w") as file:
        file.attrs["keras_version"] = keras_version.encode()
        file.attrs["backend"] = b"tensorflow"
        file.attrs["model_config"] = json.dumps(config).encode()
        file.attrs["training_config"] = json.dumps({
            "optimizer_config": {"class_name": "Adam", "config": {"lr": 1e-4}},
            "loss": "dice_coef_loss", "metrics": ["dice_coef"], "sample_weight_mode": None,
            "loss_weights": None}).encode()
        group = file.create_group("model_weights")
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)] \
            if isinstance(model, keras.Sequential) else model.layers
        group.attrs["layer_names"] = [layer.name.encode() for layer in layers]
        group.attrs["backend"] = b"tensorflow"
        group.attrs["keras_version"] = keras_version.encode()
        for layer in layers:
            layer_group = group.create_group(layer.name)
            weights = old_weights(layer)
            names = [f"{layer.name}/{weight.path.split('/')[-1]}:0" for weight in weights]
            layer_group.attrs["weight_names"] = [name.encode() for name in names]
            for name, weight in zip(names, weights):
                layer_group.create_dataset(name, data=np.asarray(weight.numpy()))
    return path
