"""Keras and TensorFlow as segdemo uses them, in one place: lazy imports, and every use of what is not their
public API (Gradio's is `segdemo/ui/gradio_compat.py`, so that nothing below the UI imports the web framework).
Each function names the version it was checked against; `tests/test_compat.py` runs each one on the installed
versions, so an upgrade that breaks one fails there, loudly, not somewhere in a request.
`tests/test_layers.py` fails on a private attribute or module of these libraries used anywhere else."""

import importlib
import sys
import threading
import types

CHECKED_KERAS = "3.15.1"
CHECKED_TENSORFLOW = "2.21.0"


class LazyModule:
    """Stands for a module until an attribute is read; then imports it (thread-safe: Python's import lock)
    and reads the attribute from it. `tf = LazyModule("tensorflow")` keeps `tf.xxx` code unchanged, and the
    page can be served before TensorFlow (about 5 s to import) is."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attribute):
        return getattr(importlib.import_module(self._name), attribute)

    def __repr__(self):
        return f"<lazy module {self._name}>"


# Keras (checked against CHECKED_KERAS)

def all_layers(model, include_self=False):
    """Every layer of `model`, nested models' layers included, depth first (`Layer._flatten_layers`: Keras has
    no public recursive listing; `model.layers` stops at a nested model)."""
    return list(model._flatten_layers(include_self=include_self, recursive=True))


def producer_history(tensor):
    """(layer, node index) that produced a Keras tensor of a functional graph, or None for a model input
    (`KerasTensor._keras_history`)."""
    history = getattr(tensor, "_keras_history", None)
    return None if history is None else (history.operation, history.node_index)


def inbound_nodes(layer):
    """The nodes where `layer` is called in the graphs it belongs to (`Operation._inbound_nodes`)."""
    return getattr(layer, "_inbound_nodes", [])


def run_through_graph(model, x, call):
    """A functional `model`'s graph applied to tensor `x`, each layer called through `call(layer, *args,
    **kwargs)` (`Functional._run_through_graph`): the layers are reused, not nested as one layer, so a new head
    can be attached to the training form of a user's model."""
    return model._run_through_graph(x, operation_fn=lambda op: op, call_fn=call)


# TensorFlow (checked against CHECKED_TENSORFLOW)

KERAS_EAGER_IMPORT = "keras.src.optimizers"  # what `import tensorflow` imports of Keras at its end
_tensorflow_lock = threading.Lock()


def import_tensorflow_without_keras():
    """`import tensorflow` without the Keras import it ends with: TensorFlow 2.21's `__init__` runs
    `importlib.import_module("keras.src.optimizers")` (inside `try/except ImportError`) to register Keras's
    optimizers for SavedModel loading, which imports all of Keras (about 0.4 s of CPU here). Serving a frozen
    graph from the graph cache needs none of it. A placeholder module stands in for that name while TensorFlow
    imports, then is removed, so a later `import keras` (loading a model, an export, a fine-tune) imports
    Keras whole and registers its optimizers then. Returns the tensorflow module (already imported: as it is)."""
    with _tensorflow_lock:
        if "tensorflow" in sys.modules:
            return sys.modules["tensorflow"]
        placed = KERAS_EAGER_IMPORT not in sys.modules
        if placed:
            sys.modules[KERAS_EAGER_IMPORT] = types.ModuleType(KERAS_EAGER_IMPORT)
        try:
            return importlib.import_module("tensorflow")
        finally:
            if placed:
                sys.modules.pop(KERAS_EAGER_IMPORT, None)


def freeze_concrete_function(concrete):
    """A concrete function with its variables folded into constants (`convert_variables_to_constants_v2`: no
    public equivalent in TF 2). Grappler can then fold BatchNorm into its convolution: about 20% faster on
    CPU."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    return convert_variables_to_constants_v2(concrete)
