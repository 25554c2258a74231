"""The Fine-tune tab: upload image/mask pairs, see them parsed and validated, train with live progress,
a loss curve and a sample prediction per validation round, compare before/after metrics on held-out pairs, then use,
download or keep the fine-tuned model for this session only."""

import logging
import os
import re
import shutil
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from segdemo import finetune_worker
from segdemo.cards import binary_mask_classes, class_colors, describe_binary_reading
from segdemo.data import InputError, resize_image, resize_mask
from segdemo.finetune import (
    BINARY_CLASSES,
    MAX_BATCH_SIZE,
    MAX_INPUT_SIZE,
    MAX_PAIRS,
    MAX_STEPS,
    Failed,
    FinetuneOptions,
    RoundDone,
    StepDone,
    check_pair_count,
    target_card,
)
from segdemo.hub import build_push_folder, push_folder
from segdemo.inference import colorize, overlay, palette_lut
from segdemo.losses import LOSSES
from segdemo.registry import bundled_models, default_model_name, load_segmenter, model_choices
from segdemo.sessions import (
    FINETUNED_CHOICE,
    FINETUNED_MODELS,
    STOP_EVENTS,
    segmenter_for,
    session_folder,
    session_key,
    training_set_of,
)
from segdemo.ui.handlers import user_errors
from segdemo.uploads import collect_upload, looks_inverted, new_workdir, validate_and_load

log = logging.getLogger(__name__)
LOADER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="finetuned-model")  # see FinetunedModel

KEEP_CLASSES = "keep the base model's classes"
NEW_CLASSES = "define new classes"
THUMBNAILS = 8
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")  # Hub rule: no leading . or -
CURVES = ("loss", "val_loss", "val_miou", "val_mdice")  # plotted each round
THUMBNAIL_SIDE = 160
STEP_UPDATE_SECONDS = 1.0  # between two yields while steps run (Gradio cancels a generator at a yield)
LIMITS = (f"Limits: at most {MAX_PAIRS} pairs, {MAX_STEPS} steps, input size {MAX_INPUT_SIZE}, 40 megapixels "
          "per image; one training runs at a time (others wait in the queue, with their position shown).")
HOW_TO = f"""Upload pairs as **a ZIP** holding `images/` + `masks/` (also `Images/` + `Labels/`, or the Oxford pets
layout), or as **loose files** paired by name: `x.jpg` goes with `x.png` or `x_mask.png` (also `_label`, `_gt`,
`_seg`). Masks may be class-index PNGs, black/white (0/255, anti-aliasing is thresholded; white is the object: the
base model's main class, or the last new class, and black its *background* class; the report below says how they
were read), Oxford trimaps, or colour masks in the base model's class colours. {LIMITS}
The defaults (a fixed number of steps, held-out pairs picked by name) give the same result for any seed: on 20
pairs of a new domain, about 35-40 s on 2 CPU cores (40-50 s while others use the app)."""


class FinetunedModel:
    """A session's fine-tuned model: the Segmenter serving it and the files offered for download. The
    Segmenter is loaded, frozen and warmed up on a thread (~2.6 s), so the finished result shows that much
    sooner; a request that uses the model before then waits for it."""

    def __init__(self, model_path, card, files):
        self.card, self.files = card, files  # the card is the one saved beside model_path
        self._segmenter = LOADER.submit(load_segmenter, model_path)

    @property
    def segmenter(self):
        return self._segmenter.result()


def finetune_card(class_mode, class_names, base_card):
    """The card a fine-tune's masks are read with (classes, colours, black/white reading): the base model's,
    or the user's comma-separated new class names."""
    if class_mode != NEW_CLASSES:
        return base_card
    names = [name.strip() for name in (class_names or "").split(",") if name.strip()]
    if not names:
        names = list(BINARY_CLASSES)
    if len(names) < 2 or len(set(names)) != len(names):
        raise InputError("New classes: give at least two distinct names separated by commas, e.g. background, object")
    return target_card(base_card, names)


def read_upload(files, card):
    """Unpack and pair the uploaded files, read every pair for `card`'s classes. Returns (reports, loaded
    pairs, problems)."""
    if not files:
        raise InputError("No files uploaded: add a ZIP of images/ + masks/, or images with their masks.")
    paths = [getattr(f, "name", f) for f in (files if isinstance(files, list) else [files])]
    workdir = new_workdir()
    try:
        pairs, problems = collect_upload(paths, workdir)
        reports, loaded = validate_and_load(pairs, len(card["classes"]), class_colors(card),
                                            binary_mask_classes(card))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)  # the decoded arrays are all we keep
    return reports, loaded, problems


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


def thumbnail(image, mask, colors):
    """The mask over the image, THUMBNAIL_SIDE px on the long side."""
    scale = THUMBNAIL_SIDE / max(image.shape[:2])
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return overlay(resize_image(image, size), colorize(resize_mask(mask, size), palette_lut(colors)), 0.5)


def thumbnails(loaded, colors):
    return [(thumbnail(image, mask, colors), name) for name, image, mask in loaded[:THUMBNAILS]]


def problems_markdown(reports, problems, card):
    bad = [f"- **{r.name}**: {r.problem}" for r in reports if not r.ok]
    other = [f"- {problem}" for problem in problems]
    good = sum(r.ok for r in reports)
    lines = [f"**{good} pairs ready**, {len(bad)} pairs skipped, {len(other)} other files not used."]
    binary = sum(r.ok and r.encoding == "binary" for r in reports)
    if binary:
        lines += ["", f"Masks read as black/white ({binary} pairs): {describe_binary_reading(card)}."]
    if looks_inverted(reports):
        white = card["classes"][binary_mask_classes(card)[1]]
        lines += ["", f"**Warning: these masks look inverted.** White ({white}) covers most of the image borders, "
                      "where backgrounds usually are. If white marks the background in your masks, invert them "
                      "(white must be the object) and upload again; if the object really fills the frame, go on."]
    if bad or other:
        lines += ["", "Problems (these files are listed and skipped; the good pairs are kept):", *bad, *other]
    return "\n".join(lines)


def join_training_set(key, loaded, card):
    """The upload's good pairs replace the previous upload's in the session's training set; returns the set's
    corrected pairs with `card`'s classes, which train along with them."""
    training_set = training_set_of(key)
    training_set.replace_uploaded(loaded, card["classes"], class_colors(card))
    return training_set.corrected_for(card["classes"])


@user_errors
def check_pairs(files, base, class_mode, class_names, request: gr.Request = None):
    """Pair and validate uploaded files without training. Returns the pairs table, thumbnails and the
    list of problems. The good pairs join this session's training set (replacing an earlier upload's)."""
    key = session_key(request)
    card = finetune_card(class_mode, class_names, segmenter_for(base, key).card)
    reports, loaded, problems = read_upload(files, card)
    corrected = len(join_training_set(key, loaded, card))
    report = problems_markdown(reports, problems, card)
    if corrected:
        report += (f"\n\nTrain also uses the **{corrected} corrected pairs** of your training set "
                   f"({len(loaded) + corrected} pairs in all).")
    return pairs_table(reports, card["classes"]), thumbnails(loaded, class_colors(card)), report


def curve_frame(history):
    """Long-format frame of the curves for gr.LinePlot: history is [(step, {series: value})]."""
    rows = [(step, series, value) for step, values in history for series, value in values.items()]
    return pd.DataFrame(rows, columns=["step", "series", "value"])


def metrics_frame(before, after):
    rows = []
    for key, label in (("pixel_acc", "pixel accuracy"), ("miou", "mean IoU"), ("mdice", "mean Dice")):
        rows.append([label, None if before is None else before[key], after[key]])
    for name, value in after["per_class_iou"].items():
        rows.append([f"IoU {name}", None if before is None else before["per_class_iou"].get(name), value])
    return pd.DataFrame(rows, columns=["metric", "before (base model)", "after (fine-tuned)"])


@user_errors
def finetune(files, base, class_mode, class_names, steps, learning_rate, batch_size, input_size, val_share,
             augment, loss, freeze_encoder, flip_tta=True, request: gr.Request = None, progress=gr.Progress()):
    """Fine-tune `base` on the uploaded pairs. Streams (status, curves, sample prediction, metrics table,
    metrics JSON, download files); the final metrics JSON holds `before`, `after`, `seconds`, `steps_run`."""
    yield from _finetune(session_key(request), files, base, class_mode, class_names, steps, learning_rate,
                         batch_size, input_size, val_share, augment, loss, freeze_encoder, flip_tta, progress)


def _finetune(key, files, base, class_mode, class_names, steps, learning_rate, batch_size, input_size,
              val_share, augment, loss, freeze_encoder, flip_tta, progress):
    card = finetune_card(class_mode, class_names, segmenter_for(base, key).card)
    options = FinetuneOptions(base=base, steps=int(steps), learning_rate=float(learning_rate),
                              batch_size=int(batch_size), input_size=int(input_size or 0),
                              val_share=float(val_share), augment=bool(augment), loss=loss,
                              freeze_encoder=bool(freeze_encoder), flip_tta=bool(flip_tta),
                              classes=None if class_mode != NEW_CLASSES else card["classes"])
    options.check()
    progress(0.0, desc="reading pairs")
    reports, loaded, _ = read_upload(files, card)
    loaded += join_training_set(key, loaded, card)  # one set: the uploads and the corrected pairs
    try:
        check_pair_count(len(loaded))
    except InputError as error:
        raise InputError(f"{error}: see 'Check pairs' for what was skipped") from None
    yield from run_job(key, loaded, options, card, reports, progress)


def run_job(key, pairs, options, card, reports, progress):
    """Run a fine-tune of `pairs` [(name, image, mask)] in the worker and stream the tab's outputs (status,
    curves, sample, metrics table, metrics JSON, files); the result serves this session at once."""
    job_dir = session_folder(key) / f"finetune_{uuid.uuid4().hex[:12]}"
    job_dir.mkdir()
    started = time.perf_counter()
    job = finetune_worker.start(job_dir, pairs, options, class_colors(card))
    pair_count = len(pairs)
    del pairs  # the worker has its own copy; this process keeps nothing of the training
    STOP_EVENTS.put(key, job)
    history, outcome, last_yield = [], None, 0.0
    try:
        yield "Training on the good pairs (starting the worker, a few seconds)…", None, None, None, None, None
        for event in job.events():
            if isinstance(event, StepDone):
                elapsed = time.perf_counter() - started
                done = event.step / event.steps
                progress(done, desc=f"step {event.step}/{event.steps}, "
                                    f"ETA {elapsed / max(done, 1e-6) * (1 - done):.0f}s")
                if elapsed - last_yield >= STEP_UPDATE_SECONDS:  # a yield point, so a cancel lands promptly
                    last_yield = elapsed
                    yield gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip(), gr.skip()
            elif isinstance(event, RoundDone):
                history.append((event.step, {k: v for k, v in event.logs.items() if k in CURVES and v is not None}))
                yield round_status(event, started), curve_frame(history), event.sample, gr.skip(), gr.skip(), gr.skip()
            else:
                outcome = event
    finally:
        STOP_EVENTS.pop(key)
        if outcome is None:  # the client left (generator closed): stop training instead of orphaning it
            job.stop()
            log.info("fine-tune stopped: its session stopped listening")
    if isinstance(outcome, Failed):
        if outcome.input_error:
            raise InputError(outcome.message)
        raise RuntimeError(f"fine-tune failed: {outcome.message}\n{outcome.details}")
    yield finished_outputs(key, outcome.summary, reports, started, history, pair_count)


def round_status(event, started):
    logs = event.logs
    return (f"Round {event.round}/{event.rounds} (step {event.step}/{event.steps}): loss {logs.get('loss') or 0:.4f}, "
            f"held-out loss {logs.get('val_loss') or 0:.4f}, held-out mean IoU {logs.get('val_miou') or 0:.3f}, "
            f"mean Dice {logs.get('val_mdice') or 0:.3f} · {time.perf_counter() - started:.0f}s")


def finished_outputs(key, summary, reports, started, history, pair_count):
    """Serve the finished model to this session; the final (status, curves, sample, table, JSON, files)."""
    model_path = Path(summary.model_path)
    files_out = [str(model_path), str(model_path.with_suffix(".json")), str(model_path.with_suffix(".md"))]
    FINETUNED_MODELS.put(key, FinetunedModel(model_path, summary.card, files_out))
    before, after = summary.before, summary.after
    wall = time.perf_counter() - started
    result = {"before": before, "before_note": summary.before_note, "after": after,
              "seconds": round(summary.seconds, 1), "wall_seconds": round(wall, 1),
              "steps_run": summary.steps_run, "stopped_by_user": summary.stopped_by_user,
              "held_out": summary.held_out, "pairs": pair_count, "model_name": FINETUNED_CHOICE,
              "curves": [{"step": step, **values} for step, values in history],
              "skipped_pairs": [r.name for r in reports if not r.ok]}
    how = "stopped by you; the weights so far are kept" if summary.stopped_by_user else "finished"
    status = (f"**Done** ({how}) in {wall:.0f}s, {summary.steps_run} steps. Mean IoU on the "
              f"{len(summary.held_out)} held-out pairs: {before['miou']:.3f} before → **{after['miou']:.3f}** after"
              + (f" ({summary.before_note})" if summary.before_note else "")
              + ". Tick *use this model* to segment with it.")
    return status, curve_frame(history), gr.skip(), metrics_frame(before, after), result, files_out


@user_errors
def stop_training(request: gr.Request = None):
    """Ask this session's running fine-tune to stop after the current batch (best weights are kept)."""
    job = STOP_EVENTS.get(session_key(request))
    if job is None:
        return "No training is running in this session."
    job.stop()
    return "Stopping after the current step…"


@user_errors
def push_finetuned(repo_id, token, request: gr.Request = None):
    """Push this session's fine-tuned model (model.keras, model.json, README.md model card) to a Hub model
    repo. The token is used for this call only (field, else HF_TOKEN) and never logged or stored."""
    finetuned = FINETUNED_MODELS.get(session_key(request))
    if finetuned is None:
        raise InputError("Train a model first: there is no fine-tuned model in this session yet.")
    repo_id = (repo_id or "").strip()
    if not REPO_ID.fullmatch(repo_id):
        raise InputError(f"Repository id {repo_id!r} is not of the form owner/name (letters, digits, - _ .)")
    folder = build_push_folder(finetuned.files[0], session_folder(session_key(request)) / "hub", repo_id)
    try:
        url = push_folder(folder, repo_id, token or os.environ.get("HF_TOKEN"))
    except (PermissionError, RuntimeError) as error:
        raise gr.Error(f"Push to {repo_id} failed: {error}") from None
    return f"Pushed to [{repo_id}]({url}): model.keras, model.json and a README model card."


@user_errors
def use_finetuned(use, request: gr.Request = None):
    """Point this session's Segment tab at its fine-tuned model (or back to the bundled default)."""
    if use and FINETUNED_MODELS.get(session_key(request)) is None:
        raise InputError("Train a model first: there is no fine-tuned model in this session yet.")
    if use:
        return gr.Dropdown(choices=model_choices([FINETUNED_CHOICE]), value=FINETUNED_CHOICE)
    return gr.Dropdown(choices=model_choices(), value=default_model_name(bundled_models()))


@dataclass
class FinetuneTab:
    """What the teach loop wires to: the set view, the Retrain button, the training options it reads, the job's
    outputs (status, curves, sample, metrics, JSON, files) and the 'use this model' box."""

    set_summary: gr.Markdown
    set_gallery: gr.Gallery
    retrain: gr.Button
    retrain_steps: gr.Slider
    learning_rate: gr.Number
    batch_size: gr.Slider
    job_outputs: list
    use: gr.Checkbox


def build_finetune_tab(model_choice):
    """Lay out the tab; `model_choice` is the Segment tab's model dropdown (switched by 'use this model').
    Returns a FinetuneTab."""
    from segdemo.ui.teach import build_training_set_panel, set_view
    defaults = FinetuneOptions()
    gr.Markdown(HOW_TO)
    with gr.Row():
        files = gr.File(label="Image/mask pairs (ZIP or images + masks)", file_count="multiple",
                        file_types=[".zip", "image"], elem_id="finetune-files", scale=2)
        with gr.Column(scale=1):
            base = gr.Dropdown(model_choices(), value=default_model_name(bundled_models()), label="Base model",
                               info="Any bundled model can be the starting point")
            class_mode = gr.Radio([KEEP_CLASSES, NEW_CLASSES], value=KEEP_CLASSES, label="Classes")
            class_names = gr.Textbox(value=", ".join(BINARY_CLASSES), label="New class names (index order)",
                                     info="Used with 'define new classes'; the model's head is re-initialised")
    with gr.Accordion("Training options", open=False):
        with gr.Row():
            steps = gr.Slider(10, MAX_STEPS, value=defaults.steps, step=10, label="Training steps",
                              info="Optimizer steps, whatever the number of pairs")
            learning_rate = gr.Number(value=defaults.learning_rate, label="Learning rate", minimum=1e-6,
                                      maximum=0.1)
            batch_size = gr.Slider(1, MAX_BATCH_SIZE, value=defaults.batch_size, step=1, label="Batch size")
            input_size = gr.Slider(0, MAX_INPUT_SIZE, value=0, step=32, label="Input size (0 = the base model's)")
        with gr.Row():
            val_share = gr.Slider(0.05, 0.5, value=defaults.val_share, step=0.05,
                                  label="Held-out share (at least one pair)")
            augment = gr.Checkbox(value=defaults.augment, label="Augmentation (flip, rotate, zoom, colour)")
            loss = gr.Radio(list(LOSSES), value=defaults.loss, label="Loss")
            freeze = gr.Checkbox(value=defaults.freeze_encoder, label="Freeze the encoder (faster)")
            flip_tta = gr.Checkbox(value=defaults.flip_tta, label="Serve as the mean with the mirrored image",
                                   info="Two forward passes per image; +0.002 to +0.012 IoU in the benchmark")
    set_summary, set_gallery, retrain, retrain_steps = build_training_set_panel()
    check = gr.Button("Check pairs")
    table = gr.Dataframe(label="Pairs found", interactive=False, wrap=True, elem_id="pairs-table")
    with gr.Row():
        gallery = gr.Gallery(label="A few pairs, mask over image", columns=THUMBNAILS, height=200,
                             format="png", elem_id="pairs-gallery")
        report = gr.Markdown(elem_id="pairs-report")
    with gr.Row():
        train = gr.Button("Train", variant="primary", elem_id="train-button")
        stop = gr.Button("Stop", variant="stop", elem_id="stop-button")
    status = gr.Markdown(elem_id="finetune-status")
    with gr.Row():
        curve = gr.LinePlot(x="step", y="value", color="series", label="Loss and validation curves",
                            elem_id="loss-curve")
        sample = gr.Image(format="png", label="Held-out sample: image | mask | prediction",
                          interactive=False, elem_id="sample-prediction")
    metrics = gr.Dataframe(label="Held-out metrics", interactive=False, elem_id="metrics-table")
    with gr.Row():
        use = gr.Checkbox(value=False, label="Use this model in the Segment tab (this session only)",
                          elem_id="use-finetuned")
        downloads = gr.File(label="Fine-tuned model (.keras) and its card", file_count="multiple",
                            interactive=False)
    with gr.Accordion("Metrics JSON", open=False):
        metrics_json = gr.JSON()
    with gr.Accordion("Push the fine-tuned model to the Hugging Face Hub", open=False):
        with gr.Row():
            repo_id = gr.Textbox(label="Model repo id", placeholder="your-name/my-segmenter")
            token = gr.Textbox(label="Token with write access (or set HF_TOKEN)", type="password")
        push = gr.Button("Push to the Hub")
        push_status = gr.Markdown()

    check_inputs = [files, base, class_mode, class_names]
    job_outputs = [status, curve, sample, metrics, metrics_json, downloads]

    def show_set(request: gr.Request = None):
        return set_view(session_key(request))

    check.click(check_pairs, check_inputs, [table, gallery, report], api_name="check_pairs").then(
        show_set, None, [set_summary, set_gallery], api_visibility="private")
    files.upload(check_pairs, check_inputs, [table, gallery, report], api_visibility="undocumented").then(
        show_set, None, [set_summary, set_gallery], api_visibility="private")
    train.click(finetune, [*check_inputs, steps, learning_rate, batch_size, input_size, val_share, augment,
                           loss, freeze, flip_tta], job_outputs, api_name="finetune", concurrency_limit=1,
                concurrency_id="finetune", trigger_mode="once").then(
        show_set, None, [set_summary, set_gallery], api_visibility="private")
    stop.click(stop_training, None, status, api_name="stop_finetune", concurrency_limit=None)
    use.change(use_finetuned, use, model_choice, api_name="use_finetuned")
    push.click(push_finetuned, [repo_id, token], push_status, api_name="push_to_hub", concurrency_limit=1)
    return FinetuneTab(set_summary, set_gallery, retrain, retrain_steps, learning_rate, batch_size, job_outputs, use)
