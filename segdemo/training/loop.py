"""The one training loop: `tf.data` pipelines with paired augmentation, `fit` with a cosine learning-rate
schedule, checkpoints for resuming, and the callbacks the CLI and the UI share."""

import json
import math
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from segdemo.compat import all_layers
from segdemo.training.augment import augment_batch, random_crop_pair
from segdemo.training.losses import make_loss

AUTOTUNE = tf.data.AUTOTUNE


def drops_remainder(count, batch_size):
    """Drop the last partial batch (noisy BatchNorm statistics) unless that loses too much of a tiny set."""
    return count >= 2 * batch_size


def train_dataset(images, masks, batch_size, augment=True, seed=0, crop=None, elastic=False, parallel=True):
    """Shuffled, augmented batches of (float32 images in [0, 255], uint8 masks). `crop` (width, height)
    trains on random windows of the arrays: full-resolution detail at a fraction of the cost per step.
    `parallel=False` (a short fine-tune): one map call at a time, a fixed prefetch and tf.data's autotuning
    off: with autotuning on, a fine-tune's `fit` sometimes ended ~20 s late, CPU idle (bench/finetune_stall.py)."""
    parallel_calls = AUTOTUNE if parallel else None
    dataset = tf.data.Dataset.from_tensor_slices((images, masks))
    dataset = dataset.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
    if crop:
        dataset = dataset.map(lambda x, y: random_crop_pair(x, y, crop[1], crop[0]),
                              num_parallel_calls=parallel_calls)
    dataset = dataset.batch(batch_size, drop_remainder=drops_remainder(len(images), batch_size))
    if augment:
        dataset = dataset.map(lambda x, y: augment_batch(x, y, elastic=elastic), num_parallel_calls=parallel_calls)
    else:
        dataset = dataset.map(lambda x, y: (tf.cast(x, tf.float32), y))
    if parallel:
        return dataset.prefetch(AUTOTUNE)
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(2).with_options(options)


def eval_dataset(images, masks, batch_size):
    dataset = tf.data.Dataset.from_tensor_slices((images, masks)).batch(batch_size)
    return dataset.map(lambda x, y: (tf.cast(x, tf.float32), y)).prefetch(AUTOTUNE)


def cosine_schedule(learning_rate, epochs, warmup_epochs=0, final_fraction=0.02):
    """Per-epoch learning rate: linear warm-up, then cosine decay to `final_fraction` of the peak."""

    def rate(epoch, _current=None):
        if epoch < warmup_epochs:
            return learning_rate * (epoch + 1) / (warmup_epochs + 1)
        progress = (epoch - warmup_epochs) / max(epochs - warmup_epochs, 1)
        cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
        return learning_rate * (final_fraction + (1.0 - final_fraction) * cosine)

    return rate


class StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Per optimizer step: linear warm-up from 1% of the peak, then cosine decay to `final_share` of it. Its
    figures live in variables (`set`), so a training step traced once serves any learning rate and length
    (the fine-tune worker traces one before a job arrives)."""

    def __init__(self, learning_rate=1e-3, steps=100, warmup_share=0.1, final_share=0.02):
        self.peak = keras.Variable(0.0, trainable=False, name="schedule_peak")
        self.warmup = keras.Variable(1.0, trainable=False, name="schedule_warmup")
        self.decay = keras.Variable(1.0, trainable=False, name="schedule_decay")
        self.warmup_share, self.final_share = warmup_share, final_share
        self.set(learning_rate, steps)

    def set(self, learning_rate, steps):
        warmup = max(1, round(steps * self.warmup_share))
        self.peak.assign(learning_rate)
        self.warmup.assign(warmup)
        self.decay.assign(max(1, steps - warmup))

    def __call__(self, step):
        ops = keras.ops
        step = ops.cast(step, "float32")
        warming = self.peak * (0.01 + 0.99 * ops.minimum(step / self.warmup, 1.0))
        progress = ops.clip((step - self.warmup) / self.decay, 0.0, 1.0)
        cosine = 0.5 * (1.0 + ops.cos(math.pi * progress))
        decaying = self.peak * (self.final_share + (1.0 - self.final_share) * cosine)
        return ops.where(step < self.warmup, warming, decaying)

    def get_config(self):
        return {"learning_rate": float(self.peak.numpy()), "steps": int(self.warmup.numpy() + self.decay.numpy()),
                "warmup_share": self.warmup_share, "final_share": self.final_share}


def compile_model(model, learning_rate, loss="ce_dice", class_weights=None):
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=make_loss(loss, class_weights),
        metrics=[PixelAccuracy()],
    )


class PixelAccuracy(keras.metrics.Mean):
    """Share of counted pixels (label != 255) whose argmax is right."""

    def __init__(self, name="pixel_acc", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        from segdemo.training.losses import valid_labels

        labels, valid = valid_labels(y_true)
        right = keras.ops.cast(keras.ops.equal(keras.ops.argmax(y_pred, axis=-1), labels), "float32")
        super().update_state(right, sample_weight=valid)


class ValidationIoU(keras.callbacks.Callback):
    """Adds val_miou and val_mdice (from a confusion matrix over the validation arrays) to each epoch's logs;
    list it before callbacks that read them. Given `loss`, also val_loss and val_pixel_acc from the same
    forward pass, so `fit` needs no validation data: Keras's evaluation traced a second graph (~1.5 s before a
    fine-tune's first figures), and while `fit` ran it, the end of `fit` sat idle for ~20 s in 5 of 36
    fine-tunes (bench/finetune_stall.py). `flip_tta`: the prediction is the mean of the image's and its
    mirror's probabilities, as `Segmenter(tta=True)` serves it (the loss reads their log as logits)."""

    def __init__(self, images, masks, num_classes, batch_size=8, loss=None, flip_tta=False, model=None):
        super().__init__()
        self.images, self.masks, self.num_classes, self.batch_size = images, masks, num_classes, batch_size
        self.loss, self.flip_tta, self.served = loss, flip_tta, model  # `model`: the one scored (default: fit's)

    def predict_logits(self, batch):
        """Logits of a (n, h, w, 3) batch in inference mode; with `flip_tta`, the log of the mean of the
        image's and its mirror's probabilities (one model call on both)."""
        from segdemo.serving.segmenter import mirror_mean_probabilities

        model = self.served or self.model
        if not self.flip_tta:
            return model(batch, training=False)
        return tf.math.log(mirror_mean_probabilities(model, tf.constant(batch)) + 1e-7)

    def on_epoch_end(self, epoch, logs=None):
        from segdemo.training.metrics import confusion_matrix, metrics_from_confusion

        matrix = np.zeros((self.num_classes, self.num_classes), np.int64)
        losses, predictions = [], []
        for start in range(0, len(self.images), self.batch_size):
            batch = self.images[start: start + self.batch_size].astype(np.float32)
            labels = self.masks[start: start + self.batch_size]
            logits = self.predict_logits(batch)
            if self.loss is not None:
                losses.append((float(self.loss(labels, logits)), len(batch)))
            predictions.append(np.asarray(logits).argmax(-1).astype(np.uint8))
            matrix += confusion_matrix(labels, predictions[-1], self.num_classes)
        self.predictions = np.concatenate(predictions)  # the latest class indices, for a sample view
        metrics = metrics_from_confusion(matrix)
        if logs is not None:
            logs["val_miou"], logs["val_mdice"] = metrics["miou"], metrics["mdice"]
            if self.loss is not None:
                logs["val_loss"] = sum(value * count for value, count in losses) / len(self.images)
                logs["val_pixel_acc"] = metrics["pixel_acc"]


class EpochState(keras.callbacks.Callback):
    """Writes {stage, epoch} after each epoch so an interrupted run knows where to resume."""

    def __init__(self, path, stage):
        super().__init__()
        self.path, self.stage = Path(path), stage

    def on_epoch_end(self, epoch, logs=None):
        history = json.loads(self.path.read_text()) if self.path.exists() else {"log": []}
        history.update(stage=self.stage, epoch=epoch + 1)
        history["log"].append({"stage": self.stage, "epoch": epoch + 1, "time": time.time(),
                               **{k: float(v) for k, v in (logs or {}).items()}})
        self.path.write_text(json.dumps(history, indent=1))


def fit(model, train_data, val_data, epochs, learning_rate, loss="ce_dice", class_weights=None, batch_size=8,
        augment=True, callbacks=(), initial_epoch=0, warmup_epochs=0, verbose=2, crop=None, elastic=False):
    """Compile and train `model` on (images, masks) arrays; `val_data` may be None. Returns the History."""
    compile_model(model, learning_rate, loss, class_weights)
    train = train_dataset(*train_data, batch_size, augment=augment, crop=crop, elastic=elastic)
    val = eval_dataset(*val_data, batch_size) if val_data is not None else None
    schedule = keras.callbacks.LearningRateScheduler(cosine_schedule(learning_rate, epochs, warmup_epochs))
    return model.fit(train, validation_data=val, epochs=epochs, initial_epoch=initial_epoch, shuffle=False,
                     callbacks=[schedule, *callbacks], verbose=verbose)


def recalibrate_batchnorm(model, images, batch_size=8):
    """Re-estimate every BatchNorm layer's moving mean and variance as the plain average of its batch
    statistics over `images` (forward passes in training mode; no weight changes).

    Why: MobileNetV2's BatchNorm layers keep their moving statistics with momentum 0.999, so after a few
    hundred steps of fine-tuning they still describe the pretraining data, while the network learned with
    the statistics of its own batches; inference then runs on the wrong statistics (on CamVid this cost
    0.18 validation mIoU). Run it on the training images at the size the model serves."""
    layers = [layer for layer in all_layers(model, include_self=True)
              if isinstance(layer, keras.layers.BatchNormalization)]
    momenta = [layer.momentum for layer in layers]
    try:
        for count, start in enumerate(range(0, len(images), batch_size), 1):
            for layer in layers:
                layer.momentum = (count - 1) / count  # cumulative average of the batches seen so far
            model(tf.convert_to_tensor(images[start: start + batch_size], tf.float32), training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)


def limit_threads(threads):
    """Bound TensorFlow's CPU threads (call before any op runs) so training leaves cores for serving."""
    if threads:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(max(1, threads // 2))
        os.environ.setdefault("OMP_NUM_THREADS", str(threads))


def class_pixel_counts(masks, num_classes):
    """Pixels of each class over an array of masks (255 = ignore is not counted)."""
    counts = np.bincount(masks.reshape(-1), minlength=256)
    return counts[:num_classes]
