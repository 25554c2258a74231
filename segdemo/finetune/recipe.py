"""The fine-tune recipe, built to give the same result for any seed on ~20 pairs of a domain the base never saw:
- every BatchNorm layer runs in inference mode (its statistics frozen): with a few hundred steps the moving
  averages never catch up with the batch statistics, so the network trained and the network served would
  disagree (validation curves that say nothing, results that depend on the seed);
- a new class set gets a new head (the last 1x1 convolution) initialised by a linear probe: logistic
  regression on the features the head reads, over the training pixels, so training starts from a sensible
  classifier instead of a random one;
- a fixed number of optimizer steps (not epochs: 20 or 200 pairs cost the same), warm-up then cosine decay,
  on whole images at the served size (random windows of them lost 0.06 IoU: the context matters), a larger
  base input scaled down to MAX_DEFAULT_AREA;
- held-out pairs are chosen from the pair names, not the seed;
- a user's own model (its card not in the bundled form: scaled inputs, softmax/sigmoid/one-channel/flattened/
  coarser outputs, no layer named "logits") is trained as its `adapt.training_form`: the same model taking 0..255
  RGB and returning logits at the input size, its last convolution the "logits" head (replaced for new classes,
  where its structure allows: else an InputError the tab shows); its pairs are resized as its card says, at its
  own input size when that is fixed;
- the result is served as the mean of the image's and its mirror's prediction (`flip_tta`, on the card; the
  training flips images too): +0.002 to +0.012 foreground IoU for a second forward pass, and the validation
  rounds score it the same way.
"""

import time

from segdemo.finetune.data import prepare_data
from segdemo.finetune.network import load_base, training_model, training_size
from segdemo.finetune.options import check_pair_count
from segdemo.finetune.result import finetune_summary, new_card_for
from segdemo.finetune.scoring import score_base, score_finetuned
from segdemo.finetune.training import train
from segdemo.serving.registry import resolve_model_path


def run_finetune(pairs_data, options, on_event=None, stop_event=None):
    """Fine-tune on decoded pairs [(name, image, mask)] (masks already class indices). Returns
    (model, FinetuneSummary).

    `on_event(event, model)` gets a StepDone after every step and a RoundDone after every validation round;
    setting `stop_event` ends training after the current step."""
    options.check()
    check_pair_count(len(pairs_data))
    started = time.perf_counter()
    base_path = resolve_model_path(options.base)
    base = load_base(base_path)
    classes = list(options.classes or base.classes)
    size = training_size(options, base.size, base.model, base.card)
    data = prepare_data(pairs_data, len(classes), size, base.card, options.val_share)
    training = training_model(base_path, base, classes, size, options)
    run = train(training, data, len(classes), options, on_event, stop_event)
    # the base is scored after training, not before it: the first curves reach the screen a second sooner
    before, before_note = score_base(base, size, data, classes)
    card = new_card_for(base.card, classes, classes == list(base.classes), size, len(pairs_data), options.flip_tta)
    after = score_finetuned(training.model, card, data)
    summary = finetune_summary(card, options, data, run, before, before_note, after, time.perf_counter() - started)
    return training.model, summary
