"""Tiny Keras segmentation models built the ways users build them (after the tutorials in
../shared/seeds: raw 0..255 inputs with one sigmoid per class, [-1, 1] inputs with logits, the TF pets
tutorial's nested encoder Model and pix2pix Sequential upsample blocks, a flattened softmax, a single sigmoid
channel, a half-resolution output), with the synthetic data to train them a few steps. A few thousand
parameters each, 32-48 px inputs: for tests and benchmarks (`from tests.own_models import ...`)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

SIZE_WH = (48, 32)  # non-square: width 48, height 32
NUM_CLASSES = 3  # background, bright square, red square


def square_data(count=16, size_wh=SIZE_WH, seed=0):
    """(images (N, h, w, 3) uint8, labels (N, h, w) int32): dark noisy backgrounds (class 0) with a bright
    grey square (class 1) and a red square (class 2) at random places."""
    rng = np.random.default_rng(seed)
    width, height = size_wh
    images = rng.integers(0, 60, (count, height, width, 3)).astype(np.uint8)
    labels = np.zeros((count, height, width), np.int32)
    for index in range(count):
        for label, colour in ((1, (230, 230, 230)), (2, (220, 30, 30))):
            side = int(rng.integers(height // 4, height // 2))
            top, left = int(rng.integers(0, height - side)), int(rng.integers(0, width - side))
            images[index, top:top + side, left:left + side] = colour
            labels[index, top:top + side, left:left + side] = label
    return images, labels


def scaled(images, input_scale):
    from segdemo.models.preprocessing import scale_pixels

    return scale_pixels(images.astype(np.float32), input_scale)


def fit(model, x, y, loss, steps=8, learning_rate=0.01, batch_size=8):
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    epochs = max(1, steps * batch_size // len(x))
    model.fit(x, y, batch_size=batch_size, epochs=epochs, verbose=0, shuffle=False)
    return model


def tiny_unet_body(inputs, filters=8):
    """conv -> pool -> conv -> upsample -> concat skip -> conv: the classic U-Net shape, one level deep."""
    from keras import layers

    skip = layers.Conv2D(filters, 3, padding="same", activation="relu")(inputs)
    down = layers.MaxPooling2D(2)(skip)
    down = layers.Conv2D(filters * 2, 3, padding="same", activation="relu")(down)
    up = layers.UpSampling2D(2)(down)
    merged = layers.Concatenate()([up, skip])
    return layers.Conv2D(filters, 3, padding="same", activation="relu")(merged)


def raw_sigmoid_unet(size_wh=SIZE_WH, num_classes=NUM_CLASSES, steps=8):
    """Tutorial 000's way: raw 0..255 RGB in, one sigmoid per class, binary cross-entropy on one-hot masks."""
    import keras

    width, height = size_wh
    inputs = keras.Input((height, width, 3))
    outputs = keras.layers.Conv2D(num_classes, 1, activation="sigmoid")(tiny_unet_body(inputs))
    model = keras.Model(inputs, outputs, name="raw_sigmoid_unet")
    images, labels = square_data(16, size_wh)
    return fit(model, images.astype(np.float32), np.eye(num_classes, dtype=np.float32)[labels],
               "binary_crossentropy", steps, learning_rate=0.003)


def tanh_logits_unet(size_wh=SIZE_WH, num_classes=NUM_CLASSES, steps=8):
    """Tutorial 001's mini U-Net: inputs / 127.5 - 1 before the model, logits out, sparse CE from logits."""
    import keras

    width, height = size_wh
    inputs = keras.Input((height, width, 3))
    outputs = keras.layers.Conv2D(num_classes, 1)(tiny_unet_body(inputs))
    model = keras.Model(inputs, outputs, name="unet_mini")
    images, labels = square_data(16, size_wh)
    return fit(model, scaled(images, "-1..1"), labels,
               keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps)


def upsample_block(filters, dropout=0.5):
    """pix2pix.upsample: Conv2DTranspose (stride 2) + BatchNorm + Dropout + ReLU, as one Sequential."""
    import keras
    from keras import layers

    return keras.Sequential([
        layers.Conv2DTranspose(filters, 3, strides=2, padding="same", use_bias=False),
        layers.BatchNormalization(),
        layers.Dropout(dropout),
        layers.ReLU(),
    ])


def pix2pix_unet(size_wh=(32, 32), num_classes=NUM_CLASSES, steps=8):
    """Tutorials 002/004: [0, 1] inputs, an encoder keras.Model (MobileNetV2's role: several skip outputs)
    nested as a layer, a decoder of nested Sequential upsample blocks, a final Conv2DTranspose to logits."""
    import keras
    from keras import layers

    width, height = size_wh
    encoder_input = keras.Input((height, width, 3))
    x1 = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(encoder_input)  # 1/2
    x2 = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x1)  # 1/4
    x3 = layers.Conv2D(16, 3, strides=2, padding="same", activation="relu")(x2)  # 1/8
    encoder = keras.Model(encoder_input, [x1, x2, x3], name="encoder")
    encoder.trainable = False  # the tutorial freezes the pretrained encoder
    inputs = keras.Input((height, width, 3))
    skips = encoder(inputs)
    x = skips[-1]
    for block, skip in zip([upsample_block(16), upsample_block(8)], reversed(skips[:-1])):
        x = layers.Concatenate()([block(x), skip])
    outputs = layers.Conv2DTranspose(num_classes, 3, strides=2, padding="same")(x)  # logits at full size
    model = keras.Model(inputs, outputs, name="pix2pix_unet")
    images, labels = square_data(16, size_wh)
    return fit(model, scaled(images, "0..1"), labels,
               keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps)


def flat_softmax_unet(size_wh=SIZE_WH, num_classes=NUM_CLASSES, steps=8):
    """The older Keras segmentation recipe: logits reshaped to (h*w, C), then a softmax Activation; labels
    flattened the same way."""
    import keras
    from keras import layers

    width, height = size_wh
    inputs = keras.Input((height, width, 3))
    x = layers.Conv2D(num_classes, 1)(tiny_unet_body(layers.Rescaling(1 / 255)(inputs)))
    outputs = layers.Activation("softmax")(layers.Reshape((height * width, num_classes))(x))
    model = keras.Model(inputs, outputs, name="flat_softmax_unet")
    images, labels = square_data(16, size_wh)
    return fit(model, images.astype(np.float32), labels.reshape(len(labels), -1),
               "sparse_categorical_crossentropy", steps)


def binary_sigmoid_unet(size_wh=SIZE_WH, steps=8):
    """One sigmoid channel: foreground (either square) against background, binary cross-entropy."""
    import keras

    width, height = size_wh
    inputs = keras.Input((height, width, 3))
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid")(tiny_unet_body(inputs))
    model = keras.Model(inputs, outputs, name="binary_sigmoid_unet")
    images, labels = square_data(16, size_wh)
    return fit(model, scaled(images, "0..1"), (labels > 0).astype(np.float32)[..., None],
               "binary_crossentropy", steps)


def half_resolution_unet(size_wh=SIZE_WH, num_classes=NUM_CLASSES, steps=8):
    """No final upsampling: logits at half the input resolution, trained on half-size masks."""
    import keras
    from keras import layers

    width, height = size_wh
    inputs = keras.Input((height, width, 3))
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    outputs = layers.Conv2D(num_classes, 1)(x)
    model = keras.Model(inputs, outputs, name="half_resolution_unet")
    images, labels = square_data(16, size_wh)
    return fit(model, scaled(images, "0..1"), labels[:, ::2, ::2],
               keras.losses.SparseCategoricalCrossentropy(from_logits=True), steps)


def lambda_marker_model(marker, size_wh=(16, 16)):
    """A model whose Lambda layer writes `marker` whenever its function runs (at build time here; at load
    time too, if a loader ever ran code from the file)."""
    import keras

    width, height = size_wh
    inputs = keras.Input((height, width, 3))
    marked = keras.layers.Lambda(lambda x: (open(marker, "w").write("ran"), x)[1], name="writes_a_file")(inputs)
    return keras.Model(inputs, keras.layers.Conv2D(2, 1)(marked), name="lambda_marker")


def nested_lambda_marker_model(marker, size_wh=(16, 16)):
    """The same Lambda inside a Sequential block inside a Functional model."""
    import keras

    width, height = size_wh
    block = keras.Sequential([keras.layers.Conv2D(3, 1),
                              keras.layers.Lambda(lambda x: (open(marker, "w").write("ran"), x)[1])], name="block")
    inputs = keras.Input((height, width, 3))
    return keras.Model(inputs, keras.layers.Conv2D(2, 1)(block(inputs)), name="nested_lambda_marker")


# (builder, the facts inspect_model must find: input_size, output_kind, output_layout, output_size, classes)
OWN_MODELS = {
    "raw_sigmoid": (raw_sigmoid_unet, ((48, 32), "sigmoid", "spatial", (48, 32), 3)),
    "tanh_logits": (tanh_logits_unet, ((48, 32), "logits", "spatial", (48, 32), 3)),
    "pix2pix": (pix2pix_unet, ((32, 32), "logits", "spatial", (32, 32), 3)),
    "flat_softmax": (flat_softmax_unet, ((48, 32), "softmax", "flat", (48, 32), 3)),
    "binary_sigmoid": (binary_sigmoid_unet, ((48, 32), "sigmoid_binary", "spatial", (48, 32), 2)),
    "half_resolution": (half_resolution_unet, ((48, 32), "logits", "spatial", (24, 16), 3)),
}
