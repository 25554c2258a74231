"""Lambda layers (and custom layers without weights) replaced by built-in ones, never run.

A Lambda's function is stored as Python bytecode (Keras 2: base64 of `marshal.dumps(code)`; Keras 3: the same
inside a `__lambda__` object), often of another Python version, and running it would run the file's code.
So it is only read: `describe_lambdas` lists each one with what the file says without executing anything (its
position in the graph, its arguments, and the names and constants found by scanning the stored bytes, which
are never unmarshalled), and suggests a replacement. `--replace-layer NAME=OP` then swaps it for one built-in,
weightless layer from a closed vocabulary (OPERATIONS), in a copy of the file's config; Keras loads that copy in
safe mode with the file's weights, and the result is saved as a new `.keras` file that carries no code."""

import copy
import json
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from segdemo.card.bytecode import scan_marshal, stored_code_bytes
from segdemo.errors import InputError
from segdemo.models.layer_operations import OPERATIONS, OPERATIONS_HELP, code_layers_refusal

RESIZE_INTERPOLATIONS = ("bilinear", "nearest")
SCALE_CANDIDATES = {"identity": "identity", "x / 255": f"scale:{1 / 255!r}",
                    "x / 127.5 - 1": f"scale:{1 / 127.5!r}:-1"}  # what --check tries for a first-layer Lambda
KNOWN_FUNCTIONS = {  # named functions Keras stored as module.name, and the operation each is
    f"keras.applications.{module}.preprocess_input": f"scale:{1 / 127.5!r}:-1"
    for module in ("mobilenet_v2", "mobilenet", "inception_v3", "xception")}
SUFFIX = "_segdemo"  # the file written beside the original: <stem>_segdemo.keras


@dataclass
class LambdaFacts:
    """What a model file says of one Lambda (or weightless custom) layer, read without running it."""

    name: str
    class_name: str
    position: str  # e.g. "first layer after the input: usually input scaling"
    inputs: list  # the layers feeding it
    arguments: dict
    names: list = field(default_factory=list)  # identifiers its stored code mentions
    constants: list = field(default_factory=list)  # numbers its stored code holds
    function: str = ""  # module.name of a named function
    suggestion: str = ""  # an --replace-layer operation, when one can be guessed
    first: bool = False

    def lines(self):
        said = [f"{self.class_name} {self.name!r}: {self.position}; input from {', '.join(self.inputs) or '?'}"]
        if self.function:
            said.append(f"  stored function: {self.function}")
        if self.names or self.constants:
            said.append(f"  its stored code mentions {', '.join(self.names) or 'no names'}; constants "
                        f"{', '.join(f'{value:g}' for value in self.constants) or 'none'}")
        if self.arguments:
            said.append(f"  arguments: {json.dumps(self.arguments)}")
        said.append(f"  suggested: --replace-layer {self.name}={self.suggestion}" if self.suggestion else
                    f"  replace it with --replace-layer {self.name}=OP (OP: {OPERATIONS_HELP})")
        return said


MODEL_CLASSES = ("Sequential", "Functional", "Model")


def model_layers(config):
    """The layer entries of a model config (Sequential or functional), the model's own level."""
    inner = config.get("config")
    if isinstance(inner, list):
        return inner
    return (inner or {}).get("layers") or []


def layer_name(item):
    """A layer entry's name (in its config; Keras 2 functional configs repeat it beside)."""
    return (item.get("config") or {}).get("name") or item.get("name")


def inbound_sources(item):
    """The names of the layers feeding a layer entry: Keras 2's `[[name, node, tensor, kwargs], ...]` nodes or
    Keras 3's `{"args": [keras tensors]}`."""
    sources = []
    for node in item.get("inbound_nodes") or []:
        if isinstance(node, dict):
            sources += [arg["config"]["keras_history"][0] for arg in node.get("args", [])
                        if isinstance(arg, dict) and "keras_history" in (arg.get("config") or {})]
        else:
            sources += [entry[0] for entry in node if isinstance(entry, list) and entry]
    return sources


def nested_models(config, owner="", depth=0):
    """(the model config, the name of the model holding it) for a config and every model nested in it."""
    yield config, owner
    if depth > 50:
        return
    for item in model_layers(config):
        if item.get("class_name") in MODEL_CLASSES:
            yield from nested_models(item, layer_name(item), depth + 1)


def suggest(facts):
    """An operation for the usual Lambdas: input scaling, a resize, a softmax/sigmoid, a known function."""
    constants, names = set(facts.constants), set(facts.names)
    if facts.function in KNOWN_FUNCTIONS:
        return KNOWN_FUNCTIONS[facts.function]
    if "resize" in names or "resize_images" in names or "resize_bilinear" in names:
        sides = [int(value) for value in facts.constants if value >= 8 and value == int(value)]
        if len(sides) >= 2:
            return f"resize:{sides[0]}:{sides[1]}"
        if len(sides) == 1:
            return f"resize:{sides[0]}:{sides[0]}"
        return ""
    if names & {"softmax"}:
        return "softmax"
    if names & {"sigmoid"}:
        return "sigmoid"
    if 255.0 in constants and facts.first:
        return SCALE_CANDIDATES["x / 255"]
    if 127.5 in constants and facts.first:
        return SCALE_CANDIDATES["x / 127.5 - 1"]
    return ""


def describe_lambdas(config, refused_classes=()):
    """[LambdaFacts] of every Lambda layer (and layer of a class in `refused_classes`), nested models' too."""
    found = []
    for model, owner in nested_models(config):
        found += describe_level(model, owner, refused_classes)
    return found


def describe_level(config, owner, refused_classes):
    layers = model_layers(config)
    found = []
    for index, item in enumerate(layers):
        class_name = item.get("class_name")
        if class_name != "Lambda" and class_name not in refused_classes:
            continue
        layer = item.get("config") or {}
        name = layer_name(item) or f"layer_{index}"
        inputs = inbound_sources(item)
        before = [entry for entry in layers[:index] if entry.get("class_name") != "InputLayer"]
        first = not before and not owner
        position = ("first layer after the input: usually input scaling" if first else
                    "last layer: usually the output's activation" if index == len(layers) - 1 else
                    f"layer {index} of {len(layers)}") + (f" of the nested model {owner!r}" if owner else "")
        names, constants = scan_marshal(stored_code_bytes(layer))
        function = ""
        if layer.get("function_type") == "function" or isinstance(layer.get("function"), str):
            function = f"{layer.get('module') or ''}.{layer.get('function')}".lstrip(".")
        facts = LambdaFacts(name, class_name, position, inputs or (["the input"] if first else []),
                            layer.get("arguments") or {}, names, constants, function, first=first)
        facts.suggestion = suggest(facts)
        found.append(facts)
    return found


def parse_replacements(items):
    """['NAME=OP', ...] -> {name: (operation, [arguments])}; InputError saying the vocabulary otherwise."""
    replacements = {}
    for item in items or []:
        name, _, operation = str(item).partition("=")
        operation, *arguments = operation.split(":")
        if not name or operation not in OPERATIONS:
            raise InputError(f"--replace-layer {item!r}: give NAME=OP with OP one of {OPERATIONS_HELP}")
        replacements[name] = (operation, arguments)
    return replacements


def built_in_layer(name, operation, arguments, channels=None):
    """(class name, config) of the one built-in, weightless layer doing `operation` on its input."""
    try:
        numbers = [float(value) for value in arguments] if operation in ("scale", "channels") else []
        if operation == "identity":
            return "Identity", {"name": name}
        if operation == "scale" and len(numbers) in (1, 2):
            return "Rescaling", {"name": name, "scale": numbers[0], "offset": numbers[1] if len(numbers) > 1 else 0.0}
        if operation == "resize" and len(arguments) in (2, 3):
            interpolation = arguments[2] if len(arguments) == 3 else "bilinear"
            if interpolation not in RESIZE_INTERPOLATIONS:
                raise ValueError(interpolation)
            return "Resizing", {"name": name, "height": int(arguments[0]), "width": int(arguments[1]),
                                "interpolation": interpolation}
        if operation == "channels" and len(numbers) in (1, 2):
            start = int(numbers[0])
            stop = int(numbers[1]) if len(numbers) == 2 else channels
            if channels is None or not 0 <= start < stop <= channels:
                raise ValueError(f"channels {start}:{stop} of {channels}")
            # an image's channels as the columns of a channels-first crop: a slice, no weights, no code
            return "Cropping2D", {"name": name, "cropping": [[0, 0], [start, channels - stop]],
                                  "data_format": "channels_first"}
        if operation in ("softmax", "sigmoid") and not arguments:
            return "Activation", {"name": name, "activation": operation}
    except ValueError as error:
        raise InputError(f"--replace-layer {name}={operation}:{':'.join(arguments)}: {error or 'bad arguments'}; "
                         f"{operation} takes {OPERATIONS[operation][0] or 'no arguments'}") from None
    raise InputError(f"--replace-layer {name}={operation}: {operation} takes "
                     f"{OPERATIONS[operation][0] or 'no arguments'}")


def replaced_config(config, replacements, channels=None):
    """A copy of `config` with each named layer swapped for its built-in layer (`channels`: {name: the
    channel count reaching it}, for `channels` operations)."""
    config = copy.deepcopy(config)
    names = {layer_name(item): item for model, _ in nested_models(config) for item in model_layers(model)}
    missing = sorted(set(replacements) - set(names))
    if missing:
        raise InputError(f"--replace-layer: the model has no layer {', '.join(map(repr, missing))}; its Lambda "
                         f"layers: {', '.join(f.name for f in describe_lambdas(config)) or 'none'}")
    for name, (operation, arguments) in replacements.items():
        item = names[name]
        old = item.get("config") or {}
        class_name, layer = built_in_layer(name, operation, arguments, (channels or {}).get(name))
        for key in ("batch_input_shape", "batch_shape", "dtype"):
            if key in old:
                layer[key] = old[key]
        item["class_name"] = class_name
        item["config"] = layer
        for node in item.get("inbound_nodes") or []:  # a Lambda's call arguments (mask=...) are not the new layer's
            if isinstance(node, dict):
                node["kwargs"] = {}
            elif isinstance(node, list):
                for entry in node:
                    if isinstance(entry, list) and len(entry) > 3:
                        entry[3] = {}
        if "module" in item:  # Keras 3's form names each class's module: the swapped-in layer is Keras's own
            item["module"], item["registered_name"] = "keras.layers", None
    return config


def write_with_config(path, config, folder):
    """A copy of the model file `path` in `folder` with its model config replaced (HDF5 or .keras)."""
    from segdemo.models.files import sniff_format

    target = Path(folder) / Path(path).name
    if sniff_format(path) == "hdf5":
        from segdemo.models.legacy import upgraded_copy

        return upgraded_copy(path, config, folder)
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(target, "w") as copy_:
        for info in source.infolist():
            data = json.dumps(config).encode() if info.filename == "config.json" else source.read(info)
            copy_.writestr(info, data)
    return target


def file_config(path):
    from segdemo.models.files import hdf5_model_config, keras_archive_config, sniff_format
    from segdemo.models.legacy import upgrade_config

    if sniff_format(path) == "hdf5":
        return upgrade_config(hdf5_model_config(path))[0]
    return keras_archive_config(path)


CHANNEL_KEEPING = {  # layers whose output has as many channels as their (first) input
    "BatchNormalization", "Activation", "ReLU", "LeakyReLU", "PReLU", "ELU", "Softmax", "Dropout",
    "SpatialDropout2D", "GaussianNoise", "MaxPooling2D", "AveragePooling2D", "UpSampling2D", "ZeroPadding2D",
    "Rescaling", "Resizing", "Identity", "Lambda",
}


def channels_into(config, name, depth=0):
    """How many channels reach the layer `name`, worked out from the config alone (no model is built): the
    input's, a convolution's filters, a concatenation's sum, through layers that keep them. None when unknown."""
    layers = model_layers(config)
    names = [layer_name(item) for item in layers]
    if name not in names or depth > 500:
        return None
    index = names.index(name)
    item = layers[index]
    sources = inbound_sources(item)
    if not sources:  # a Sequential's layer: the one before it (or its own input shape)
        shape = (item.get("config") or {}).get("batch_input_shape") or (item.get("config") or {}).get("batch_shape")
        if shape:
            return int(shape[-1])
        return output_channels(config, names[index - 1], depth + 1) if index > 0 else None
    counts = [output_channels(config, source, depth + 1) for source in sources]
    return None if None in counts else counts[0]


def output_channels(config, name, depth=0):
    layers = model_layers(config)
    item = next((entry for entry in layers if layer_name(entry) == name), None)
    if item is None:
        return None
    layer, kind = item.get("config") or {}, item.get("class_name")
    if kind == "InputLayer":
        shape = layer.get("batch_shape") or layer.get("batch_input_shape")
        return int(shape[-1]) if shape and shape[-1] else None
    if layer.get("filters") or layer.get("units"):
        return int(layer.get("filters") or layer.get("units"))
    if kind == "Concatenate":
        counts = [output_channels(config, source, depth + 1) for source in inbound_sources(item)]
        return None if not counts or None in counts else sum(counts)
    if kind in CHANNEL_KEEPING:
        return channels_into(config, name, depth + 1)
    return None


def channel_counts(config, replacements):
    """{name: channels reaching it} for the `channels` replacements."""
    counts = {}
    for name, (operation, _) in replacements.items():
        if operation == "channels":
            counts[name] = channels_into(config, name)
            if counts[name] is None:
                raise InputError(f"--replace-layer {name}=channels:...: the channels reaching {name!r} could not be "
                                 "worked out from the file; replace the layers before it first, or use identity")
    return counts


def load_replaced(path, config, replacements, channels):
    from segdemo.models.files import check_model_config, keras_load

    replaced = replaced_config(config, replacements, channels)
    check_model_config(replaced, Path(path).name)
    with tempfile.TemporaryDirectory(prefix="segdemo_replace_") as folder:
        return keras_load(write_with_config(path, replaced, folder), Path(path).name)


def replace_layers(path, items, out=None):
    """The model at `path` with the layers `items` (['NAME=OP']) replaced, saved as `out` (default
    <stem>_segdemo.keras beside it); returns (the model, the new path)."""
    replacements = parse_replacements(items)
    config = file_config(path)
    model = load_replaced(path, config, replacements, channel_counts(config, replacements))
    out = Path(out) if out else Path(path).with_name(Path(path).stem + SUFFIX + ".keras")
    model.save(out)
    return model, out


def replacement_candidates(facts):
    """{label: operation} --check tries for a first-layer Lambda (its input scaling)."""
    candidates = dict(SCALE_CANDIDATES)
    if facts.suggestion and facts.suggestion not in candidates.values():
        candidates[f"suggested {facts.suggestion}"] = facts.suggestion
    return candidates


def code_layers_refused(model, layers, in_app=False):
    """The refusal (`code_layers_refusal`) of `model` for its unreplaced [LambdaFacts], each with its place in the
    graph and the suggested swap."""
    listed = "; ".join(f"{facts.name}, {facts.position}" for facts in layers)
    return code_layers_refusal(model, f"has {len(layers)} layer(s) that hold code ({listed})",
                               [f"{facts.name}={facts.suggestion or 'OP'}" for facts in layers], in_app)


def code_layers(path):
    """[LambdaFacts] of the Lambda (and TensorFlow-call) layers in a model file; [] when it has none or is not a
    file segdemo reads (loading it then says why)."""
    from segdemo.models.files import TF_OP_LAYERS

    if not Path(path).is_file():
        return []
    try:
        return describe_lambdas(file_config(path), TF_OP_LAYERS)
    except InputError:
        return []
