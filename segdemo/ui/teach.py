"""The teach loop: correct a prediction with class-colour brushes (Segment tab), collect corrected pairs in the
session's training set, and retrain from the session's current model (Fine-tune tab), whose result the
Segment tab uses at once. API: `add_training_pair`, `retrain`."""

from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr

from segdemo.app.finetune_requests import add_correction as add_correction_to_set
from segdemo.app.finetune_requests import add_pair_files, training_set_zip
from segdemo.app.jobs import JobResult, concurrent_jobs, describe_round, start_retrain
from segdemo.app.sessions import (
    EDITING,
    FINETUNED_CHOICE,
    RESULTS,
    forget_session,
    training_set_of,
)
from segdemo.data.training_set import class_histogram
from segdemo.errors import InputError
from segdemo.finetune.events import RoundDone
from segdemo.finetune.options import FinetuneOptions
from segdemo.limits import MAX_STEPS, RETRAIN_STEPS
from segdemo.models.cards import class_colors
from segdemo.serving.drawing import palette_lut, thumbnail
from segdemo.serving.mask_editor import brush_colors, editor_value
from segdemo.ui.finetune_tab import THUMBNAIL_SIDE, FinetuneTab
from segdemo.ui.gradio_compat import name_api_values
from segdemo.ui.handlers import api_doc, session_key, upload_paths, user_errors
from segdemo.ui.job_view import stream_job
from segdemo.ui.segment_tab import SegmentTab, segment

SET_THUMBNAILS = 24
CORRECT_HOW_TO = ("Press **Correct this mask**, paint over the mistakes with the class brushes (one colour per "
                  "class, as in the legend; the eraser returns pixels to the prediction), then **Add to my training "
                  "set**. Retrain in the Fine-tune tab; the white areas of the uncertainty map are where a "
                  "correction teaches the most.")


def set_view(key):
    """The training set's summary line and its thumbnails (mask over image, numbered)."""
    training_set = training_set_of(key)
    pairs = training_set.pairs[:SET_THUMBNAILS]
    items = [(thumbnail(pair.image, pair.mask, palette_lut(pair.colors), THUMBNAIL_SIDE),
              f"{number} · {pair.name} ({pair.source})")
             for number, pair in enumerate(pairs, 1)]
    more = f"; the first {SET_THUMBNAILS} are shown" if len(training_set.pairs) > SET_THUMBNAILS else ""
    return training_set.summary() + more, items


@user_errors
def open_editor(request: gr.Request = None):
    """Load the session's last prediction into the mask editor, with one brush per class of its model."""
    key = session_key(request)
    result = RESULTS.get(key)
    if result is None:
        raise InputError("Segment an image first: the editor starts from its predicted mask.")
    EDITING.put(key, result)
    colors = class_colors(result.segmenter.card)
    brush = gr.Brush(colors=brush_colors(colors), default_color=brush_colors(colors)[0], color_mode="fixed")
    return gr.ImageEditor(value=editor_value(result.display_image, result.display_labels, colors), brush=brush)


@user_errors
def add_correction(editor, request: gr.Request = None):
    """Turn the painted layer into class indices and add (image, corrected mask) to the session's set."""
    key = session_key(request)
    pair, changed = add_correction_to_set(key, EDITING.get(key), (editor or {}).get("layers"))
    summary, items = set_view(key)
    note = (f"Added **{pair.name}** ({100 * changed:.1f}% of its pixels corrected). {summary}; retrain in the "
            "Fine-tune tab.")
    return note, summary, items


@api_doc
@user_errors
def add_training_pair(image, mask, model_name="", request: gr.Request = None):
    """Add an image and its mask to this session's training set (the pairs `retrain` learns from).

    Args:
        image: The image file ({image_formats}).
        mask: Its mask, the same size: a PNG of class indices (pixel value = class index), of the model's class
            colours, or black/white (white = the model's main class).
        model_name: The model whose classes the mask uses: a served model ({model_names}) or the session's
            fine-tuned model ({finetuned}). Empty: the session's fine-tuned model if any, else the default model.

    Returns:
        {"pairs": the set's size, "name": the pair's name, "classes": the pair's share of each class}
        the set's summary line
        the set's thumbnails
    """
    key = session_key(request)
    pair = add_pair_files(key, upload_paths(image)[0] if image else None, upload_paths(mask)[0] if mask else None,
                          model_name)
    training_set = training_set_of(key)
    summary, items = set_view(key)
    return ({"pairs": len(training_set.pairs), "name": pair.name, "classes": class_histogram(pair.mask, pair.classes)},
            summary, items)


@user_errors
def remove_pair(number, request: gr.Request = None):
    """Remove pair `number` (as numbered under the thumbnails) from the session's set."""
    key = session_key(request)
    training_set_of(key).remove(int(number or 0) - 1)
    return set_view(key)


@user_errors
def clear_set(request: gr.Request = None):
    key = session_key(request)
    training_set_of(key).clear()
    return set_view(key)


@user_errors
def download_set(request: gr.Request = None):
    """The set as a ZIP (images/ + masks/ of class indices) that the Fine-tune tab reads back."""
    return str(training_set_zip(session_key(request)))


@user_errors
def retrain_from_ui(model_name="", steps=RETRAIN_STEPS, learning_rate=FinetuneOptions.learning_rate,
                    batch_size=FinetuneOptions.batch_size, request: gr.Request = None, progress=gr.Progress()):
    """The Retrain button: fine-tune the session's current model on its training set and stream the Fine-tune
    tab's outputs; the result becomes the session's model."""
    job = start_retrain(session_key(request), model_name, steps, learning_rate, batch_size)
    yield from stream_job(job, progress)


@api_doc
@user_errors
def retrain(model_name: str = "", steps: int = RETRAIN_STEPS, learning_rate: float = FinetuneOptions.learning_rate,
            batch_size: int = FinetuneOptions.batch_size, request: gr.Request = None) -> Iterator[dict]:
    """Retrain this session's model on its training set (the pairs added with add_training_pair, corrected in
    the Segment tab or uploaded in the Fine-tune tab, whose classes are the model's). Each call continues from
    the session's current model; the result is served to this session at once as {finetuned}: pass it as
    `model_name` to segment, segment_batch, compare or retrain.

    Args:
        model_name: The model to continue from: a served model ({model_names}) or the session's fine-tuned model
            ({finetuned}); empty: the session's fine-tuned model if there is one, else the default model.
        steps: Optimizer steps (1 to {max_steps}; default {retrain_steps}).
        learning_rate: Peak learning rate ({learning_rates}).
        batch_size: Pairs per step (1 to {max_batch_size}).

    Returns:
        A stream of {"status": ...} while training, then the metrics: {"before", "after" (pixel accuracy, mean IoU
        and Dice, per class, on the held-out pairs), "seconds", "steps_run", "pairs", "held_out", "curves",
        "model_name", "status"}.
    """
    job = start_retrain(session_key(request), model_name, steps, learning_rate, batch_size)
    for event in job.events():
        if isinstance(event, JobResult):
            yield {**event.metrics(), "status": event.status()}
        elif isinstance(event, RoundDone):
            yield {"status": describe_round(event, job.elapsed)}


def show_retrained(image, probability_class, opacity, request: gr.Request = None):
    """After a retrain: the Segment tab switches to the session's model and redraws its last image with it."""
    outputs = segment(image, FINETUNED_CHOICE, probability_class, opacity, request) if image else [gr.skip()] * 7
    return FINETUNED_CHOICE, True, *outputs


def end_session(request: gr.Request):
    """When the page is closed: the session's state and files go (registered once, for every tab)."""
    forget_session(session_key(request))


@dataclass
class CorrectionPanel:
    """Below the Segment tab's outputs: 'Correct this mask', the mask editor, 'Add to my training set'."""

    add: gr.Button
    editor: gr.ImageEditor
    status: gr.Markdown


@dataclass
class TrainingSetPanel:
    """After the Fine-tune tab's result: the session's training set and Retrain."""

    summary: gr.Markdown
    gallery: gr.Gallery
    retrain: gr.Button
    retrain_steps: gr.Slider


def build_correction_panel():
    """Lay out the correction panel (inside the Segment tab); `wire_teach_loop` connects its Add button."""
    with gr.Accordion("Correct this mask (teach the model)", open=False, elem_id="correct-panel"):
        gr.Markdown(CORRECT_HOW_TO)
        with gr.Row():
            correct = gr.Button("Correct this mask", elem_id="correct-button")
            add = gr.Button("Add to my training set", variant="primary", elem_id="add-pair-button")
        editor = gr.ImageEditor(type="numpy", format="png", image_mode="RGBA", sources=(), transforms=(),
                                layers=gr.LayerOptions(allow_additional_layers=False), canvas_size=(1024, 1024),
                                eraser=gr.Eraser(), label="Paint the correct classes",
                                elem_id="mask-editor")
        status = gr.Markdown(label="Correction status", elem_id="correct-status")
    correct.click(open_editor, None, editor, api_visibility="private")
    return CorrectionPanel(add, editor, status)


def build_training_set_panel():
    """Lay out the teach loop's section of the Fine-tune tab, after its result: the session's training set
    (summary, numbered thumbnails, remove, clear, download as ZIP), the form that adds a pair by file (the
    `add_training_pair` endpoint) and Retrain."""
    gr.Markdown("### Teach loop: your training set and Retrain\nCorrected pairs (Segment tab) and the last "
                "upload's pairs collect here; Retrain continues from your current model.")
    summary = gr.Markdown("**0 pairs** in your training set", label="Training set summary",
                          elem_id="set-summary")
    gallery = gr.Gallery(label="Pairs, mask over image (numbered)", columns=8, height=200, format="png",
                         elem_id="set-gallery")
    with gr.Row():
        number = gr.Number(value=1, precision=0, minimum=1, label="Pair number", scale=1)
        remove = gr.Button("Remove this pair", scale=1)
        clear = gr.Button("Clear the set", variant="stop", scale=1)
        download = gr.Button("Download the set (ZIP)", scale=1)
    zip_file = gr.File(label="Training set: images/ + masks/ (class indices), uploadable again", interactive=False)
    with gr.Accordion("Add a pair by file", open=False):
        with gr.Row():
            image = gr.File(label="Image", file_types=["image"])
            mask = gr.File(label="Mask (class indices, class colours or black/white)", file_types=["image"])
            model = gr.Textbox(value="", label="Classes of the model",
                               placeholder="empty: the session's fine-tuned model, else the default model")
        add = gr.Button("Add pair")
        added = gr.JSON(label="Added")
    with gr.Row():
        retrain_steps = gr.Slider(10, MAX_STEPS, value=RETRAIN_STEPS, step=10, label="Retrain steps", scale=2)
        retrain_button = gr.Button("Retrain from my current model", variant="primary", scale=2,
                                   elem_id="retrain-button")
    add.click(add_training_pair, [image, mask, model], [added, summary, gallery], api_name="add_training_pair")
    remove.click(remove_pair, number, [summary, gallery], api_visibility="private")
    clear.click(clear_set, None, [summary, gallery], api_visibility="private")
    download.click(download_set, None, zip_file, api_name="download_training_set")
    return TrainingSetPanel(summary, gallery, retrain_button, retrain_steps)


def show_set(request: gr.Request = None):
    return set_view(session_key(request))


def wire_teach_loop(demo, segment_tab: SegmentTab, correction: CorrectionPanel, finetune_tab: FinetuneTab,
                    training_set: TrainingSetPanel):
    """Connect the correction panel, the training set's view and Retrain: an upload that was checked or trained
    on shows in the set; Retrain streams into the Fine-tune tab's progress, curves and metrics, then the
    Segment tab redraws with the new model. Registers the `retrain` API and the session's end."""
    set_view_outputs = [training_set.summary, training_set.gallery]
    correction.add.click(add_correction, correction.editor, [correction.status, *set_view_outputs],
                         api_visibility="private")
    for event in finetune_tab.checked:
        event.then(show_set, None, set_view_outputs, api_visibility="private")
    training_set.retrain.click(
        retrain_from_ui, [segment_tab.model_choice, training_set.retrain_steps, finetune_tab.learning_rate,
                          finetune_tab.batch_size],
        finetune_tab.job_outputs, api_visibility="private", concurrency_limit=concurrent_jobs(),
        concurrency_id="finetune", trigger_mode="once").success(
        show_retrained, [segment_tab.image, segment_tab.class_choice, segment_tab.opacity],
        [segment_tab.model_choice, finetune_tab.use, *segment_tab.outputs], api_visibility="private")
    gr.api(retrain, api_name="retrain", concurrency_limit=concurrent_jobs(), concurrency_id="finetune")
    name_api_values(demo, "retrain", ["status while training, then the metrics (JSON)"])
    demo.unload(end_session)
