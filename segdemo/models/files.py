"""Loading a user's model file safely: Keras 3 `.keras` archives, legacy HDF5 `.h5`/`.hdf5` whole models
(tf.keras 2.x or Keras 3 `model.save("x.h5")`), TensorFlow SavedModel folders and `hf://owner/name` Hub
URIs. Every refusal is an `InputError` that says what was wrong and what to do.

What Keras 3.15.1's `safe_mode=True` covers, and why the config is read here anyway
----------------------------------------------------------------------------------
Experiment (a Functional model with `keras.layers.Lambda(lambda x: (open(marker, "w").write("ran"), x)[1])`,
traced once at build time, the marker deleted, then saved and loaded with
`keras.saving.load_model(path, compile=False, safe_mode=True)`):

- `.keras`: ValueError "Requested the deserialization of a `Lambda` layer whose `function` is a Python
  lambda ..."; the marker is not written.
- Keras 3 `.h5`: the same ValueError (keras/src/legacy/saving/legacy_h5_format.py wraps
  `model_from_config` in `SafeModeScope(safe_mode)`, and `Lambda.from_config` refuses `__lambda__`
  functions in safe mode); no marker. `safe_mode` not passed: the default is True, same refusal.
- tf.keras 2.x-style `.h5` (the Lambda's config rewritten to the legacy `"function": [code, defaults,
  closure]`, `"function_type": "lambda"`), at the top level and inside a `Sequential` nested in the
  Functional model: the same refusal (legacy/saving/saving_utils.py converts the list to `__lambda__`
  first); no marker.
- An unregistered custom layer (`package>Name`) or a custom activation function: refused by Keras in both
  formats ("Unknown layer" / "could not be deserialized properly"), no code from the file runs.

So safe mode does cover legacy HDF5 in this Keras. What it does NOT cover: classes registered in the
serving process (any imported library's `register_keras_serializable` layers load, with their code), and
Keras's own `TFSMLayer`, whose config names a SavedModel path that is then loaded (TensorFlow graph ops,
which include file reads and writes). The config check below (`check_model_config`) therefore runs before
Keras sees the file, for both formats: it refuses Lambda layers with a clear message, any class that is
not built into Keras, `TFSMLayer`, and tf.keras 2.x's `TFOpLambda` layers (which Keras 3 cannot load).
It reads the JSON only (h5py / zipfile); no object is built.
"""

import json
import os
import tempfile
import zipfile
from pathlib import Path

from segdemo.compat import all_layers
from segdemo.errors import InputError
from segdemo.limits import MAX_MODEL_BYTES  # a bigger file (or SavedModel folder) is refused unread
from segdemo.models.hub import is_hub_uri
from segdemo.models.layer_operations import code_layers_refusal
from segdemo.models.legacy import upgrade_config, upgraded_copy

MAX_CONFIG_BYTES = 20_000_000  # config.json inside a .keras archive (a real U-Net's is well under 1 MB)
KERAS_SUFFIX = ".keras"
H5_SUFFIXES = (".h5", ".hdf5")
SAVED_MODEL_FILE = "saved_model.pb"
KERAS_DIR_CONFIG = "config.json"  # a folder in Keras 3's own layout (config.json + model.weights.h5)
ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
SAVE_HOW = ("segdemo reads .keras archives, whole-model HDF5 files (.h5) saved by Keras 2.0 or later, and "
            "TensorFlow SavedModel folders")
WEIGHTS_ONLY = ("holds weights only (what model.save_weights writes): segdemo needs the whole model, its "
                "architecture and weights, in the one file model.save writes (.h5 or .keras)")
# Config entries that are references, not classes (Keras 3's serialisation of tensors and arrays).
REFERENCE_CLASS_NAMES = {"__keras_tensor__", "__tensor__", "__numpy__", "__bytes__", "__typespec__", "__ellipsis__",
                         "__slice__"}
REFUSED_BUILTINS = {"TFSMLayer"}  # built in, but loads a SavedModel from a path named in the config
# tf.keras 2.x turned TensorFlow calls in a Functional model into these; Keras 3 cannot load them
TF_OP_LAYERS = {"TFOpLambda", "SlicingOpLambda"}
# TensorFlow ops a segmentation SavedModel has no business running (files, Python callbacks)
REFUSED_SAVED_MODEL_OPS = {"WriteFile", "ReadFile", "MatchingFiles", "PyFunc", "PyFuncStateless", "EagerPyFunc",
                           "ImmutableConst"}

# Memory estimate: weights are held twice (the Keras variables and the frozen graph's constants the
# Segmenter builds); activations are the sum of every layer's output at batch 1, an upper bound on what is
# alive at once (TensorFlow frees tensors as it goes), times 4 bytes each.
WEIGHT_COPIES = 2
BYTES_PER_VALUE = 4
UNKNOWN_SIDE = 512  # a side the model leaves open (None) counts as this many pixels (= limits.MAX_INPUT_SIZE)


def load_model_file(path):
    """A `keras.Model` from a user's model file, loaded in Keras safe mode (no code from the file runs).
    `path`: a `.keras` file, a legacy HDF5 `.h5`/`.hdf5` whole model, a TensorFlow SavedModel folder or an
    `hf://owner/name` URI. Raises InputError (what was wrong, what to do)."""
    text = str(path)
    if is_hub_uri(text):
        return load_hub_model(text)
    path = Path(path)
    name = path.name or text
    if not path.exists():
        raise InputError(f"{name}: file not found")
    if path.is_dir():
        if (path / SAVED_MODEL_FILE).is_file():
            return load_saved_model(path)
        if (path / KERAS_DIR_CONFIG).is_file():  # Keras 3's unzipped layout, as a Hub repo holds it
            if folder_bytes(path) > MAX_MODEL_BYTES:
                raise InputError(f"{name} is larger than {MAX_MODEL_BYTES / 1e6:.0f} MB")
            try:
                config = json.loads((path / KERAS_DIR_CONFIG).read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise InputError(f"{name}/{KERAS_DIR_CONFIG} is not valid JSON ({error})") from None
            check_model_config(config, name)
            return keras_load(path, name)
        raise InputError(f"{name} is a folder but not a TensorFlow SavedModel (no {SAVED_MODEL_FILE}) nor a Keras "
                         f"model folder (no {KERAS_DIR_CONFIG}); give a .keras file ({SAVE_HOW})")
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise InputError(f"{name} is too large ({size / 1e6:.0f} MB); the limit is {MAX_MODEL_BYTES / 1e6:.0f} MB")
    kind = sniff_format(path)
    suffix = path.suffix.lower()
    if kind == "zip":
        if suffix in H5_SUFFIXES:
            raise InputError(f"{name} is a Keras 3 archive, not HDF5: rename it to {path.stem}{KERAS_SUFFIX}")
        check_model_config(keras_archive_config(path), name)
    elif kind == "hdf5":
        if suffix == KERAS_SUFFIX:
            raise InputError(f"{name} is a legacy HDF5 file, not a Keras 3 archive: rename it to {path.stem}.h5")
        config, upgraded = upgrade_config(hdf5_model_config(path))
        check_model_config(config, name)
        if upgraded:  # an old Keras's file: Keras 3 reads a copy with the upgraded config
            with tempfile.TemporaryDirectory(prefix="segdemo_upgrade_") as folder:
                return keras_load(upgraded_copy(path, config, folder), name)
    else:
        raise InputError(f"{name} is not a Keras model file (neither a .keras archive nor an HDF5 model); "
                         f"{SAVE_HOW}")
    if suffix not in (KERAS_SUFFIX, *H5_SUFFIXES):
        raise InputError(f"{name}: model files must end in .keras, .h5 or .hdf5")
    return keras_load(path, name)


def keras_load(path, name):
    import keras

    try:
        model = keras.saving.load_model(path, compile=False, safe_mode=True)
    except InputError:
        raise
    except Exception as error:  # corrupt archive, unknown class, safe-mode refusal ...  # noqa: BLE001
        raise InputError(f"{name} is not a loadable Keras model ({type(error).__name__}: {short(error)}); "
                         f"{SAVE_HOW}") from None
    if not isinstance(model, keras.Model):
        raise InputError(f"{name} holds a {type(model).__name__}, not a model; {SAVE_HOW}")
    return model


def short(error, limit=300):
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[:limit] + " ..."


def sniff_format(path):
    """'zip', 'hdf5' or None, from the file's first bytes."""
    with open(path, "rb") as file:
        head = file.read(8)
    if head.startswith(ZIP_MAGIC):
        return "zip"
    if head == HDF5_MAGIC:
        return "hdf5"
    return None


def keras_archive_config(path):
    """The model config (config.json) of a `.keras` archive, read without loading it."""
    name = Path(path).name
    try:
        with zipfile.ZipFile(path) as archive:
            infos = {info.filename: info for info in archive.infolist()}
            if "config.json" not in infos:
                if any(item.endswith(".weights.h5") for item in infos):
                    raise InputError(f"{name} {WEIGHTS_ONLY}")
                raise InputError(f"{name} is a ZIP file but not a Keras model archive (no config.json); {SAVE_HOW}")
            total = sum(info.file_size for info in infos.values())
            if total > MAX_MODEL_BYTES or infos["config.json"].file_size > MAX_CONFIG_BYTES:
                raise InputError(f"{name} unpacks to {total / 1e6:.0f} MB; the limit is "
                                 f"{MAX_MODEL_BYTES / 1e6:.0f} MB")
            return json.loads(archive.read("config.json"))
    except InputError:
        raise
    except (zipfile.BadZipFile, ValueError, OSError, KeyError) as error:
        raise InputError(f"{name} is not a readable Keras archive ({short(error)}); {SAVE_HOW}") from None


def hdf5_model_config(path):
    """The `model_config` JSON in a legacy HDF5 file's root, read with h5py without building anything."""
    import h5py

    name = Path(path).name
    try:
        with h5py.File(path, "r") as file:
            raw = file.attrs.get("model_config")
            if raw is None:
                raise InputError(f"{name} {WEIGHTS_ONLY}")
            if hasattr(raw, "decode"):
                raw = raw.decode("utf-8")
            return json.loads(raw)
    except InputError:
        raise
    except (OSError, ValueError, TypeError) as error:
        raise InputError(f"{name} is not a readable HDF5 model ({short(error)}); {SAVE_HOW}") from None


def builtin_class_names():
    """Class names Keras builds in (for tf.keras 2.x configs, which do not say their module)."""
    import keras

    names = {"Functional", "Model", "Sequential", "InputLayer"}
    for module in (keras.layers, keras.initializers, keras.regularizers, keras.constraints, keras.activations,
                   keras.dtype_policies):
        names.update(item for item in dir(module) if not item.startswith("_"))
    return names


def is_builtin_module(module):
    return module == "keras" or module.startswith("keras.")


def config_objects(node, depth=0):
    """Every dict with a `class_name` in a config, at any nesting depth (Sequential blocks inside Functional
    models, encoders inside those)."""
    if depth > 200:
        raise InputError("the model config is nested too deeply")
    if isinstance(node, dict):
        if isinstance(node.get("class_name"), str):
            yield node
        for value in node.values():
            yield from config_objects(value, depth + 1)
    elif isinstance(node, list):
        for value in node:
            yield from config_objects(value, depth + 1)


def check_model_config(config, name="the model"):
    """Refuse a model config (the JSON of a .keras archive or an HDF5 file) that holds code or classes that
    are not built into Keras; see the module docstring for why Keras's safe mode is not left alone with it."""
    if not isinstance(config, dict) or "class_name" not in config:
        raise InputError(f"{name} has no model config Keras can read; {SAVE_HOW}")
    builtins = None
    for item in config_objects(config):
        class_name = item["class_name"]
        layer_name = (item.get("config") or {}).get("name") if isinstance(item.get("config"), dict) else None
        where = f" (layer {layer_name!r})" if layer_name else ""
        swap = [f"{layer_name or 'NAME'}=OP"]  # what to replace it with, when it is refused
        if class_name == "Lambda" or class_name == "__lambda__":
            raise InputError(code_layers_refusal(name, f"contains a Lambda layer{where}", swap))
        if class_name in REFERENCE_CLASS_NAMES:
            continue
        if class_name in TF_OP_LAYERS:
            raise InputError(code_layers_refusal(name, f"uses a TensorFlow call as a layer ({class_name}{where}), "
                                                 "which Keras 3 cannot load", swap))
        if class_name in REFUSED_BUILTINS:
            raise InputError(f"{name} wraps a TensorFlow SavedModel ({class_name}{where}), which segdemo does not "
                             "load from inside a model; give segdemo the SavedModel folder itself")
        module = item.get("module")
        registered = item.get("registered_name")
        if module is not None or "registered_name" in item:
            custom = (module is None or not is_builtin_module(str(module))
                      or registered not in (None, class_name))
        else:  # tf.keras 2.x: no module; custom classes are registered as "package>Name" or plain names
            if builtins is None:
                builtins = builtin_class_names()
            custom = ">" in class_name or class_name not in builtins
        if custom:
            what = registered if isinstance(registered, str) and registered not in ("function",) else class_name
            if class_name == "function" and isinstance(item.get("config"), str):
                what = f"function {item['config']!r}"
            found = (f"contains a custom {'object' if class_name == 'function' else 'class'} {what}{where} that is "
                     "not built into Keras")
            raise InputError(code_layers_refusal(name, found, swap) + ". Only one without "
                             "weights that does one of these operations can be swapped; otherwise this model cannot "
                             "be served")


def folder_bytes(path):
    return sum(entry.stat().st_size for entry in Path(path).rglob("*") if entry.is_file())


def saved_model_op_types(path):
    """The op types in a SavedModel's graphs and function library, read from saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((Path(path) / SAVED_MODEL_FILE).read_bytes())
    ops = set()
    for meta_graph in proto.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def load_saved_model(path):
    """A TensorFlow SavedModel folder as a keras.Model: its `serving_default` signature wrapped in a
    `keras.layers.TFSMLayer` behind an Input of the signature's shape. Refused when the signature does not
    take one (N, h, w, C) image batch and return one tensor, or when the graph reads or writes files."""
    import keras

    name = Path(path).name
    size = folder_bytes(path)
    if size > MAX_MODEL_BYTES:
        raise InputError(f"{name} is too large ({size / 1e6:.0f} MB); the limit is {MAX_MODEL_BYTES / 1e6:.0f} MB")
    how = SAVE_HOW
    try:
        refused = saved_model_op_types(path) & REFUSED_SAVED_MODEL_OPS
    except Exception as error:  # a corrupt protobuf  # noqa: BLE001
        raise InputError(f"{name} is not a readable SavedModel ({short(error)}); {how}") from None
    if refused:
        raise InputError(f"{name} runs file or Python operations ({', '.join(sorted(refused))}), which a served "
                         f"model may not; {how}")
    try:
        layer = keras.layers.TFSMLayer(str(path), call_endpoint="serving_default")
        signature = layer.call_endpoint_fn.structured_input_signature
    except Exception as error:  # no serving_default signature, unreadable variables ...  # noqa: BLE001
        raise InputError(f"{name} is not a loadable SavedModel with a serving_default signature "
                         f"({type(error).__name__}: {short(error)}); {how}") from None
    args, kwargs = signature
    specs = list(args) + list(kwargs.values())
    if len(specs) != 1 or len(specs[0].shape) != 4:
        raise InputError(f"{name}'s serving signature takes {len(specs)} inputs "
                         f"({', '.join(str(spec.shape) for spec in specs)}), not one (N, height, width, channels) "
                         f"image batch; {how}")
    spec = specs[0]
    shape = tuple(spec.shape)[1:]
    inputs = keras.Input(shape=shape, dtype=spec.dtype.name, name=getattr(spec, "name", None) or "image")
    outputs = layer(inputs)
    if isinstance(outputs, dict):
        if len(outputs) != 1:
            raise InputError(f"{name}'s serving signature returns {len(outputs)} outputs ({', '.join(outputs)}), "
                             f"not one; {how}")
        outputs = next(iter(outputs.values()))
    return keras.Model(inputs, outputs, name=Path(path).name or "saved_model")


def load_hub_model(uri):
    """`hf://owner/name`: handed to Keras (safe mode), which downloads the repository's .keras file; offline
    or missing, the failure becomes an InputError."""
    import keras

    try:
        return keras.saving.load_model(uri, compile=False, safe_mode=True)
    except Exception as error:  # offline, no such repository, not a Keras repository ...  # noqa: BLE001
        offline = os.environ.get("HF_HUB_OFFLINE") == "1"
        hint = ("the Hub is switched off here (HF_HUB_OFFLINE=1): download the model's .keras file and give its "
                "path" if offline else "check the repository name and that it holds a Keras model saved with "
                "model.save_to_preset / push_to_hub, or download its .keras file and give its path")
        raise InputError(f"{uri} could not be loaded ({type(error).__name__}: {short(error)}); {hint}") from None


def layer_output_values(model, input_wh=None):
    """Sum over all layers (nested models' layers included) of the values in their outputs at batch 1; open
    spatial sides count as `input_wh` (or UNKNOWN_SIDE)."""
    import keras

    total = 0
    for layer in all_layers(model):
        if isinstance(layer, keras.Model):
            continue
        try:
            outputs = layer.output
        except (AttributeError, ValueError):  # a layer called several times, or never in a graph
            continue
        for tensor in outputs if isinstance(outputs, (list, tuple)) else [outputs]:
            shape = list(getattr(tensor, "shape", ()) or ())[1:]
            if len(shape) == 3 and input_wh and shape[0] is None and shape[1] is None:
                shape[0], shape[1] = input_wh[1], input_wh[0]
            values = 1
            for dim in shape:
                values *= UNKNOWN_SIDE if dim is None else int(dim)
            total += values
    return total


def estimated_memory_bytes(model, input_wh=None):
    """A rough bound on the memory one loaded, warmed-up model takes for one image: parameters x 4 bytes x
    WEIGHT_COPIES, plus every layer's output at the model's input size (or `input_wh` (width, height) when
    the model leaves it open) x 4 bytes. Compare models, or refuse one above a memory budget; not an exact
    figure (TensorFlow's allocator and the tf.function's own buffers come on top)."""
    weights = int(model.count_params()) * BYTES_PER_VALUE * WEIGHT_COPIES
    return weights + layer_output_values(model, input_wh) * BYTES_PER_VALUE


def save_keras_model(model, path):
    """Save weights and architecture only: a compiled model would also store its optimizer state
    (Adam's two moments triple the file)."""
    import keras

    clean = keras.Model.from_config(model.get_config())  # uncompiled: no optimizer, no loss
    clean.set_weights(model.get_weights())
    clean.save(path)
