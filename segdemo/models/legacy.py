"""Whole-model HDF5 files written by old Keras (Keras 2.0-2.3, tf.keras 1.x-2.x): their `model_config` upgraded
to what Keras 3 reads, before Keras reads it. Keras 3's own legacy loader then builds the model (in safe mode)
and reads the weights from the file; only the config is rewritten, in a copy of the file.

What is upgraded (each found in real files; Keras 3.15.1 fails on the first two):
- a `Sequential` config in Keras <= 2.1's list form (Keras 3: "pop expected at most 1 argument, got 2");
- `batch_input_shape` on a `Sequential`'s first layer (Keras 3 reads it as a per-sample shape and adds a batch
  axis: "Kernel shape must have the same length as input"), which becomes an `InputLayer`; on an `InputLayer`
  it becomes `batch_shape`;
- Keras 1-style argument names (`nb_filter`, `border_mode`, `subsample`, `init`, `W_regularizer`, ...);
- tf.keras options Keras 3 does not take (`fused`, `virtual_batch_size`, `sparse`/`ragged` inputs ...);
- dtype policies (mixed precision is served in float32) and `VarianceScaling(distribution="normal")` (Keras
  2.0's name for the truncated normal).
The compile settings (`training_config`: loss, metrics, optimizer, often custom functions) are not read:
serving needs none. `describe_file` says what was done, for the card."""

import copy
import json
import shutil
from pathlib import Path

OLD_ARGUMENTS = {  # Keras 1 -> Keras 2 names, as Keras 2's own legacy support renamed them
    "nb_filter": "filters", "border_mode": "padding", "subsample": "strides", "init": "kernel_initializer",
    "W_regularizer": "kernel_regularizer", "b_regularizer": "bias_regularizer", "W_constraint": "kernel_constraint",
    "b_constraint": "bias_constraint", "bias": "use_bias", "dim_ordering": "data_format", "p": "rate",
    "output_dim": "units",
}
DATA_FORMATS = {"tf": "channels_last", "th": "channels_first", "default": "channels_last"}
DROPPED_IF_DEFAULT = {  # tf.keras options Keras 3's layers do not take, when they hold their default
    "fused": None, "virtual_batch_size": None, "adjustment": None, "renorm": False, "renorm_clipping": None,
    "renorm_momentum": 0.99, "sparse": False, "ragged": False, "synchronized": False,
}
SERVING_DTYPE = "float32"


def _layer_list(config):
    inner = config.get("config")
    if isinstance(inner, dict):
        return inner.get("layers") or []
    return inner if isinstance(inner, list) else []


def _upgrade_object(node, notes, depth=0):
    """Initializers, dtypes and argument names in any nested config dict, in place."""
    if depth > 200 or not isinstance(node, (dict, list)):
        return
    items = node if isinstance(node, list) else list(node.values())
    if isinstance(node, dict):
        if node.get("class_name") == "VarianceScaling" and isinstance(node.get("config"), dict) \
                and node["config"].get("distribution") == "normal":
            node["config"]["distribution"] = "truncated_normal"
            notes.add("VarianceScaling's old distribution name 'normal' read as 'truncated_normal'")
        layer = node.get("config") if isinstance(node.get("config"), dict) and "class_name" in node else None
        if layer is not None:
            _upgrade_layer_arguments(layer, notes)
        items = list(node.values())
    for item in items:
        _upgrade_object(item, notes, depth + 1)


def _upgrade_layer_arguments(layer, notes):
    for old, new in OLD_ARGUMENTS.items():
        if old in layer and new not in layer:
            value = layer.pop(old)
            layer[new] = DATA_FORMATS.get(value, value) if new == "data_format" else value
            notes.add(f"Keras 1 argument names ({old} -> {new}, ...) renamed")
    if "nb_row" in layer and "nb_col" in layer and "kernel_size" not in layer:
        layer["kernel_size"] = [layer.pop("nb_row"), layer.pop("nb_col")]
    for key, default in DROPPED_IF_DEFAULT.items():
        if key in layer and layer[key] == default:
            del layer[key]
    if isinstance(layer.get("dtype"), dict):  # a tf.keras / Keras 3 dtype policy: served in float32
        layer["dtype"] = SERVING_DTYPE
        notes.add("dtype policies (mixed precision) served in float32")


def _upgrade_inputs(config, notes):
    """`batch_input_shape` -> an InputLayer's `batch_shape`, or an InputLayer before a Sequential's first layer."""
    for item in _layer_list(config):
        layer = item.get("config") if isinstance(item, dict) else None
        if not isinstance(layer, dict):
            continue
        if item.get("class_name") == "InputLayer" and "batch_input_shape" in layer:
            layer["batch_shape"] = layer.pop("batch_input_shape")
            notes.add("batch_input_shape read as the input's batch_shape")
        if item.get("class_name") in ("Sequential", "Model", "Functional"):
            _upgrade_model(item, notes)
    if config.get("class_name") == "Sequential":
        layers = _layer_list(config)
        first = layers[0].get("config", {}) if layers else {}
        if isinstance(first, dict) and "batch_input_shape" in first and layers[0].get("class_name") != "InputLayer":
            shape = first.pop("batch_input_shape")
            layers.insert(0, {"class_name": "InputLayer", "config": {
                "batch_shape": shape, "dtype": SERVING_DTYPE, "name": f"{first.get('name', 'layer')}_input"}})
            notes.add("the first layer's batch_input_shape made an InputLayer")
        for layer in layers[1:]:
            if isinstance(layer.get("config"), dict):
                layer["config"].pop("batch_input_shape", None)


def _upgrade_model(config, notes):
    if config.get("class_name") == "Sequential" and isinstance(config.get("config"), list):
        config["config"] = {"name": "sequential", "layers": config["config"]}
        notes.add("the list-form Sequential config of Keras <= 2.1 rewritten")
    _upgrade_inputs(config, notes)


def upgrade_config(config):
    """(a Keras 3-readable copy of an old `model_config`, the sorted notes of what changed; [] = unchanged)."""
    config, notes = copy.deepcopy(config), set()
    _upgrade_model(config, notes)
    _upgrade_object(config, notes)
    return config, sorted(notes)


def hdf5_attributes(path):
    """{keras_version, backend, training_config} of an HDF5 model file's root (what is there)."""
    import h5py

    def text(value):
        return value.decode("utf-8") if hasattr(value, "decode") else value

    with h5py.File(path, "r") as file:
        return {key: text(file.attrs[key]) for key in ("keras_version", "backend", "training_config")
                if key in file.attrs}


def upgraded_copy(path, config, folder):
    """A copy of the HDF5 file `path` in `folder` whose `model_config` is `config`; the weights are the file's."""
    import h5py

    target = Path(folder) / Path(path).name
    shutil.copyfile(path, target)
    with h5py.File(target, "r+") as file:
        file.attrs["model_config"] = json.dumps(config).encode("utf-8")
    return target


def describe_file(path, upgrade_notes):
    """Plain lines for the card: which Keras wrote the file, what was upgraded, what was ignored."""
    attributes = hdf5_attributes(path)
    lines = []
    version = attributes.get("keras_version")
    if upgrade_notes:
        lines.append(f"saved by Keras {version or '(version not recorded)'}; its config was upgraded for Keras 3: "
                     + "; ".join(upgrade_notes))
    training = attributes.get("training_config")
    if training:
        try:
            training = json.loads(training)
            loss, metrics = training.get("loss"), training.get("metrics")
            what = ", ".join(part for part in (f"loss {loss}" if loss else "",
                                               f"metrics {metrics}" if metrics else "") if part)
        except (ValueError, AttributeError):
            what = ""
        lines.append(f"its compile settings ({what or 'loss, metrics, optimizer'}) are ignored: serving needs none")
    return lines
