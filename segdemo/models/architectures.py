"""U-Net factories: the classic U-Net and a MobileNetV2-encoder U-Net.

Both take RGB pixels in [0, 255] and rescale them inside the model (a `Rescaling` layer), so a saved
`.keras` file predicts correctly on its own. Both output per-pixel class logits (no softmax).
"""

import h5py
import keras
import numpy as np
from keras import layers

# The MobileNetV2 layers whose outputs feed the decoder (strides 2, 4, 8, 16) and the bottleneck (32),
# as in the TensorFlow segmentation tutorial.
MOBILENET_SKIP_LAYERS = (
    "block_1_expand_relu",
    "block_3_expand_relu",
    "block_6_expand_relu",
    "block_13_expand_relu",
)
MOBILENET_BOTTLENECK_LAYER = "block_16_project"
MOBILENET_H5_GROUP = "model_weights/mobilenetv2_1.00_160"
ENCODER_NAME = "encoder"


def conv_bn_relu(x, filters, name, kernel_size=3):
    """Conv (no bias: BN follows) -> BatchNorm -> ReLU."""
    x = layers.Conv2D(filters, kernel_size, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def double_conv(x, filters, name, dropout=0.0):
    """The U-Net level block: two Conv-BN-ReLU, optional dropout."""
    x = conv_bn_relu(x, filters, f"{name}_a")
    x = conv_bn_relu(x, filters, f"{name}_b")
    if dropout:
        x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def upsample(x, filters, name):
    """Transposed-conv x2 upsampling -> BatchNorm -> ReLU."""
    x = layers.Conv2DTranspose(filters, 3, strides=2, padding="same", use_bias=False, name=f"{name}_tconv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def image_input(input_size):
    """Model input: RGB in [0, 255]; `None` sides make the model fully convolutional."""
    side = input_size if input_size else None
    inputs = keras.Input(shape=(side, side, 3), name="image")
    scaled = layers.Rescaling(1.0 / 127.5, offset=-1.0, name="to_unit_range")(inputs)  # [-1, 1]
    return inputs, scaled


def build_unet(num_classes, input_size=None, depth=4, base_filters=32, dropout=0.0):
    """The classic U-Net: `depth` down levels of double conv + max-pool, a bottleneck, and as many up levels
    of transposed conv + skip concatenation + double conv. Input sides must be multiples of 2**depth."""
    inputs, x = image_input(input_size)
    skips = []
    for level in range(depth):
        x = double_conv(x, base_filters * 2**level, f"down{level}")
        skips.append(x)
        x = layers.MaxPooling2D(name=f"down{level}_pool")(x)
    x = double_conv(x, base_filters * 2**depth, "bottleneck", dropout=dropout)
    for level in reversed(range(depth)):
        filters = base_filters * 2**level
        x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"up{level}_tconv")(x)
        x = layers.Concatenate(name=f"up{level}_concat")([x, skips[level]])
        x = double_conv(x, filters, f"up{level}", dropout=dropout if level == depth - 1 else 0.0)
    logits = layers.Conv2D(num_classes, 1, name="logits")(x)
    return keras.Model(inputs, logits, name="unet")


def build_mobilenet_encoder(input_size=None):
    """MobileNetV2 (alpha 1.0, no top) exposing the skip outputs and the bottleneck, as one nested model."""
    side = input_size if input_size else None
    backbone = keras.applications.MobileNetV2(
        input_shape=(side, side, 3), alpha=1.0, include_top=False, weights=None
    )
    outputs = [backbone.get_layer(name).output for name in MOBILENET_SKIP_LAYERS + (MOBILENET_BOTTLENECK_LAYER,)]
    return keras.Model(backbone.input, outputs, name=ENCODER_NAME)


def build_mobilenet_unet(
    num_classes, input_size=None, decoder_filters=(128, 64, 48, 32), dropout=0.0, encoder_weights=None
):
    """U-Net with a MobileNetV2 encoder (expects [-1, 1] inputs, which the model's rescaling gives) and a
    decoder of transposed-conv upsampling, skip concatenation and Conv-BN-ReLU. A last full-resolution
    block sees the input pixels too, which sharpens thin boundaries. Input sides: multiples of 32."""
    inputs, scaled = image_input(input_size)
    encoder = build_mobilenet_encoder(input_size)
    if encoder_weights:
        load_mobilenet_weights(encoder, encoder_weights)
    *skips, x = encoder(scaled)
    for index, (filters, skip) in enumerate(zip(decoder_filters, reversed(skips))):
        x = upsample(x, filters, f"dec{index}_up")
        x = layers.Concatenate(name=f"dec{index}_concat")([x, skip])
        x = conv_bn_relu(x, filters, f"dec{index}")
        if dropout:
            x = layers.Dropout(dropout, name=f"dec{index}_dropout")(x)
    x = upsample(x, 16, "full_up")
    x = layers.Concatenate(name="full_concat")([x, scaled])
    x = conv_bn_relu(x, 16, "full")
    logits = layers.Conv2D(num_classes, 1, name="logits")(x)
    return keras.Model(inputs, logits, name="mobilenet_unet")


def load_mobilenet_weights(encoder, h5_path, group=MOBILENET_H5_GROUP):
    """Copy MobileNetV2 weights from a legacy HDF5 model file into `encoder`, matching layers by name.

    Variables are matched by their short name (kernel, gamma, ...), so the order inside the file does not
    matter. Returns the number of layers loaded; raises if none matched (wrong file or group)."""
    loaded = 0
    with h5py.File(h5_path, "r") as h5:
        if group not in h5:
            raise ValueError(f"{h5_path} has no group {group!r}")
        stored = h5[group]
        for layer in encoder.layers:
            if not layer.weights or layer.name not in stored:
                continue
            arrays = {}
            stored[layer.name].visititems(
                lambda key, item, arrays=arrays: arrays.__setitem__(key.split("/")[-1].split(":")[0], item[()])
                if isinstance(item, h5py.Dataset)
                else None
            )
            values = []
            for variable in layer.weights:
                short = variable.path.split("/")[-1].split(":")[0]
                if short not in arrays:
                    raise ValueError(f"{h5_path}: layer {layer.name} lacks {short}")
                values.append(np.asarray(arrays[short]))
            layer.set_weights(values)
            loaded += 1
    if not loaded:
        raise ValueError(f"no layer of {encoder.name} found in {h5_path}")
    return loaded


ARCHITECTURES = {"unet": build_unet, "mobilenet_unet": build_mobilenet_unet}


def build_model(architecture, num_classes, **kwargs):
    """Build a model by architecture name (see `ARCHITECTURES`)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {sorted(ARCHITECTURES)}")
    return ARCHITECTURES[architecture](num_classes, **kwargs)


def set_encoder_trainable(model, trainable):
    """Freeze or unfreeze the MobileNetV2 encoder (frozen BatchNorm layers also run in inference mode)."""
    try:
        model.get_layer(ENCODER_NAME).trainable = trainable
    except ValueError:
        pass  # the classic U-Net has no separate encoder
