"""The teach loop: correct a prediction with class-colour brushes (Segment tab), collect corrected pairs in the
session's training set, and retrain from the session's current model (Fine-tune tab), whose result the
Segment tab uses at once. API: `add_training_pair`, `retrain`."""

import time
from collections.abc import Iterator
from pathlib import Path

import gradio as gr

from segdemo.cards import binary_mask_classes, class_colors
from segdemo.corrections import brush_colors, class_histogram, editor_to_labels, editor_value
from segdemo.data import InputError, Pair, read_pair
from segdemo.finetune import MAX_STEPS, FinetuneOptions, check_pair_count
from segdemo.registry import DEFAULT_MODEL
from segdemo.sessions import (
    EDITING,
    FINETUNED_CHOICE,
    FINETUNED_MODELS,
    RESULTS,
    STOP_EVENTS,
    segmenter_for,
    session_folder,
    session_key,
    training_set_of,
)
from segdemo.ui.finetune_tab import run_job, thumbnail
from segdemo.ui.handlers import user_errors

RETRAIN_STEPS = 100  # a round of the teach loop: fewer steps than a first fine-tune, it starts close
SET_THUMBNAILS = 24
CORRECT_HOW_TO = ("Press **Correct this mask**, paint over the mistakes with the class brushes (one colour per "
                  "class, as in the legend; the eraser returns pixels to the prediction), then **Add to my training "
                  "set**. Retrain in the Fine-tune tab; the white areas of the uncertainty map are where a "
                  "correction teaches the most.")


def model_for_retrain(model_name, key):
    """(base for the fine-tune: a .keras path or a bundled name, its card): the session's fine-tuned model
    when `model_name` is it (or empty and there is one), else the bundled model named."""
    finetuned = FINETUNED_MODELS.get(key)
    if model_name == FINETUNED_CHOICE or (not model_name and finetuned is not None):
        if finetuned is None:
            raise InputError("This session has no fine-tuned model yet: pick a bundled model to start from.")
        return finetuned.files[0], finetuned.card
    name = model_name or DEFAULT_MODEL
    return name, segmenter_for(name, key).card


def set_view(key):
    """The training set's summary line and its thumbnails (mask over image, numbered)."""
    training_set = training_set_of(key)
    pairs = training_set.pairs[:SET_THUMBNAILS]
    items = [(thumbnail(pair.image, pair.mask, pair.colors), f"{number} · {pair.name} ({pair.source})")
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
    result = EDITING.get(key)
    if result is None:
        raise InputError("Press 'Correct this mask' first: there is no prediction in the editor.")
    card = result.segmenter.card
    colors = class_colors(card)
    height, width = result.display_labels.shape
    labels = editor_to_labels((editor or {}).get("layers"), result.display_labels, colors, (width, height))
    pair = training_set_of(key).add(result.display_image, labels, card["classes"], colors)
    changed = float((labels != result.display_labels).mean())
    summary, items = set_view(key)
    note = (f"Added **{pair.name}** ({100 * changed:.1f}% of its pixels corrected). {summary}; retrain in the "
            "Fine-tune tab.")
    return note, summary, items


@user_errors
def add_training_pair(image, mask, model_name="", request: gr.Request = None):
    """Add an image and its mask to this session's training set (the pairs `retrain` learns from).

    Args:
        image: The image file (JPEG, PNG, WebP, BMP, GIF or TIFF).
        mask: Its mask, the same size: a PNG of class indices (pixel value = class index), of the model's class
            colours, or black/white (white = the model's main class).
        model_name: The model whose classes the mask uses: a bundled model's name, or
            "my fine-tuned model (this session)". Empty: the session's fine-tuned model if any, else "pets".

    Returns:
        {"pairs": the set's size, "name": the pair's name, "classes": the pair's share of each class}
        the set's summary line
        the set's thumbnails
    """
    key = session_key(request)
    if not image or not mask:
        raise InputError("Give both an image and its mask (a PNG of class indices or class colours).")
    _, card = model_for_retrain(model_name, key)
    colors = class_colors(card)
    image_array, labels, _ = read_pair(Pair(Path(_path(image)), Path(_path(mask))), len(card["classes"]), colors,
                                       binary_mask_classes(card))
    training_set = training_set_of(key)
    pair = training_set.add(image_array, labels, card["classes"], colors)
    summary, items = set_view(key)
    return ({"pairs": len(training_set.pairs), "name": pair.name, "classes": class_histogram(pair.mask, pair.classes)},
            summary, items)


def _path(file):
    return getattr(file, "name", None) or file


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
    key = session_key(request)
    training_set = training_set_of(key)
    if not training_set.pairs:
        raise InputError("The training set is empty: correct a prediction or upload pairs first.")
    path = session_folder(key) / f"training_set_{time.strftime('%Y%m%d_%H%M%S')}.zip"
    path.write_bytes(training_set.zip_bytes())
    return str(path)


@user_errors
def retrain(model_name="", steps=RETRAIN_STEPS, learning_rate=1e-3, batch_size=2, request: gr.Request = None,
            progress=gr.Progress()):
    """The Retrain button: fine-tune the session's current model on its training set (the pairs whose classes
    are the model's) and stream the Fine-tune tab's outputs; the result becomes the session's model."""
    key = session_key(request)
    if key in STOP_EVENTS:
        raise InputError("A training is already running in this session: wait for it to finish, or press Stop.")
    base, card = model_for_retrain(model_name, key)
    pairs, other = training_set_of(key).for_classes(card["classes"])
    if other and not pairs:
        raise InputError(f"None of the {len(other)} pairs in your training set has the classes of this model "
                         f"({', '.join(card['classes'])}): correct predictions of this model, or pick another.")
    try:
        check_pair_count(len(pairs))
    except InputError as error:
        raise InputError(f"{error} in your training set: add corrected pairs (Segment tab) or upload pairs") \
            from None
    options = FinetuneOptions(base=str(base), steps=int(steps), learning_rate=float(learning_rate),
                              batch_size=int(batch_size))
    options.check()
    yield from run_job(key, pairs, options, card, [], progress)


@user_errors
def retrain_api(model_name: str = "", steps: int = RETRAIN_STEPS, learning_rate: float = 1e-3,
                batch_size: int = 2, request: gr.Request = None) -> Iterator[dict]:
    """Retrain this session's model on its training set (the pairs added with add_training_pair, corrected in
    the Segment tab or uploaded in the Fine-tune tab, whose classes are the model's). Each call continues from
    the session's current model; the result becomes "my fine-tuned model (this session)" (segment with it after
    use_finetuned(True)).

    Args:
        model_name: The model to continue from: "my fine-tuned model (this session)", a bundled model's name, or
            empty for the session's fine-tuned model if there is one, else "pets".
        steps: Optimizer steps (1 to 2000).
        learning_rate: Peak learning rate (1e-6 to 0.1).
        batch_size: Pairs per step (1 to 16).

    Returns:
        A stream of {"status": ...} while training, then the metrics: {"before", "after" (pixel accuracy, mean IoU
        and Dice, per class, on the held-out pairs), "seconds", "steps_run", "pairs", "held_out", "curves",
        "model_name", "status"}.
    """
    for outputs in retrain(model_name, steps, learning_rate, batch_size, request, progress=lambda *_, **__: None):
        status, metrics = outputs[0], outputs[4]
        if isinstance(metrics, dict) and "after" in metrics:  # the last update (the others hold gr.skip())
            yield {**metrics, "status": status}
        elif isinstance(status, str):
            yield {"status": status}


def show_retrained(image, probability_class, opacity, request: gr.Request = None):
    """After a retrain: the Segment tab switches to the session's model and redraws its last image with it."""
    from segdemo.ui.segment_tab import segment

    outputs = segment(image, FINETUNED_CHOICE, probability_class, opacity, request) if image else [gr.skip()] * 7
    return FINETUNED_CHOICE, True, *outputs


def build_correction_panel():
    """Inside the Segment tab: the mask editor and 'Add to my training set'. Returns (add button, editor,
    status line); `wire_teach_loop` connects the button once the Fine-tune tab's set view exists."""
    with gr.Accordion("Correct this mask (teach the model)", open=False, elem_id="correct-panel"):
        gr.Markdown(CORRECT_HOW_TO)
        with gr.Row():
            correct = gr.Button("Correct this mask", elem_id="correct-button")
            add = gr.Button("Add to my training set", variant="primary", elem_id="add-pair-button")
        editor = gr.ImageEditor(type="numpy", format="png", image_mode="RGBA", sources=(), transforms=(),
                                layers=gr.LayerOptions(allow_additional_layers=False), canvas_size=(1024, 1024),
                                eraser=gr.Eraser(), label="Paint the correct classes",
                                elem_id="mask-editor")
        status = gr.Markdown(elem_id="correct-status")
    correct.click(open_editor, None, editor, api_visibility="private")
    return add, editor, status


def build_training_set_panel():
    """Inside the Fine-tune tab: the session's training set (summary, numbered thumbnails, remove, clear,
    download as ZIP) and the form that adds a pair by file (the `add_training_pair` endpoint). Returns
    (summary, gallery, retrain button, its steps)."""
    with gr.Accordion("Your training set (corrected and uploaded pairs) and Retrain", open=True):
        summary = gr.Markdown("**0 pairs** in your training set", elem_id="set-summary")
        gallery = gr.Gallery(label="Pairs, mask over image (numbered)", columns=8, height=200, format="png",
                             elem_id="set-gallery")
        with gr.Row():
            number = gr.Number(value=1, precision=0, minimum=1, label="Pair number", scale=1)
            remove = gr.Button("Remove this pair", scale=1)
            clear = gr.Button("Clear the set", variant="stop", scale=1)
            download = gr.Button("Download the set (ZIP)", scale=1)
            retrain_steps = gr.Slider(10, MAX_STEPS, value=RETRAIN_STEPS, step=10, label="Retrain steps", scale=2)
            retrain_button = gr.Button("Retrain from my current model", variant="primary", scale=2,
                                       elem_id="retrain-button")
        zip_file = gr.File(label="Training set: images/ + masks/ (class indices), uploadable again", interactive=False)
        with gr.Accordion("Add a pair by file", open=False):
            with gr.Row():
                image = gr.File(label="Image", file_types=["image"])
                mask = gr.File(label="Mask (class indices, class colours or black/white)", file_types=["image"])
                model = gr.Textbox(label="Classes of the model", placeholder="empty: the session's model, else pets")
            add = gr.Button("Add pair")
            added = gr.JSON(label="Added")
    add.click(add_training_pair, [image, mask, model], [added, summary, gallery], api_name="add_training_pair")
    remove.click(remove_pair, number, [summary, gallery], api_visibility="private")
    clear.click(clear_set, None, [summary, gallery], api_visibility="private")
    download.click(download_set, None, zip_file, api_name="download_training_set")
    return summary, gallery, retrain_button, retrain_steps


def wire_teach_loop(segment_tab, finetune_tab):
    """Connect the Segment tab's correction panel and the Fine-tune tab's set view and Retrain: Retrain streams
    into the Fine-tune tab's progress, curves and metrics, then the Segment tab redraws with the new model."""
    segment_tab.add_pair.click(add_correction, segment_tab.editor,
                               [segment_tab.correct_status, finetune_tab.set_summary, finetune_tab.set_gallery],
                               api_visibility="private")
    finetune_tab.retrain.click(
        retrain, [segment_tab.model_choice, finetune_tab.retrain_steps, finetune_tab.learning_rate,
                  finetune_tab.batch_size],
        finetune_tab.job_outputs, api_name="retrain_ui", api_visibility="private", concurrency_limit=1,
        concurrency_id="finetune",
        trigger_mode="once").success(
        show_retrained, [segment_tab.image, segment_tab.class_choice, segment_tab.opacity],
        [segment_tab.model_choice, finetune_tab.use, *segment_tab.outputs], api_visibility="private")
    gr.api(retrain_api, api_name="retrain", concurrency_limit=1, concurrency_id="finetune")
