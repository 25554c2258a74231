"""Training on cached features: what a fine-tune does not train (the frozen encoder, and the input scaling
before it) gives the same output for the same image at every step, so it runs once per training view (the
image, its mirror, a few augmented copies) and the steps train the rest of the network on what it returned.
On the bundled models at 192x192 that is the encoder's forward pass, about a fifth of a step.

`split_at_frozen` cuts any functional model there: the frozen part is every layer whose output depends on no
trainable weight; the trainable part takes the frozen part's outputs that a trainable layer reads. A model
whose first layer trains has no frozen part: it trains as a whole, on images augmented at every step."""

import numpy as np

from segdemo.models.facts import producer

CACHE_FLOAT16_BYTES = 64 * 2**20  # above this, cached features are kept as float16 (cast back per batch)
FIRST_VIEWS = 2  # the image and its mirror (the served model averages both); the other views are augmented


def learns(layer):
    return any(weight.trainable for weight in layer.trainable_weights) if layer is not None else False


def frozen_frontier(model):
    """The tensors of `model`'s graph that no trainable weight has touched and that a trainable layer reads (or
    that are outputs), in a fixed order. The model's inputs when its first layer trains."""
    depends, frontier = {}, {}

    def trained_above(tensor):
        key = id(tensor)
        if key not in depends:
            layer, inputs = producer(tensor)
            depends[key] = learns(layer) or any([trained_above(t) for t in inputs])
        return depends[key]

    def visit(tensor):
        if not trained_above(tensor):
            frontier.setdefault(id(tensor), tensor)
            return
        for upstream in producer(tensor)[1]:
            visit(upstream)

    for output in model.outputs:
        visit(output)
    return list(frontier.values())


def split_at_frozen(model):
    """(frozen, trainable) models with trainable(frozen(x)) == model(x); their layers are `model`'s own (training
    the second trains `model`). None when nothing before a trainable layer is frozen."""
    import keras

    frontier = frozen_frontier(model)
    if all(any(tensor is source for source in model.inputs) for tensor in frontier):
        return None
    frozen = keras.Model(model.inputs, frontier, name="frozen_part")
    trainable = keras.Model(frontier, model.outputs, name="trained_part")
    return frozen, trainable


def training_views(images, masks, views, seed):
    """`views` copies of each (image, mask): the pair, its mirror, then augmented ones (`augment_batch`: flips,
    rotation, zoom, colour). Returns (images float32 (N*views, H, W, 3), masks (N*views, H, W))."""
    import tensorflow as tf

    from segdemo.training.augment import augment_batch

    images = images.astype(np.float32)
    out_images, out_masks = [images, images[:, :, ::-1]][:views], [masks, masks[:, :, ::-1]][:views]
    tf.random.set_seed(seed)
    for _ in range(views - len(out_images)):
        augmented, augmented_masks = augment_batch(tf.constant(images), tf.constant(masks))
        out_images.append(augmented.numpy())
        out_masks.append(augmented_masks.numpy())
    return np.concatenate(out_images), np.concatenate(out_masks)


def traced_forward(frozen):
    """The frozen part as one traced function (traced at its first batch: the fine-tune worker does that before
    a job arrives, `network.prepare_training_model`)."""
    import tensorflow as tf

    return tf.function(lambda batch: frozen(batch, training=False))


def cached_features(forward, images, batch_size=8):
    """`forward`'s (`traced_forward`) outputs for (N, H, W, 3) images: a list of arrays (float16 when large),
    called at a fixed batch size (the last batch padded), so that it runs the one traced graph."""
    import tensorflow as tf

    parts = None
    for start in range(0, len(images), batch_size):
        batch = images[start: start + batch_size]
        padded = np.concatenate([batch, np.zeros((batch_size - len(batch), *batch.shape[1:]), batch.dtype)])
        outputs = forward(tf.constant(padded, tf.float32))
        outputs = [np.asarray(o)[:len(batch)] for o in (outputs if isinstance(outputs, (list, tuple)) else [outputs])]
        parts = [[o] for o in outputs] if parts is None else [p + [o] for p, o in zip(parts, outputs)]
    arrays = [np.concatenate(p) for p in parts]
    if sum(a.nbytes for a in arrays) > CACHE_FLOAT16_BYTES:
        arrays = [a.astype(np.float16) for a in arrays]
    return arrays


class FrozenOnce:
    """The whole model's forward pass for images seen again and again (the held-out pairs, every validation
    round): the frozen part (`forward`, traced) runs once per distinct batch and its outputs are kept; the
    trained part (`fitted`) runs at each call. A round at 192x192 costs the decoder's ~0.09 s instead of the
    whole network's ~0.4 s in eager mode (pets, one held-out pair and its mirror)."""

    def __init__(self, forward, fitted):
        self.forward, self.fitted, self.outputs = forward, fitted, {}

    def __call__(self, images, training=False):
        import hashlib

        import tensorflow as tf

        images = np.asarray(images, np.float32)
        key = (images.shape, hashlib.sha1(images.tobytes()).hexdigest())
        if key not in self.outputs:
            self.outputs[key] = [tf.constant(f, tf.float32) for f in cached_features(self.forward, images)]
        return self.fitted(self.outputs[key], training=training)


def feature_batches(features, masks, batch_size, seed):
    """An endless tf.data stream of (features as float32, masks) batches: every cached view once per pass,
    shuffled by `seed`, then again. (Random windows of the features instead of whole views cost cars-from-pets
    0.04 IoU at 10 pairs and 200 steps: the decoder needs the whole image as much as the encoder does.)"""
    import tensorflow as tf

    count = len(masks)
    rng = np.random.default_rng(seed)

    def batches():
        while True:
            order = rng.permutation(count)
            for start in range(0, count - batch_size + 1 if count >= batch_size else 1, batch_size):
                chosen = np.sort(order[start: start + batch_size])
                yield tuple(f[chosen].astype(np.float32) for f in features), masks[chosen]

    signature = (tuple(tf.TensorSpec((None, *f.shape[1:]), tf.float32) for f in features),
                 tf.TensorSpec((None, *masks.shape[1:]), tf.as_dtype(masks.dtype)))
    dataset = tf.data.Dataset.from_generator(batches, output_signature=signature)
    options = tf.data.Options()
    options.autotune.enabled = False  # see training.loop.train_dataset: a short fine-tune's fit can stall
    return dataset.prefetch(2).with_options(options)
