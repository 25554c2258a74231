"""A new head's starting point: a linear probe (multinomial logistic regression, full-batch Adam on
standardised features) fitted on the features the head reads, over the training pixels."""

import numpy as np

from segdemo.data.masks import IGNORE_INDEX

PROBE_PIXELS = 30_000  # training pixels the head's linear probe is fitted on
PROBE_ITERATIONS = 300
PROBE_LEARNING_RATE = 0.1


def head_features(model, images, batch_size=8):
    """The features the head (`logits`) reads, for (N, H, W, 3) images: (N, H, W, D) float32."""
    import keras

    extractor = keras.Model(model.input, model.get_layer("logits").input)
    return np.concatenate([np.asarray(extractor(images[i: i + batch_size].astype(np.float32), training=False))
                           for i in range(0, len(images), batch_size)])


def fit_linear_probe(features, labels, num_classes, seed):
    """Multinomial logistic regression (full-batch Adam on standardised features). Returns (kernel (D, C),
    bias (C,)) acting on the raw features."""
    rng = np.random.default_rng(seed)
    counted = np.flatnonzero(labels != IGNORE_INDEX)
    chosen = rng.choice(counted, min(PROBE_PIXELS, counted.size), replace=False)
    x, y = features[chosen].astype(np.float64), labels[chosen].astype(np.int64)
    mean, std = x.mean(0), x.std(0) + 1e-6
    z = (x - mean) / std
    onehot = np.eye(num_classes)[y]
    prior = onehot.mean(0) + 1e-3
    weights, bias = np.zeros((z.shape[1], num_classes)), np.log(prior / prior.sum())
    moments = [np.zeros_like(weights), np.zeros_like(bias), np.zeros_like(weights), np.zeros_like(bias)]
    for t in range(1, PROBE_ITERATIONS + 1):
        logits = z @ weights + bias
        logits -= logits.max(1, keepdims=True)
        probs = np.exp(logits)
        probs /= probs.sum(1, keepdims=True)
        error = (probs - onehot) / len(y)
        grads = (z.T @ error + 1e-4 * weights, error.sum(0))
        for i, (param, grad) in enumerate(zip((weights, bias), grads)):  # Adam
            moments[i] = 0.9 * moments[i] + 0.1 * grad
            moments[i + 2] = 0.999 * moments[i + 2] + 0.001 * grad ** 2
            param -= PROBE_LEARNING_RATE * (moments[i] / (1 - 0.9 ** t)) / (
                np.sqrt(moments[i + 2] / (1 - 0.999 ** t)) + 1e-8)
    kernel = weights / std[:, None]
    return kernel, bias - mean / std @ weights


def init_head_by_probe(model, images, masks, num_classes, seed):
    """Set the head's weights from a linear probe. A head reading a coarser grid (a user's model: a 1x1 head
    before a resize, or a Conv2DTranspose whose kernel is its stride) is probed on the masks resized to that grid
    (nearest), and a transposed head gets the probe in every tap."""
    from segdemo.data.images import resize_mask

    features = head_features(model, images)
    grid_h, grid_w = features.shape[1:3]
    if (grid_h, grid_w) != masks.shape[1:3]:
        masks = np.stack([resize_mask(mask, (grid_w, grid_h)) for mask in masks])
    kernel, bias = fit_linear_probe(features.reshape(-1, features.shape[-1]), masks.reshape(-1), num_classes,
                                    seed)
    head = model.get_layer("logits")
    shape = tuple(head.kernel.shape)
    if shape[:2] == (1, 1) and shape[2:] == kernel.shape:
        weights = kernel.reshape(1, 1, *kernel.shape)
    else:  # Conv2DTranspose: (kh, kw, classes, features)
        weights = np.broadcast_to(kernel.T[None, None], shape)
    head.set_weights([np.ascontiguousarray(weights, np.float32), bias.astype(np.float32)])
