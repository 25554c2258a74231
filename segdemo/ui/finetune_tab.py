"""The Fine-tune tab: upload image/mask pairs, see them parsed and validated, train with live progress,
a loss curve and a sample prediction per epoch, compare before/after metrics on held-out pairs, then use,
download or keep the fine-tuned model for this session only."""

import json
import logging
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from segdemo.cards import class_colors
from segdemo.data import InputError, resize_image, resize_mask
from segdemo.finetune import (
    BINARY_CLASSES,
    MAX_EPOCHS,
    MAX_INPUT_SIZE,
    MAX_PAIRS,
    MIN_PAIRS,
    FinetuneOptions,
    split_pairs,
)
from segdemo.finetune_worker import write_job
from segdemo.hub import build_push_folder, push_folder
from segdemo.inference import Segmenter, colorize, overlay, palette_lut, release_freed_memory
from segdemo.losses import LOSSES
from segdemo.registry import bundled_models, default_model_name, load_keras_model, model_choices
from segdemo.ui.handlers import user_errors
from segdemo.ui.sessions import (
    FINETUNED_CHOICE,
    FINETUNED_MODELS,
    STOP_EVENTS,
    segmenter_for,
    session_folder,
    session_key,
)
from segdemo.uploads import collect_upload, new_workdir, validate_and_load

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
KEEP_CLASSES = "keep the base model's classes"
NEW_CLASSES = "define new classes"
THUMBNAILS = 8
REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}")  # Hub rule: no leading . or -
CURVES = ("loss", "val_loss", "val_miou", "val_mdice")  # plotted each epoch
THUMBNAIL_SIDE = 160
LIMITS = (f"Limits: at most {MAX_PAIRS} pairs, {MAX_EPOCHS} epochs, input size {MAX_INPUT_SIZE}, 40 megapixels "
          "per image; one training runs at a time (others wait in the queue, with their position shown).")
HOW_TO = f"""Upload pairs as **a ZIP** holding `images/` + `masks/` (also `Images/` + `Labels/`, or the Oxford pets
layout), or as **loose files** paired by name: `x.jpg` goes with `x.png` or `x_mask.png` (also `_label`, `_gt`,
`_seg`). Masks may be class-index PNGs, black/white (0/255, anti-aliasing is thresholded), Oxford trimaps, or
colour masks in the base model's class colours. {LIMITS}
The defaults suit data close to the base model's; for a very different domain (e.g. microscopy from the pets
model) raise the learning rate (2e-3) or the epochs."""


@dataclass
class FinetunedModel:
    """A session's fine-tuned model: the Segmenter serving it and the files offered for download."""

    segmenter: Segmenter
    files: list


def finetune_classes(class_mode, class_names, base_card):
    """(class names, colours) a fine-tune uses: the base model's, or the user's comma-separated names with
    default colours."""
    if class_mode != NEW_CLASSES:
        return list(base_card["classes"]), class_colors(base_card)
    names = [name.strip() for name in (class_names or "").split(",") if name.strip()]
    if not names:
        names = list(BINARY_CLASSES)
    if len(names) < 2 or len(set(names)) != len(names):
        raise InputError("New classes: give at least two distinct names separated by commas, e.g. background, object")
    return names, class_colors({"classes": names})


def read_upload(files, classes, palette):
    """Unpack and pair the uploaded files, read every pair. Returns (reports, loaded pairs, problems)."""
    if not files:
        raise InputError("No files uploaded: add a ZIP of images/ + masks/, or images with their masks.")
    paths = [getattr(f, "name", f) for f in (files if isinstance(files, list) else [files])]
    workdir = new_workdir()
    try:
        pairs, problems = collect_upload(paths, workdir)
        reports, loaded = validate_and_load(pairs, len(classes), palette)
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


def thumbnails(loaded, colors):
    lut = palette_lut(colors)
    items = []
    for name, image, mask in loaded[:THUMBNAILS]:
        scale = THUMBNAIL_SIDE / max(image.shape[:2])
        size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
        items.append((overlay(resize_image(image, size), colorize(resize_mask(mask, size), lut), 0.5), name))
    return items


def problems_markdown(reports, problems):
    bad = [f"- **{r.name}**: {r.problem}" for r in reports if not r.ok]
    other = [f"- {problem}" for problem in problems]
    good = sum(r.ok for r in reports)
    lines = [f"**{good} pairs ready**, {len(bad)} pairs skipped, {len(other)} other files not used."]
    if bad or other:
        lines += ["", "Problems (these files are listed and skipped; the good pairs are kept):", *bad, *other]
    return "\n".join(lines)


@user_errors
def check_pairs(files, base, class_mode, class_names):
    """Pair and validate uploaded files without training. Returns the pairs table, thumbnails and the
    list of problems."""
    segmenter = segmenter_for(base, None)
    classes, colors = finetune_classes(class_mode, class_names, segmenter.card)
    reports, loaded, problems = read_upload(files, classes, colors)
    return pairs_table(reports, classes), thumbnails(loaded, colors), problems_markdown(reports, problems)


def curve_frame(history):
    """Long-format frame of per-epoch curves for gr.LinePlot."""
    rows = [(epoch, series, value) for epoch, values in enumerate(history, start=1) for series, value in values.items()]
    return pd.DataFrame(rows, columns=["epoch", "series", "value"])


def metrics_frame(before, after):
    rows = []
    for key, label in (("pixel_acc", "pixel accuracy"), ("miou", "mean IoU"), ("mdice", "mean Dice")):
        rows.append([label, None if before is None else before[key], after[key]])
    for name, value in after["per_class_iou"].items():
        rows.append([f"IoU {name}", None if before is None else before["per_class_iou"].get(name), value])
    return pd.DataFrame(rows, columns=["metric", "before (base model)", "after (fine-tuned)"])


@user_errors
def finetune(files, base, class_mode, class_names, epochs, learning_rate, batch_size, input_size, val_share,
             augment, loss, freeze_encoder, request: gr.Request = None, progress=gr.Progress()):
    """Fine-tune `base` on the uploaded pairs. Streams (status, loss curve, sample prediction, metrics table,
    metrics JSON, download files); the final metrics JSON holds `before`, `after`, `seconds`, `epochs_run`."""
    yield from _finetune(session_key(request), files, base, class_mode, class_names, epochs, learning_rate,
                         batch_size, input_size, val_share, augment, loss, freeze_encoder, progress)


def _finetune(key, files, base, class_mode, class_names, epochs, learning_rate, batch_size, input_size,
              val_share, augment, loss, freeze_encoder, progress):
    base_segmenter = segmenter_for(base, key)
    classes, colors = finetune_classes(class_mode, class_names, base_segmenter.card)
    options = FinetuneOptions(base=base, epochs=int(epochs), learning_rate=float(learning_rate),
                              batch_size=int(batch_size), input_size=int(input_size or 0),
                              val_share=float(val_share), augment=bool(augment), loss=loss,
                              freeze_encoder=bool(freeze_encoder),
                              classes=None if class_mode != NEW_CLASSES else classes)
    options.check()
    progress(0.0, desc="reading pairs")
    reports, loaded, _ = read_upload(files, classes, colors)
    if len(loaded) < MIN_PAIRS:
        raise InputError(f"need at least {MIN_PAIRS} good pairs (one to train on, one held out); "
                         f"got {len(loaded)}: see 'Check pairs' for what was skipped")
    job_dir = session_folder(key) / f"finetune_{uuid.uuid4().hex[:12]}"
    job_dir.mkdir()
    sample_index = split_pairs(len(loaded), options.val_share, options.seed)[1][0]  # shown after every epoch
    write_job(job_dir, loaded, options, sample_index, colors)
    del loaded  # the worker has its own copy; this process keeps nothing of the training
    started = time.perf_counter()
    events, outcome = queue.Queue(), {}
    worker = start_worker(job_dir, events, outcome)
    stop = StopFile(job_dir / "stop")
    STOP_EVENTS.put(key, stop)
    history, streamed = [], False
    try:
        yield from stream_progress(events, options, started, history, progress)
        streamed = True
    finally:
        if not streamed:  # the client left (generator closed): stop training instead of orphaning it
            stop.set()
            STOP_EVENTS.pop(key)
            log.info("fine-tune stopped: its session stopped listening")
    worker.join()
    STOP_EVENTS.pop(key)
    if "error" in outcome:
        error = outcome["error"]
        if error.get("input_error"):
            raise InputError(error["message"])
        raise RuntimeError(f"fine-tune worker failed: {error['message']}\n{error.get('traceback', '')}")
    if "done" not in outcome:
        raise RuntimeError(f"fine-tune worker ended without a result; see {job_dir / 'worker.log'}")
    result = outcome["done"]
    model_path = Path(result["model"])
    files_out = [str(model_path), str(model_path.with_suffix(".json")), str(model_path.with_suffix(".md"))]
    serving = Segmenter(load_keras_model(model_path), result["card"]).warm_up()
    release_freed_memory()
    FINETUNED_MODELS.put(key, FinetunedModel(serving, files_out))
    before, after = result["before"], result["after"]
    summary = {"before": before, "after": after, "seconds": round(result["seconds"], 1),
               "wall_seconds": round(time.perf_counter() - started, 1),
               "epochs_run": result["card"]["training"]["epochs_run"], "stopped_by_user": result["stopped"],
               "held_out": result["held_out"], "pairs": len(reports) - sum(not r.ok for r in reports),
               "loss": [round(v, 4) for v in result["history"].get("loss", [])],
               "val_loss": [round(v, 4) for v in result["history"].get("val_loss", [])],
               "skipped_pairs": [r.name for r in reports if not r.ok]}
    how = "stopped by you; best weights so far kept" if result["stopped"] else "finished"
    status = (f"**Done** ({how}) in {summary['wall_seconds']:.0f}s, {summary['epochs_run']} epochs. Mean IoU on "
              f"the {len(result['held_out'])} held-out pairs: "
              + (f"{before['miou']:.3f} before → " if before else "")
              + f"**{after['miou']:.3f}** after. Tick *use this model* to segment with it.")
    yield status, curve_frame(history), gr.skip(), metrics_frame(before, after), summary, files_out


class StopFile:
    """The Stop button's signal to a worker process: a file it polls for."""

    def __init__(self, path):
        self.path = Path(path)

    def set(self):
        self.path.touch()


def start_worker(job_dir, events, outcome):
    """Start `python -m segdemo.finetune_worker` on a job folder; a thread turns its JSON lines into
    (kind, epoch, step, payload) events and records its final line in `outcome`."""
    log_file = open(job_dir / "worker.log", "w")
    process = subprocess.Popen([sys.executable, "-m", "segdemo.finetune_worker", str(job_dir)],
                               cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=log_file, text=True)

    def read():
        try:
            for line in process.stdout:
                try:
                    event = json.loads(line)
                except json.JSONDecodeError:
                    continue  # stray output of a library
                if event["kind"] == "batch":
                    events.put(("batch", event["epoch"], event["step"], None))
                elif event["kind"] == "epoch":
                    events.put(("epoch", event["epoch"], event["step"], (event["logs"], event["sample"])))
                else:
                    outcome[event["kind"]] = event
        finally:
            process.wait()
            log_file.close()
            events.put(("done", None, None, None))

    reader = threading.Thread(target=read, name=f"finetune-worker-{job_dir.name}", daemon=True)
    reader.start()
    return reader


def stream_progress(events, options, started, history, progress):
    """Turn the training thread's events into progress-bar updates and per-epoch output updates."""
    yield "Training on the good pairs (tracing the graph first, a few seconds)…", None, None, None, None, None
    steps = None
    while True:
        kind, epoch, step, payload = events.get()
        if kind == "done":
            break
        if kind == "batch":
            steps = max(steps or 0, step)
            done = (epoch * steps + step) / (options.epochs * steps)
            elapsed = time.perf_counter() - started
            eta = elapsed / max(done, 1e-6) * (1 - done)
            progress(done, desc=f"epoch {epoch + 1}/{options.epochs}, step {step}/{steps}, ETA {eta:.0f}s")
            continue
        logs, strip = payload  # strip: the sample PNG's path
        history.append({k: float(v) for k, v in logs.items() if k in CURVES})
        status = (f"Epoch {epoch + 1}/{options.epochs}: loss {logs.get('loss', 0):.4f}, validation loss "
                  f"{logs.get('val_loss', 0):.4f}, validation mean IoU {logs.get('val_miou') or 0:.3f}, "
                  f"mean Dice {logs.get('val_mdice') or 0:.3f} · {time.perf_counter() - started:.0f}s")
        yield status, curve_frame(history), strip, gr.skip(), gr.skip(), gr.skip()


@user_errors
def stop_training(request: gr.Request = None):
    """Ask this session's running fine-tune to stop after the current batch (best weights are kept)."""
    stop = STOP_EVENTS.get(session_key(request))
    if stop is None:
        return "No training is running in this session."
    stop.set()
    return "Stopping after the current batch…"


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


def build_finetune_tab(model_choice):
    """Lay out the tab; `model_choice` is the Segment tab's model dropdown (switched by 'use this model')."""
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
            epochs = gr.Slider(1, MAX_EPOCHS, value=defaults.epochs, step=1, label="Epochs")
            learning_rate = gr.Number(value=defaults.learning_rate, label="Learning rate", minimum=1e-6,
                                      maximum=0.1)
            batch_size = gr.Slider(1, 16, value=defaults.batch_size, step=1, label="Batch size")
            input_size = gr.Slider(0, MAX_INPUT_SIZE, value=0, step=32, label="Input size (0 = the base model's)")
        with gr.Row():
            val_share = gr.Slider(0.05, 0.5, value=defaults.val_share, step=0.05,
                                  label="Held-out share (at least one pair)")
            augment = gr.Checkbox(value=defaults.augment, label="Augmentation (flip, rotate, zoom, colour)")
            loss = gr.Radio(list(LOSSES), value=defaults.loss, label="Loss")
            freeze = gr.Checkbox(value=defaults.freeze_encoder, label="Freeze the encoder (faster)")
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
        curve = gr.LinePlot(x="epoch", y="value", color="series", label="Loss and validation curves",
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
    check.click(check_pairs, check_inputs, [table, gallery, report], api_name="check_pairs")
    files.upload(check_pairs, check_inputs, [table, gallery, report], api_visibility="undocumented")
    train.click(finetune, [*check_inputs, epochs, learning_rate, batch_size, input_size, val_share, augment,
                           loss, freeze], [status, curve, sample, metrics, metrics_json, downloads],
                api_name="finetune", concurrency_limit=1, concurrency_id="finetune")
    stop.click(stop_training, None, status, api_name="stop_finetune", concurrency_limit=None)
    use.change(use_finetuned, use, model_choice, api_name="use_finetuned")
    push.click(push_finetuned, [repo_id, token], push_status, api_name="push_to_hub", concurrency_limit=1)
