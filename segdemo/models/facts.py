"""What a loaded Keras segmentation model says about itself, from its input/output shapes and its layer graph
alone (no data): input size and channels, what the last layer outputs (logits, softmax, sigmoids) and on
which grid. The card command proposes a card from these facts; the Segmenter decodes outputs by them.

Output kinds (`cards.OUTPUT_KINDS`), kept to five so decoding is one branch each:

- "logits": C >= 2 channels, no activation; class probabilities = softmax.
- "softmax": C >= 2 channels that already are probabilities.
- "sigmoid": C >= 2 channels, one sigmoid per class (trained on one-hot masks with binary cross-entropy).
- "sigmoid_binary": 1 channel, sigmoid: the foreground probability p; classes (background, foreground).
- "logits_binary": 1 channel, no activation (trained with `from_logits=True`): p = sigmoid(x), then as
  "sigmoid_binary". A separate kind rather than a flag beside "sigmoid_binary", so the kind alone says how
  to decode.

The activation is read from the last layer that computes something, looking through layers that only move
or resample values (Dropout, Reshape, UpSampling2D, Cropping2D ...) and into nested models (a Sequential
block or a Functional sub-model last): a Conv2D/Dense/Conv2DTranspose's `activation`, or an
`Activation`/`Softmax` layer. Anything else (linear, relu, tanh ...) is read as logits, with a note.
"""

import math
from dataclasses import dataclass, field

from segdemo.compat import inbound_nodes, producer_history
from segdemo.errors import InputError
from segdemo.models.preprocessing import BINARY_KINDS, ModelIO

# Layers that pass values through (or only move/resample them): the activation is read from what feeds them.
PASS_THROUGH_LAYERS = {
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianDropout", "GaussianNoise", "AlphaDropout",
    "Identity", "Reshape", "Permute", "Cropping2D", "ZeroPadding2D", "UpSampling2D", "Resizing",
    "ActivityRegularization", "InputLayer",
}
SOFTMAX_NAMES = {"softmax"}
SIGMOID_NAMES = {"sigmoid", "hard_sigmoid"}
LOGIT_NAMES = {"linear", "log_softmax", None}
RELU_NAMES = {"relu", "relu6"}  # one such channel is a regression-style mask, not logits


@dataclass
class ModelFacts:
    """What a model's graph says about its input and output (see the module docstring for the kinds)."""

    input_size: tuple | None  # (width, height); None when the model takes any size
    input_channels: int  # 3 RGB, 1 grayscale
    num_channels_out: int  # the output's last dimension
    output_kind: str  # one of cards.OUTPUT_KINDS
    output_layout: str  # "spatial" (N, h, w, C) or "flat" (N, h*w, C)
    output_size: tuple | None  # (width, height) of the output grid; None when unknown (open input size)
    activation_layer: str | None = None  # the layer the output kind was read from
    notes: list = field(default_factory=list)  # what was assumed, in plain English
    activation: str | None = None  # the name of the activation the output kind was read from

    @property
    def num_classes(self):
        """Classes the decoded probabilities have: 2 for a single-channel binary output, else the channels."""
        return 2 if self.output_kind in BINARY_KINDS else self.num_channels_out

    @property
    def output_grid_hw(self):
        """(height, width) of the output grid, as `model_preprocessing.output_probabilities` takes it."""
        return None if self.output_size is None else (self.output_size[1], self.output_size[0])

    def resolution_words(self):
        if self.input_size is None or self.output_size is None:
            return "at a resolution set by the input size (the model takes any size)"
        (in_w, in_h), (out_w, out_h) = self.input_size, self.output_size
        grid = f"({out_w}x{out_h})"
        if (in_w, in_h) == (out_w, out_h):
            return f"at the input resolution {grid}"
        ratio_w, ratio_h = in_w / out_w, in_h / out_h
        if math.isclose(ratio_w, ratio_h):
            if ratio_w > 1:
                named = {2: "half", 4: "a quarter of", 8: "an eighth of"}.get(round(ratio_w))
                if named and math.isclose(ratio_w, round(ratio_w)):
                    return f"at {named} the input resolution {grid}"
                return f"at 1/{ratio_w:g} of the input resolution {grid}"
            return f"at {1 / ratio_w:g} times the input resolution {grid}"
        return f"on a {out_w}x{out_h} grid (the input is {in_w}x{in_h}; the aspect differs)"

    def describe(self):
        """Plain-English lines: what the model takes and what it returns."""
        colour = {3: "RGB", 1: "grayscale"}.get(self.input_channels, f"{self.input_channels}-channel")
        if self.input_size is None:
            lines = [f"input: any size, {colour} (fully convolutional; the card's input size chooses)"]
        else:
            lines = [f"input: {self.input_size[0]}x{self.input_size[1]} {colour} (width x height)"]
        classes = f"{self.num_classes} classes"
        flat = ""
        if self.output_layout == "flat":
            flat = f", flattened to (pixels, {self.num_channels_out}) and read back as a grid"
        kind = ModelIO(self.num_classes, output=self.output_kind).output_words(served=True)
        lines.append(f"output: {classes}, {kind}, {self.resolution_words()}{flat}")
        if self.activation_layer:
            lines.append(f"read from layer {self.activation_layer!r}")
        return lines + list(self.notes)


def producer(tensor):
    """(layer, its input tensors) of a Keras tensor in a functional graph; (None, []) for a model input."""
    history = producer_history(tensor)
    if history is None:
        return None, []
    layer, node_index = history
    nodes = inbound_nodes(layer)
    node = nodes[node_index] if node_index < len(nodes) else None
    return layer, list(node.input_tensors) if node is not None else []


def activation_name(layer):
    """The name of a layer's activation function ('softmax', 'sigmoid', 'linear', ...) or None."""
    import keras

    if isinstance(layer, keras.layers.Softmax):
        return "softmax"
    function = getattr(layer, "activation", None)
    if function is None:
        return None
    if isinstance(function, str):
        return function
    try:
        name = keras.activations.serialize(function)
    except (ValueError, TypeError, AttributeError):
        name = getattr(function, "__name__", None)
    if isinstance(name, dict):
        name = name.get("config") if isinstance(name.get("config"), str) else name.get("class_name")
    return name


def find_head(model):
    """Walk back from the model's output to the layer that sets the output kind: (layer name, activation
    name, the spatial (h, w) a Reshape flattened, notes)."""
    import keras

    notes = []
    flattened_hw = None
    tensor = model.outputs[0]
    steps = 0
    while steps < 1000:
        steps += 1
        layer, inputs = producer(tensor)
        if layer is None:
            return None, None, flattened_hw, notes
        kind = type(layer).__name__
        if isinstance(layer, keras.Sequential):
            for inner in reversed(layer.layers):
                inner_kind = type(inner).__name__
                if isinstance(inner, keras.Model):
                    name, act, hw, more = find_head(inner)
                    return name, act, flattened_hw or hw, notes + more
                if inner_kind == "Reshape" and flattened_hw is None:
                    flattened_hw = reshape_input_hw(inner)
                if inner_kind in PASS_THROUGH_LAYERS:
                    continue
                return inner.name, activation_name(inner), flattened_hw, notes
            tensor = inputs[0] if inputs else None
            if tensor is None:
                return None, None, flattened_hw, notes
            continue
        if isinstance(layer, keras.Model):
            name, act, hw, more = find_head(layer)
            return name, act, flattened_hw or hw, notes + more
        if kind == "Reshape" and flattened_hw is None and inputs:
            shape = tuple(inputs[0].shape)
            if len(shape) == 4 and shape[1] is not None and shape[2] is not None:
                flattened_hw = (int(shape[1]), int(shape[2]))
        if kind in PASS_THROUGH_LAYERS and len(inputs) == 1:
            tensor = inputs[0]
            continue
        if kind == "TFSMLayer":
            notes.append("the output kind cannot be read from a SavedModel: logits assumed (set it in the card)")
            return layer.name, None, flattened_hw, notes
        return layer.name, activation_name(layer), flattened_hw, notes
    return None, None, flattened_hw, notes


def input_rescaling(model):
    """The (scale, offset) of a `Rescaling` layer that the model applies to its input first (looking into
    nested models and through pass-through layers), or None: such a model takes raw 0..255 pixels."""
    import keras

    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    for layer in layers[:3]:
        if isinstance(layer, keras.layers.Rescaling):
            return float(layer.scale), float(layer.offset)
        if isinstance(layer, keras.Model):
            return input_rescaling(layer)
        if type(layer).__name__ not in PASS_THROUGH_LAYERS:
            return None
    return None


def reshape_input_hw(layer):
    try:
        shape = tuple(layer.input.shape)
    except (AttributeError, ValueError):
        return None
    if len(shape) == 4 and shape[1] is not None and shape[2] is not None:
        return int(shape[1]), int(shape[2])
    return None


def flat_grid_hw(pixels, input_wh):
    """(h, w) of a flattened output of `pixels` cells, assuming the input's aspect: the input's sides divided
    by the one factor that makes h * w match. None when no integer factor does."""
    if input_wh is None or pixels is None:
        return None
    width, height = input_wh
    factor = math.sqrt(width * height / pixels)
    for candidate in {round(factor), factor}:
        if candidate > 0 and width % candidate == 0 and height % candidate == 0:
            out_w, out_h = int(width // candidate), int(height // candidate)
            if out_w * out_h == pixels:
                return out_h, out_w
    return None


def single_output(model, output=None):
    """(a model that returns only the output a card serves, that output's name; None for a one-output model).
    `output`: an output's name or index (as text); a model with several outputs (deep supervision, auxiliary
    heads) needs one."""
    names = list(getattr(model, "output_names", None) or [f"output_{i}" for i in range(len(model.outputs))])
    if len(model.outputs) == 1 and output in (None, "", "0", names[0]):
        return model, None
    listed = ", ".join(f"{index}: {name} {tuple(tensor.shape)}" for index, (name, tensor) in
                       enumerate(zip(names, model.outputs)))
    if output in names:
        index = names.index(output)
    elif str(output).isdigit() and int(output) < len(names):
        index = int(output)
    else:
        what = f"no output {output!r}" if output not in (None, "") else f"{len(names)} outputs"
        raise InputError(f"the model has {what} ({listed}); say which one is served: python -m segdemo.card "
                         "MODEL --output NAME (or its index; with deep supervision, the full-resolution one)")
    import keras

    return keras.Model(model.inputs, model.outputs[index], name=model.name), names[index]


def inspect_model(model):
    """The `ModelFacts` of a loaded Keras model. Raises InputError for models this app cannot serve (several
    inputs or outputs, channels-first images, outputs that are not per-pixel)."""
    if len(model.inputs) != 1:
        raise InputError(f"the model takes {len(model.inputs)} inputs; a segmentation model takes one image batch")
    if len(model.outputs) != 1:
        single_output(model)  # raises, listing the outputs and the option that picks one
    in_shape = tuple(model.inputs[0].shape)
    out_shape = tuple(model.outputs[0].shape)
    if len(in_shape) != 4:
        raise InputError(f"the model's input has shape {in_shape}; expected (batch, height, width, channels)")
    if in_shape[-1] not in (1, 3):
        if in_shape[1] in (1, 3):
            raise InputError(f"the model takes channels-first images {in_shape}; save it with channels last "
                             "(batch, height, width, channels)")
        raise InputError(f"the model takes {in_shape[-1]}-channel images; RGB (3) or grayscale (1) are served")
    height, width = in_shape[1], in_shape[2]
    input_size = (int(width), int(height)) if width is not None and height is not None else None
    channels_out = out_shape[-1]
    if channels_out is None:
        raise InputError(f"the model's output has shape {out_shape}; its last dimension (classes) must be fixed")
    layer_name, act, flattened_hw, notes = find_head(model)
    notes = list(notes)
    if len(out_shape) == 4:
        layout = "spatial"
        output_size = (int(out_shape[2]), int(out_shape[1])) if out_shape[1] and out_shape[2] else None
        if output_size is None and input_size is not None:
            notes.append("the output grid's size is not fixed; it is read from the first prediction")
    elif len(out_shape) == 3:
        layout = "flat"
        grid_hw = flattened_hw or flat_grid_hw(out_shape[1], input_size)
        if grid_hw is None:
            raise InputError(f"the model's output {out_shape} is flattened, and its grid could not be worked out "
                             "from the input size; return (batch, height, width, classes) instead")
        if flattened_hw is None:
            notes.append(f"flattened output read as a {grid_hw[1]}x{grid_hw[0]} grid, with the input's aspect")
        output_size = (grid_hw[1], grid_hw[0])
    else:
        raise InputError(f"the model's output has shape {out_shape}; expected per-pixel classes "
                         "(batch, height, width, classes) or (batch, height*width, classes)")
    if act in SOFTMAX_NAMES:
        kind = "softmax"
        if channels_out == 1:
            notes.append("softmax over one channel is always 1: the model cannot tell classes apart")
    elif act in SIGMOID_NAMES:
        kind = "sigmoid_binary" if channels_out == 1 else "sigmoid"
    elif channels_out == 1 and act in RELU_NAMES:
        kind = "linear_binary"
        notes.append(f"one {act} channel: a regression-style mask, foreground above a threshold (0.5 unless "
                     "--threshold says)")
    else:
        kind = "logits_binary" if channels_out == 1 else "logits"
        if act not in LOGIT_NAMES:
            notes.append(f"the last activation is {act!r}; its outputs are treated as logits")
    return ModelFacts(input_size, int(in_shape[-1]), int(channels_out), kind, layout, output_size, layer_name, notes,
                      activation=act)
