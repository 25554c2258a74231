"""The base model's "before" figures: scored on the held-out pairs at the fine-tune's size, its classes mapped
to a new class set by overlap on the training pairs."""

import numpy as np

from segdemo.models.cards import size_value


def base_class_mapping(base_model, images, masks, num_classes, card=None):
    """For a new class set: each base class -> the new class its predictions overlap most on the training
    pairs (an index array), so the base model can be scored on the new classes. `card`: a user's model (any
    input scale and output kind) is read through a Segmenter as it is served; None: a bundled-form model (0..255
    in, logits out) is called directly."""
    from segdemo.training.metrics import confusion_matrix

    if card is not None:
        from segdemo.serving.segmenter import Segmenter

        served = Segmenter(base_model, card, tta=False, freeze=False)
        predict = lambda batch: np.stack([p.labels for p in served.predict_batch(list(batch))])  # noqa: E731
        base_classes = len(card.classes)
    else:
        predict = lambda batch: np.asarray(base_model(batch.astype(np.float32), training=False)).argmax(-1)  # noqa: E731
        base_classes = base_model.output_shape[-1]
    overlap = np.zeros((num_classes, base_classes), np.int64)
    for start in range(0, len(images), 8):
        predicted = predict(images[start: start + 8])
        overlap += confusion_matrix(masks[start: start + 8], predicted, max(num_classes, base_classes))[
            :num_classes, :base_classes]
    return overlap.argmax(0)


def score_base(base, size, data, classes):
    """The base model's (a Segmenter's) metrics on the held-out pairs of `data` (a `data.TrainingData`) at `size`
    ("before"), and a note: for a new class set its classes are mapped to the new ones by overlap on the
    training pairs."""
    from segdemo.finetune.adapt import is_bundled_form
    from segdemo.serving.segmenter import Segmenter
    from segdemo.training.evaluation import evaluate_arrays

    val_full, same_classes = data.val_full, list(classes) == list(base.classes)
    scorer = base if size == base.size else Segmenter(base.model, base.card.replace(input_size=size_value(size)),
                                                      freeze=False)
    if same_classes:
        return evaluate_arrays(scorer, val_full), ""
    bundled = is_bundled_form(base.model, base.card)
    mapping = base_class_mapping(base.model, data.train_images, data.train_masks, len(classes),
                                 None if bundled else scorer.card)
    note = "base classes mapped to the new ones by overlap on the training pairs: " + ", ".join(
        f"{name} → {classes[mapping[i]]}" for i, name in enumerate(base.classes))
    return evaluate_arrays(scorer, val_full, classes=classes, label_map=mapping), note


def score_finetuned(model, card, data):
    """The fine-tuned model's metrics on the held-out pairs of `data` as `card` serves it ("after")."""
    from segdemo.models.architectures import set_encoder_trainable
    from segdemo.serving.segmenter import Segmenter
    from segdemo.training.evaluation import evaluate_arrays

    set_encoder_trainable(model, True)  # as saved: a teach-loop round may train it again
    return evaluate_arrays(Segmenter(model, card, freeze=False), data.val_full)
