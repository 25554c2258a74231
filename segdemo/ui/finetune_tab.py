"""The Fine-tune tab, in the order of its steps: 1. upload image/mask pairs, 2. check how they were paired and
read, 3. train with live progress (a loss curve and a sample prediction per validation round), 4. the result:
before/after metrics on held-out pairs, use it in the Segment tab, download it or push it to the Hub. The job
itself runs in `segdemo.app.jobs`; this module lays out and formats. The teach loop's section (the session's
training set and Retrain, ui/teach.py) follows the result."""

from dataclasses import dataclass

import gradio as gr
import pandas as pd

from segdemo.app.finetune_requests import KEEP_CLASSES, NEW_CLASSES, read_pairs, start_upload_finetune
from segdemo.app.finetune_requests import push_finetuned as push_session_model
from segdemo.app.jobs import concurrent_jobs, stop_job
from segdemo.app.sessions import FINETUNED_CHOICE, FINETUNED_MODELS, model_menu
from segdemo.data.pairs import MASK_STEM_WORDS
from segdemo.data.uploads import looks_inverted
from segdemo.errors import InputError
from segdemo.finetune.options import BINARY_CLASSES, FinetuneOptions
from segdemo.limits import (
    MAX_BATCH_SIZE,
    MAX_INPUT_SIZE,
    MAX_LEARNING_RATE,
    MAX_PAIRS,
    MAX_STEPS,
    MIN_LEARNING_RATE,
    megapixels,
)
from segdemo.models.cards import binary_mask_classes, class_colors, describe_binary_reading
from segdemo.serving.drawing import palette_lut, thumbnail
from segdemo.serving.registry import default_model_name, served_models
from segdemo.training.losses import LOSSES
from segdemo.ui.components import FreeDropdown
from segdemo.ui.handlers import api_doc, session_key, upload_paths, user_errors
from segdemo.ui.job_view import stream_job

THUMBNAILS = 8
THUMBNAIL_SIDE = 160
LIMITS = (f"Limits: at most {MAX_PAIRS} pairs, {MAX_STEPS} steps, input size {MAX_INPUT_SIZE}, {megapixels()} "
          "per image; one training runs at a time (others wait in the queue, with their position shown).")
HOW_TO = f"""Upload pairs as **a ZIP** holding `images/` + `masks/` (also `Images/` + `Labels/`, or the Oxford pets
layout), or as **loose files** paired by name: `x.jpg` goes with `x.png` or `x_mask.png` (also
{', '.join(f'`_{word}`' for word in MASK_STEM_WORDS if word != 'mask')}). Masks may be class-index PNGs, black/white
(0/255, anti-aliasing is thresholded; white is the object: the base model's main class, or the last new class, and
black its *background* class; the check says how they were read), Oxford trimaps, or colour masks in the base
model's class colours. {LIMITS} The defaults (a fixed number of steps, held-out pairs picked by name) give the same
result for any seed; docs/finetune.md has the measured times and scores."""


def pairs_table(reports, classes):
    rows = []
    for report in reports:
        total = sum(report.class_pixels.values()) or 1
        histogram = ", ".join(f"{classes[c] if c < len(classes) else c} {100 * n / total:.0f}%"
                              for c, n in sorted(report.class_pixels.items()))
        size = f"{report.size[0]}×{report.size[1]}" if report.size else ""
        rows.append([report.name, report.pair.image.name, report.pair.mask.name, size, histogram,
                     "ok" if report.ok else f"skipped: {report.problem}"])
    return pd.DataFrame(rows, columns=["pair", "image", "mask", "size", "classes", "status"])


def thumbnails(loaded, colors):
    palette = palette_lut(colors)
    return [(thumbnail(image, mask, palette, THUMBNAIL_SIDE), name) for name, image, mask in loaded[:THUMBNAILS]]


def problems_markdown(reports, problems, card):
    bad = [f"- **{r.name}**: {r.problem}" for r in reports if not r.ok]
    other = [f"- {problem}" for problem in problems]
    good = sum(r.ok for r in reports)
    lines = [f"**{good} pairs ready**, {len(bad)} pairs skipped, {len(other)} other files not used."]
    binary = sum(r.ok and r.encoding == "binary" for r in reports)
    if binary:
        lines += ["", f"Masks read as black/white ({binary} pairs): {describe_binary_reading(card)}."]
    if looks_inverted(reports):
        white = card.classes[binary_mask_classes(card)[1]]
        lines += ["", f"**Warning: these masks look inverted.** White ({white}) covers most of the image borders, "
                      "where backgrounds usually are. If white marks the background in your masks, invert them "
                      "(white must be the object) and upload again; if the object really fills the frame, go on."]
    if bad or other:
        lines += ["", "Problems (these files are listed and skipped; the good pairs are kept):", *bad, *other]
    return "\n".join(lines)


@api_doc
@user_errors
def check_pairs(files, base="", class_mode=KEEP_CLASSES, class_names="", request: gr.Request = None):
    """Pair and validate uploaded image/mask files without training: which pairs were found, how each mask was
    read, and what was skipped and why. The good pairs join this session's training set (replacing an earlier
    upload's).

    Args:
        files: A ZIP of images/ + masks/, or images with their masks paired by name (x.jpg with x.png or x_mask.png).
        base: The model whose classes the masks use: a served model ({model_names}) or the session's fine-tuned
            model ({finetuned}); empty: the session's fine-tuned model if any, else the default.
        class_mode: "keep the base model's classes" or "define new classes".
        class_names: With "define new classes": the new class names, comma-separated, in index order.

    Returns:
        the pairs table (pair, image, mask, size, classes, status)
        thumbnails of a few pairs (mask over image)
        a report: how many pairs are ready, how black/white masks were read, the problems
    """
    read = read_pairs(session_key(request), upload_paths(files), base, class_mode, class_names)
    report = problems_markdown(read.reports, read.problems, read.card)
    if read.corrected_pairs:
        report += (f"\n\nTrain also uses the **{read.corrected_pairs} corrected pairs** of your training set "
                   f"({len(read.loaded) + read.corrected_pairs} pairs in all).")
    return pairs_table(read.reports, read.card.classes), thumbnails(read.loaded, class_colors(read.card)), report


@api_doc
@user_errors
def finetune(files, base="", class_mode=KEEP_CLASSES, class_names="", steps=FinetuneOptions.steps,
             learning_rate=FinetuneOptions.learning_rate, batch_size=FinetuneOptions.batch_size, input_size=0,
             val_share=FinetuneOptions.val_share, augment=FinetuneOptions.augment, loss=FinetuneOptions.loss,
             freeze_encoder=FinetuneOptions.freeze_encoder, flip_tta=FinetuneOptions.flip_tta,
             request: gr.Request = None, progress=gr.Progress()):
    """Fine-tune a model on uploaded image/mask pairs, for this session only (the pairs join its training set).

    Args:
        files: A ZIP of images/ + masks/, or images with their masks paired by name (x.jpg with x.png or x_mask.png).
        base: The model to start from: a served model ({model_names}) or the session's fine-tuned model
            ({finetuned}); empty: the session's fine-tuned model if any, else the default.
        class_mode: "keep the base model's classes" or "define new classes".
        class_names: With "define new classes": the new class names, comma-separated, in index order.
        steps: Optimizer steps (1 to {max_steps}).
        learning_rate: Peak learning rate ({learning_rates}).
        batch_size: Pairs per step (1 to {max_batch_size}).
        input_size: Training and serving size, a multiple of 32; 0: the base model's (scaled down when large).
        val_share: Share of the pairs held out for the before/after metrics.
        augment: Flip, rotate, zoom and colour augmentation.
        loss: The training loss.
        freeze_encoder: Train the decoder only (faster, steadier on few pairs).
        flip_tta: Serve the result as the mean with the mirrored image's prediction.

    Returns:
        A stream of (status, curves, sample prediction, metrics table, metrics JSON, files); the final metrics JSON
        holds "before", "after" (on the held-out pairs), "seconds", "steps_run" and "model_name", the name to
        segment with.
    """
    progress(0.0, desc="reading pairs")
    job = start_upload_finetune(session_key(request), upload_paths(files), base, class_mode, class_names,
                                steps=int(steps), learning_rate=float(learning_rate), batch_size=int(batch_size),
                                input_size=int(input_size or 0), val_share=float(val_share), augment=bool(augment),
                                loss=loss, freeze_encoder=bool(freeze_encoder), flip_tta=bool(flip_tta))
    yield from stream_job(job, progress)


@user_errors
def stop_training(request: gr.Request = None):
    """Ask this session's running fine-tune to stop after the current step (the weights so far are kept)."""
    if not stop_job(session_key(request)):
        return "No training is running in this session."
    return "Stopping after the current step…"


@user_errors
def push_finetuned(repo_id, token, request: gr.Request = None):
    """Push this session's fine-tuned model (model.keras, model.json, README.md model card) to a Hub model
    repo. The token is used for this call only (field, else HF_TOKEN) and never logged or stored."""
    try:
        url = push_session_model(session_key(request), repo_id, token)
    except (PermissionError, RuntimeError) as error:
        raise gr.Error(f"Push to {repo_id} failed: {error}") from None
    return f"Pushed to [{repo_id.strip()}]({url}): model.keras, model.json and a README model card."


@user_errors
def use_finetuned(use, request: gr.Request = None):
    """Point this session's Segment tab at its fine-tuned model (or back to the default model)."""
    if use and FINETUNED_MODELS.get(session_key(request)) is None:
        raise InputError("Train a model first: there is no fine-tuned model in this session yet.")
    if use:
        return gr.Dropdown(choices=model_menu(), value=FINETUNED_CHOICE)
    return gr.Dropdown(choices=model_menu(), value=default_model_name(served_models()))


@dataclass
class FinetuneTab:
    """What the teach loop wires to: the check and train events (the training set's view follows them), the
    training options Retrain reads, the job's outputs (status, curves, sample, metrics, JSON, files) and the
    'use this model' box."""

    checked: list  # the events after which the upload has joined the training set
    learning_rate: gr.Number
    batch_size: gr.Slider
    job_outputs: list
    use: gr.Checkbox


def build_finetune_tab(model_choice):
    """Lay out the tab's four steps; `model_choice` is the Segment tab's model dropdown (switched by 'use this
    model'). Returns a FinetuneTab."""
    defaults = FinetuneOptions()
    gr.Markdown(f"### 1. Upload image/mask pairs\n{HOW_TO}")
    with gr.Row():
        files = gr.File(label="Image/mask pairs (ZIP or images + masks)", file_count="multiple",
                        file_types=[".zip", "image"], elem_id="finetune-files", scale=2)
        with gr.Column(scale=1):
            base = FreeDropdown(model_menu(), value=default_model_name(served_models()), label="Base model",
                                allow_custom_value=True, info="Any served model can be the starting point")
            class_mode = gr.Radio([KEEP_CLASSES, NEW_CLASSES], value=KEEP_CLASSES, label="Classes")
            class_names = gr.Textbox(value=", ".join(BINARY_CLASSES), label="New class names (index order)",
                                     info="Used with 'define new classes'; the model's head is re-initialised")
    gr.Markdown("### 2. Check the pairs")
    check = gr.Button("Check pairs", variant="primary", elem_id="check-button")
    table = gr.Dataframe(label="Pairs found", interactive=False, wrap=True, elem_id="pairs-table")
    with gr.Row():
        gallery = gr.Gallery(label="A few pairs, mask over image", columns=THUMBNAILS, height=200,
                             format="png", elem_id="pairs-gallery")
        report = gr.Markdown(label="Check report: classes found, problems", elem_id="pairs-report")
    gr.Markdown("### 3. Train")
    with gr.Accordion("Training options", open=False):
        with gr.Row():
            steps = gr.Slider(10, MAX_STEPS, value=defaults.steps, step=10, label="Training steps",
                              info="Optimizer steps, whatever the number of pairs")
            learning_rate = gr.Number(value=defaults.learning_rate, label="Learning rate", minimum=MIN_LEARNING_RATE,
                                      maximum=MAX_LEARNING_RATE)
            batch_size = gr.Slider(1, MAX_BATCH_SIZE, value=defaults.batch_size, step=1, label="Batch size")
            input_size = gr.Slider(0, MAX_INPUT_SIZE, value=0, step=32, label="Input size (0 = the base model's)")
        with gr.Row():
            val_share = gr.Slider(0.05, 0.5, value=defaults.val_share, step=0.05,
                                  label="Held-out share (at least one pair)")
            augment = gr.Checkbox(value=defaults.augment, label="Augmentation (flip, rotate, zoom, colour)")
            loss = gr.Radio(list(LOSSES), value=defaults.loss, label="Loss")
            freeze = gr.Checkbox(value=defaults.freeze_encoder, label="Freeze the encoder (faster)")
            flip_tta = gr.Checkbox(value=defaults.flip_tta, label="Serve as the mean with the mirrored image",
                                   info="Two forward passes per image; docs/finetune.md has what it gains")
    with gr.Row():
        train = gr.Button("Train", variant="primary", elem_id="train-button")
        stop = gr.Button("Stop", variant="stop", elem_id="stop-button")
    status = gr.Markdown(label="Training status", elem_id="finetune-status")
    with gr.Row():
        curve = gr.LinePlot(x="step", y="value", color="series", label="Loss and validation curves",
                            elem_id="loss-curve")
        sample = gr.Image(format="png", label="Held-out sample: image | mask | prediction",
                          interactive=False, elem_id="sample-prediction")
    gr.Markdown("### 4. The result")
    metrics = gr.Dataframe(label="Held-out metrics", interactive=False, elem_id="metrics-table")
    with gr.Row():
        use = gr.Checkbox(value=False, label="Use this model in the Segment tab (this session only)",
                          elem_id="use-finetuned")
        downloads = gr.File(label="Fine-tuned model (.keras) and its card", file_count="multiple",
                            interactive=False)
    with gr.Accordion("Metrics JSON", open=False):
        metrics_json = gr.JSON(label="Metrics JSON")
    with gr.Accordion("Push the fine-tuned model to the Hugging Face Hub", open=False):
        with gr.Row():
            repo_id = gr.Textbox(label="Model repo id", placeholder="your-name/my-segmenter")
            token = gr.Textbox(label="Token with write access (or set HF_TOKEN)", type="password")
        push = gr.Button("Push to the Hub")
        push_status = gr.Markdown(label="Push status")

    check_inputs = [files, base, class_mode, class_names]
    job_outputs = [status, curve, sample, metrics, metrics_json, downloads]
    checked = [
        check.click(check_pairs, check_inputs, [table, gallery, report], api_name="check_pairs"),
        files.upload(check_pairs, check_inputs, [table, gallery, report], api_visibility="undocumented"),
        train.click(finetune, [*check_inputs, steps, learning_rate, batch_size, input_size, val_share, augment,
                               loss, freeze, flip_tta], job_outputs, api_name="finetune",
                    concurrency_limit=concurrent_jobs(), concurrency_id="finetune", trigger_mode="once"),
    ]
    stop.click(stop_training, None, status, api_name="stop_finetune", concurrency_limit=None)
    use.change(use_finetuned, use, model_choice, api_visibility="private")
    push.click(push_finetuned, [repo_id, token], push_status, api_name="push_to_hub", concurrency_limit=1)
    return FinetuneTab(checked, learning_rate, batch_size, job_outputs, use)
