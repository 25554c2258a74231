"""The Batch tab: many images or a ZIP in, a progress bar, a gallery of overlays sortable by a class's
share, one ZIP (class-index PNGs, colour masks, classes.csv, model card) and the CSV out; the named API
endpoint (and MCP tool) `segment_batch`."""

import time

import gradio as gr

from segdemo.app.sessions import BATCHES, model_menu, request_folder, segmenter_for
from segdemo.app.startup import STARTUP
from segdemo.limits import MAX_BATCH_IMAGES, MAX_ZIP_BYTES
from segdemo.models.cards import ModelCard
from segdemo.serving.annotations import DEFAULT_TOLERANCE, MAX_TOLERANCE, SEGMENTATION_FORMATS
from segdemo.serving.batch import LEAST_CERTAIN_FIRST, segment_files
from segdemo.serving.registry import DEFAULT_MODEL, default_model_name, served_models
from segdemo.ui.components import FreeDropdown
from segdemo.ui.handlers import api_doc, session_key, upload_paths, user_errors

SKIPPED_SHOWN = 50  # problems listed in the summary; the ZIP's skipped.txt has them all
HOW_TO = (f"Drop up to **{MAX_BATCH_IMAGES} images**, or ZIPs of images (up to {MAX_ZIP_BYTES // 1_000_000} MB "
          "per file). Each image is segmented with the chosen model; the ZIP holds per image the class-index PNG "
          "(`classes/`, pixel value = class index), the colour mask (`masks/`) and each class's regions as "
          "polygons (`polygons/`), `classes.csv` (size, share and mean probability of each class per image), "
          "`coco.json` (the whole batch, for CVAT or Label Studio), optional cut-outs and the model card. "
          "Unreadable files are listed and skipped.")


def progress_reporter(progress, started):
    """A `progress(done, total)` callback that shows image k of n, the rate and the time left."""

    def report(done, total):
        rate = done / max(time.perf_counter() - started, 1e-6)
        progress((done, total), desc=f"image {done} of {total} · {rate:.1f} images/s · "
                                     f"{(total - done) / rate:.0f} s left", unit="images")

    return report


def summary_markdown(outcome):
    lines = [f"**{len(outcome.images)} images segmented** with {len(outcome.classes)} classes in "
             f"{outcome.seconds:.1f} s ({len(outcome.images) / outcome.seconds:.1f} images/s), "
             f"**{len(outcome.problems)} skipped**."]
    if outcome.problems:
        lines += ["", "Skipped (the other images are in the ZIP):",
                  *[f"- {problem}" for problem in outcome.problems[:SKIPPED_SHOWN]]]
        if len(outcome.problems) > SKIPPED_SHOWN:
            lines.append(f"- … and {len(outcome.problems) - SKIPPED_SHOWN} more (see skipped.txt in the ZIP)")
    return "\n".join(lines)


@api_doc
@user_errors
def segment_batch(files, model_name=DEFAULT_MODEL, segmentation=SEGMENTATION_FORMATS[0], tolerance=DEFAULT_TOLERANCE,
                  cutout_class="", request: gr.Request = None, progress=gr.Progress()):
    """Segment many images at once with one model (the model runs on batches of images).
    Served models and their classes: {models}.

    Args:
        files: Image files ({image_formats}) and/or ZIPs of images, at most {max_batch_images} images in all.
        model_name: A served model ({model_names}) or the session's fine-tuned model ({finetuned}).
        segmentation: How coco.json holds each region: "polygon" (one polygon per region, holes joined by a cut;
            CVAT and Label Studio import it) or "rle" (run-length masks, one per class; CVAT and pycocotools).
        tolerance: How far (pixels) a polygon's outline may move when simplified; 0: the exact pixel outline.
        cutout_class: A class of the model: the ZIP also holds cutouts/<image>.png, each image with only that
            class opaque (RGBA, soft edge); empty: no cut-outs.

    Returns:
        a ZIP: classes/<image>.png (pixel = class index), masks/<image>.png (colours), polygons/<image>.json (each
            class's regions, holes kept), coco.json, cutouts/ when asked for, classes.csv, model card
        classes.csv: per image file, width, height, share_<class> and mean_prob_<class> for every class
        a summary that lists the skipped files and why
        coco.json: the whole batch in COCO format (categories = the model's classes)
    """
    files = upload_paths(files)
    key = session_key(request)
    outcome = segment_files(files, segmenter_for(model_name, key), request_folder(key),
                            progress_reporter(progress, time.perf_counter()), segmentation, tolerance, cutout_class)
    BATCHES.put(key, outcome)
    STARTUP.first_answer()
    return outcome.zip_path, outcome.csv_path, summary_markdown(outcome), outcome.coco_path


def gallery_items(outcome, order):
    """(overlay, caption) per image in the chosen order: by a class's share, or least certain first."""
    def caption(item):
        if order == LEAST_CERTAIN_FIRST:
            return f"{item.name} · uncertainty {item.uncertainty:.3f}"
        return f"{item.name} · {order} {100 * item.shares[order]:.0f}%" if order in item.shares else item.name

    return [(item.thumbnail, caption(item)) for item in outcome.sorted_by(order)]


@user_errors
def show_gallery(order, request: gr.Request = None):
    """After a batch: the orderings its model offers and the overlays, largest share of the class first (or
    least certain first)."""
    outcome = BATCHES.get(session_key(request))
    if outcome is None:
        return gr.skip(), gr.skip()
    if order not in outcome.classes and order != LEAST_CERTAIN_FIRST:
        order = outcome.classes[0]
    return gr.Dropdown(choices=[*outcome.classes, LEAST_CERTAIN_FIRST], value=order), gallery_items(outcome, order)


@user_errors
def sort_gallery(order, request: gr.Request = None):
    """Re-sort the session's last batch by another class, or least certain first (no model call)."""
    outcome = BATCHES.get(session_key(request))
    return gr.skip() if outcome is None else gallery_items(outcome, order)


def build_batch_tab():
    models = served_models()
    model_name = default_model_name(models)
    card = ModelCard.load(models[model_name])
    gr.Markdown(HOW_TO)
    with gr.Row():
        files = gr.File(label=f"Images or ZIPs of images (at most {MAX_BATCH_IMAGES} images)", file_count="multiple",
                        file_types=[".zip", "image"], elem_id="batch-files", scale=2)
        with gr.Column(scale=1):
            model = FreeDropdown(model_menu(), value=model_name, label="Model",
                                 allow_custom_value=True, info="A served model, or this session's fine-tuned one")
            run = gr.Button("Segment all", variant="primary", elem_id="batch-run")
    with gr.Accordion("Masks to take elsewhere: polygons, COCO, cut-outs", open=False):
        with gr.Row():
            segmentation = gr.Radio(list(SEGMENTATION_FORMATS), value=SEGMENTATION_FORMATS[0],
                                    label="coco.json regions as", info="polygon: CVAT and Label Studio; rle: CVAT")
            tolerance = gr.Slider(0, MAX_TOLERANCE, value=DEFAULT_TOLERANCE, step=0.25,
                                  label="Polygon tolerance (pixels; 0: exact outline)")
            cutout_class = FreeDropdown(["", *card.classes], value="", allow_custom_value=True,
                                        label="Cut-outs of class (empty: none)", elem_id="batch-cutout-class")
    summary = gr.Markdown(label="Summary: images segmented, files skipped and why", elem_id="batch-summary")
    with gr.Row():
        zip_file = gr.File(label="Masks, classes.csv and model card (ZIP)", interactive=False, elem_id="batch-zip")
        csv_file = gr.File(label="classes.csv", interactive=False, elem_id="batch-csv")
        coco_file = gr.File(label="coco.json (COCO: CVAT, Label Studio)", interactive=False, elem_id="batch-coco")
    sort_by = gr.Dropdown([*card.classes, LEAST_CERTAIN_FIRST], value=card.shown_class,
                          label="Sort the gallery by the share of a class, or least certain first (to correct)",
                          elem_id="batch-sort")
    gallery = gr.Gallery(label="Overlays", columns=6, height="auto", format="png", elem_id="batch-gallery")
    run.click(segment_batch, [files, model, segmentation, tolerance, cutout_class],
              [zip_file, csv_file, summary, coco_file], api_name="segment_batch",
              concurrency_limit=1, concurrency_id="batch").success(
        show_gallery, sort_by, [sort_by, gallery], api_visibility="private")
    sort_by.input(sort_gallery, sort_by, gallery, api_visibility="private")

