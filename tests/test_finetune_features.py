"""The cached recipe's split (finetune/features.py): the frozen part then the trained part give the whole
model's output, and the validation rounds run the frozen part once per held-out batch."""

import numpy as np

from segdemo.finetune import network
from segdemo.finetune.features import FrozenOnce, cached_features, split_at_frozen, traced_forward
from segdemo.finetune.options import FinetuneOptions


def test_the_frozen_then_the_trained_part_is_the_whole_model(mobile_base, rng):
    base = network.load_base(mobile_base)
    training = network.build_training_model(base.model, base.card, base.classes, (32, 32),
                                            FinetuneOptions(base=mobile_base))
    assert training.frozen is not None  # the encoder is frozen by default: the cached recipe splits there
    images = rng.uniform(0, 255, (3, 32, 32, 3)).astype(np.float32)
    features = cached_features(traced_forward(training.frozen), images)
    whole = np.asarray(training.model(images, training=False))
    np.testing.assert_allclose(np.asarray(training.fitted(features, training=False)), whole, atol=1e-4)
    assert split_at_frozen(training.fitted) is None  # nothing frozen is left in the trained part


def test_validation_runs_the_frozen_part_once_per_batch(mobile_base, rng):
    base = network.load_base(mobile_base)
    training = network.build_training_model(base.model, base.card, base.classes, (32, 32),
                                            FinetuneOptions(base=mobile_base))
    assert training.scored() is training.model  # before `batches` nothing is traced yet
    pairs = rng.uniform(0, 255, (4, 32, 32, 3)).astype(np.uint8), rng.integers(0, 2, (4, 32, 32)).astype(np.uint8)
    training.batches(*pairs, FinetuneOptions(base=mobile_base, batch_size=2))
    calls = []
    forward = training.forward
    training.forward = lambda batch: calls.append(len(batch)) or forward(batch)
    scored = training.scored()
    assert isinstance(scored, FrozenOnce)
    held_out = rng.uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    whole = np.asarray(training.model(held_out, training=False))
    for _ in range(3):  # three rounds
        np.testing.assert_allclose(np.asarray(scored(held_out)), whole, atol=1e-4)
    assert len(calls) == 1
    scored(held_out[::-1].copy())  # another batch: its own frozen pass
    assert len(calls) == 2
