"""A user's model ("your own model", served from a card `python -m segdemo.card` wrote) in the bundled models'
form, so the fine-tune recipe trains it as it trains a bundled base: one model taking 0..255 RGB at the card's
size and returning per-pixel class logits at that size, its last convolution the layer named "logits".

`training_form(model, card, classes)` builds, from built-in Keras layers only (the result saves as `.keras` and
reloads in safe mode):

    Input (h, w, 3) float 0..255 RGB
    -> [a 1-channel model: a frozen 1x1 Conv2D with the luma weights, no bias]
    -> [the card's input scale: Rescaling (0..1, -1..1), or Rescaling + Normalization (ImageNet)]
    -> a copy of the user's layers, the head's activation made linear
    -> [one channel z: a frozen 1x1 Conv2D to the two-class logits [0, z]]
    -> [a flattened output: Reshape to its grid]
    -> [a grid smaller than the input: Resizing to (h, w), bilinear]

and its card says what the wrapper now does: input_scale "0..255", output "logits", output_layout "spatial",
no output_size, input_channels 3 (resize and resize_filter stay: the Segmenter still resizes images the user's
way).

The head's pre-activation values are the logits: a softmax head's exactly; a per-class sigmoid head's are not
the logits of a softmax, but the argmax is the same (each sigmoid is monotone, and the Segmenter's per-pixel
normalisation of sigmoids keeps their order) and the fine-tune adapts them to the softmax loss; one sigmoid (or
logit) channel z gives [0, z], whose softmax is [1 - sigmoid(z), sigmoid(z)], as the Segmenter decodes it.

The head (the last layer that computes something, reached from the output through pass-through layers:
activations, dropout, reshape, upsampling ...) becomes "logits". With a new class set it is replaced by a new
convolution applied to its input, and the layers after it (pass-through by construction) are dropped: a 1x1
Conv2D(num_classes), or for a Conv2DTranspose head with strides s > 1 a Conv2DTranspose(num_classes, kernel s,
strides s), which keeps the resolution and, each output pixel reading one input pixel, can start from the same
linear probe a 1x1 head does (`probe.init_head_by_probe`). A head inside a nested block (a Sequential or Model
used as a layer) or a head that is not a convolution cannot be replaced: InputError, which the Fine-tune tab
shows."""


from segdemo.compat import all_layers, run_through_graph
from segdemo.errors import InputError
from segdemo.models import cards
from segdemo.models.facts import PASS_THROUGH_LAYERS, single_output

HEAD_NAME = "logits"
ACTIVATION_LAYERS = {"Activation", "Softmax"}  # made linear in the copy (the head's activation, split off)
NOT_REPLACEABLE = ("keep the model's classes (the fine-tune then starts from its own predictions), or rebuild the "
                   "model with its last convolution as a top-level layer")


def is_bundled_form(model, card):
    """Whether the recipe can train `model` as it is: 0..255 RGB in, per-pixel logits at the input size out,
    and a layer named "logits" (the bundled models and their fine-tunes)."""
    if (card.input_scale, card.output, card.output_layout, card.input_channels, card.channel_order) != (
            "0..255", "logits", "spatial", 3, "rgb"):
        return False
    if card.output_size or card.output_name:
        return False
    try:
        model.get_layer(HEAD_NAME)
    except ValueError:
        return False
    return True


def training_card(card, classes=None):
    """The card of `training_form`'s model: the user's, with the preprocessing and decoding the wrapper does."""
    classes = list(classes or card.classes)
    same = classes == list(card.classes)
    return card.replace(input_scale="0..255", output="logits", output_layout="spatial", output_size=None,
                        input_channels=3, channel_order="rgb", input_mean=None, input_std=None, threshold=None,
                        output_name=None, classes=classes,
                        colors=card.colors if same else None,
                        default_class=card.default_class if same else cards.default_class_name(classes),
                        binary_mask=card.binary_mask if same else None)


def fixed_input_size(model):
    """(width, height) when the model's input has fixed sides, else None."""
    shape = tuple(model.inputs[0].shape)
    return (int(shape[2]), int(shape[1])) if shape[1] is not None and shape[2] is not None else None


def model_layers(model):
    """The layers a Functional model or a Sequential lists (no input layers)."""
    import keras

    return [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]


def locate_head(model):
    """(head layer, [activation layers between it and the output], nested, reason): the last layer that
    computes something, walking back from the output through pass-through layers; `nested` when it lies inside
    a nested model, `reason` (a sentence) when it cannot be replaced by a new head."""
    import keras

    from segdemo.models.facts import producer

    activations = []
    if isinstance(model, keras.Sequential):
        candidates = list(reversed(model_layers(model)))
    else:
        candidates = None
    tensor = None if candidates is not None else model.outputs[0]
    for _ in range(1000):
        if candidates is not None:
            if not candidates:
                return None, activations, False, "the model has no layer that computes its output"
            layer = candidates.pop(0)
            inputs = []
        else:
            layer, inputs = producer(tensor)
            if layer is None:
                return None, activations, False, "the model has no layer that computes its output"
        kind = type(layer).__name__
        if isinstance(layer, keras.Model):
            head, inner, _, _ = locate_head(layer)
            return head, activations + inner, True, "this model's last convolution is inside a nested block"
        if kind in ACTIVATION_LAYERS or kind in PASS_THROUGH_LAYERS:
            if kind in ACTIVATION_LAYERS:
                activations.append(layer)
            if candidates is None:
                if len(inputs) != 1:
                    return None, activations, False, "the model's output is not computed by one convolution"
                tensor = inputs[0]
            continue
        reason = None
        if not isinstance(layer, (keras.layers.Conv2D, keras.layers.Conv2DTranspose)):
            reason = f"this model's last computing layer ({kind} {layer.name!r}) is not a convolution"
        return layer, activations, False, reason
    return None, activations, False, "the model's graph is too deep to read"


def make_linear(head, activations):
    """The head's activation and the activation layers after it made linear (in place: call on a copy).
    Returns the Softmax layers that cannot be (they are skipped when the graph is run again)."""
    import keras

    linear = keras.activations.get("linear")
    if head is not None and getattr(head, "activation", None) is not None:
        head.activation = linear
    skipped = []
    for layer in activations:
        if isinstance(layer, keras.layers.Softmax):
            skipped.append(layer)
        else:
            layer.activation = linear
    return skipped


def copy_model(model):
    """An independent copy with the same weights."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def run_layers(model, x, call):
    """`model`'s graph applied to the tensor `x` layer by layer (its layers reused, not nested as one layer), each
    layer called through `call(layer, *args, **kwargs)`."""
    import keras

    if isinstance(model, keras.Sequential):
        for layer in model_layers(model):
            x = call(layer, x)
        return x
    return run_through_graph(model, x, call)


def new_head(head, num_classes):
    """The replacement for a Conv2D/Conv2DTranspose head (see the module docstring)."""
    import keras

    strides = tuple(head.strides)
    if isinstance(head, keras.layers.Conv2DTranspose) and max(strides) > 1:
        return keras.layers.Conv2DTranspose(num_classes, strides, strides=strides, padding="same", name=HEAD_NAME)
    return keras.layers.Conv2D(num_classes, 1, name=HEAD_NAME)


def training_form(model, card, classes=None, size=None):
    """(the user's `model` in the bundled form, its card): see the module docstring. `classes`: a new class
    set (None: the card's); `size` (width, height): the input size to build at (None: the card's; a model with
    fixed input sides takes only those). Raises InputError where the structure does not allow it."""
    import keras

    classes = list(classes or card.classes)
    same_classes = classes == list(card.classes)
    width, height = cards.size_wh(size or card.size)
    fixed = fixed_input_size(model)
    if fixed is not None and fixed != (width, height):
        raise InputError(f"this model takes {fixed[0]}x{fixed[1]} images only; fine-tune it at that input size")
    copy = copy_model(single_output(model, card.output_name)[0])
    head, activations, nested, reason = locate_head(copy)
    if not same_classes and (nested or reason):
        raise InputError(f"{reason or 'this model has no replaceable last convolution'}, so new classes cannot "
                         f"replace it; {NOT_REPLACEABLE}")
    if head is not None and head.name != HEAD_NAME:
        for layer in all_layers(copy):
            if layer.name == HEAD_NAME and layer is not head:
                layer.name = f"{HEAD_NAME}_user"  # the name is the recipe's for the head
    skipped = make_linear(head, activations) if same_classes else []
    if same_classes and head is not None and not nested:
        head.name = HEAD_NAME
    image = keras.Input((height, width, 3), name="image")
    captured = {}

    def call(layer, *args, **kwargs):
        if layer is head:
            captured["features"] = args[0]
        if any(layer is softmax for softmax in skipped):
            return args[0]
        return layer(*args, **kwargs)

    outputs = run_layers(copy, card.io.input_layers(image), call)
    if same_classes:
        grid_wh = cards.size_wh(card.output_size) if card.output_size else (width, height)
        outputs = card.io.logits_layers(outputs, grid_wh)
    else:
        outputs = new_head(head, len(classes))(captured["features"])
    if tuple(outputs.shape[1:3]) != (height, width):
        outputs = keras.layers.Resizing(height, width, interpolation="bilinear", name="to_input_size")(outputs)
    form = keras.Model(image, outputs, name=copy.name)
    return form, training_card(card, classes)

