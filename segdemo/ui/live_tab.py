"""The Live tab: a model on the webcam (Gradio's own streaming: the browser sends a frame, gets its overlay, sends
the next) and on a video file (an H.264 mp4 of the overlay, mask, input | mask or a virtual background, the
class-index masks per frame as a ZIP, each class's share over time); the named API endpoint (and MCP tool)
`segment_video`. The webcam stream is not an API endpoint. A virtual background (serving.cutout) keeps one class
(the model's shown class unless another is picked) with a soft edge over a blurred copy of the frame or a plain
colour, on the webcam and in the video."""

import time

import gradio as gr

from segdemo.app.sessions import (
    LIVE_STREAMS,
    model_menu,
    request_folder,
    segmenter_for,
    session_folder,
)
from segdemo.app.showcase import live_clip
from segdemo.config import EXAMPLES_DIR
from segdemo.errors import InputError
from segdemo.limits import LIVE_CONCURRENCY, LIVE_MAX_SIDE, LIVE_SMOOTHING, LIVE_STREAM_EVERY_S, LIVE_TIME_LIMIT_S
from segdemo.models.cards import ModelCard
from segdemo.serving.cutout import BLUR, DEFAULT_COLOR, PLAIN, VirtualBackground, class_index_of, color_rgb
from segdemo.serving.live import LiveStream, live_frame, stats_line, write_mask
from segdemo.serving.registry import DEFAULT_MODEL, current_config, default_model_name, served_models
from segdemo.serving.video import OUTPUT_KINDS, OVERLAY, VIRTUAL_BACKGROUND
from segdemo.serving.video import segment_video as run_video
from segdemo.serving.video_io import accepted
from segdemo.ui.components import FreeDropdown, StreamedFrame
from segdemo.ui.handlers import api_doc, session_key, user_errors

DEFAULT_OPACITY = 0.5
EXAMPLE_CLIP = EXAMPLES_DIR / "live_clip.mp4"
CAMERA_CONSTRAINTS = {"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}}  # not the 1920x1440 default
WEBCAM_VIEWS = (OVERLAY, VIRTUAL_BACKGROUND)
BACKGROUND_CHOICES = [("blurred frame", BLUR), ("plain colour", PLAIN)]  # (shown, value over the API)
DEFAULT_COLOR_HEX = "#{:02x}{:02x}{:02x}".format(*DEFAULT_COLOR)
HOW_TO = (f"**Webcam**: allow the camera and press record: each frame is shrunk to {LIVE_MAX_SIDE} px, segmented "
          "and drawn; the browser sends the next frame when the last one's overlay has arrived, so the rate is what "
          f"this server sustains. The stream stops after {LIVE_TIME_LIMIT_S} s (press record again to go on); at "
          f"most {LIVE_CONCURRENCY} streams run at once, others wait. On a phone, pick the front or back camera "
          "in the camera menu. The overlay shows the frames as the preview does (mirrored when it is). "
          "**Video**: upload a clip: out comes an H.264 mp4 (overlay, mask, input | mask side by side, or a virtual "
          "background) with the same frame rate and frame count, each class's share over time and the class-index "
          f"masks of every frame as PNGs in a ZIP (for annotation tools). The audio is dropped. "
          f"{accepted().capitalize()}. **Virtual background** (webcam and video): the class you pick is kept, with "
          "a soft edge, over a blurred copy of the frame or a plain colour (green by default: a video editor can "
          "key it out).")


def new_stream(key):
    """The session's stream state; a new one when the last frame came long ago (a new recording)."""
    stream = LIVE_STREAMS.get(key)
    if stream is None or stream.is_stale(time.perf_counter()):
        stream = LiveStream()
        LIVE_STREAMS.put(key, stream)
    return stream


def virtual_background(segmenter, keep_class, background, background_color):
    """The VirtualBackground a request asks for: `keep_class` over `background` ("blur", or "plain" in
    `background_color`). An empty class, or one the model lacks, is the model's shown class, as the `segment`
    endpoint's probability_class: the API's default is the page's class (the default model's), and the page's
    class menu follows a model switch only once the model has loaded."""
    shown = segmenter.card.shown_class
    keep_class = keep_class if keep_class in segmenter.classes else shown
    return VirtualBackground(class_index_of(segmenter.classes, keep_class, shown), background or BLUR,
                             color_rgb(background_color))


def live(frame, model_name=DEFAULT_MODEL, opacity=DEFAULT_OPACITY, smooth=False, view=OVERLAY, keep_class="",
         background=BLUR, background_color=DEFAULT_COLOR_HEX, request: gr.Request = None):
    """One webcam frame -> (overlay or virtual background, class mask, stats line). A bad frame or model name is
    reported in the stats line and the stream goes on (an exception would end it)."""
    if frame is None:
        return gr.skip(), gr.skip(), "Waiting for the camera…"
    key = session_key(request)
    stream = new_stream(key)
    try:
        segmenter = segmenter_for(model_name, key)
        virtual = virtual_background(segmenter, keep_class, background, background_color) \
            if view == VIRTUAL_BACKGROUND else None
        result = live_frame(frame, segmenter, stream, opacity, smooth, virtual=virtual)
    except InputError as error:
        return gr.skip(), gr.skip(), f"⚠ {error}"
    mask = write_mask(result, segmenter.palette, session_folder(key))
    return result.view, mask, stats_line(result.stats, smooth, LIVE_TIME_LIMIT_S)


@user_errors
def class_menu(model_name, request: gr.Request = None):
    """The model switch: the class menu of the virtual background lists the new model's classes."""
    try:
        card = segmenter_for(model_name, session_key(request)).card
    except InputError:
        return gr.skip()  # the webcam's stats line and the video's error say what is wrong with the model
    return gr.Dropdown(choices=list(card.classes), value=card.shown_class)


def video_note(result):
    seconds = result.seconds
    steps = " · ".join(f"{step} {seconds[step]:.1f}" for step in ("decode", "model", "draw", "encode"))
    lines = [f"**{result.frames} frames** at {result.fps:.2f} frames/s, {result.size[0]}×{result.size[1]} → "
             f"{result.output_size[0]}×{result.output_size[1]} ({result.kind}) in {seconds['total']:.1f} s "
             f"(**{result.frames_per_second:.1f} frames/s**; {steps} s)"]
    return "  \n".join(lines + [note[0].upper() + note[1:] for note in result.notes])


def shares_table(result):
    import pandas as pd  # a Gradio dependency: the line plot takes a DataFrame

    return pd.DataFrame(result.share_rows(), columns=["time_s", "class", "share"])


@api_doc
@user_errors
def segment_video(video, model_name=DEFAULT_MODEL, output_kind=OVERLAY, keep_class="", background=BLUR,
                  background_color=DEFAULT_COLOR_HEX, request: gr.Request = None, progress=gr.Progress()):
    """Segment every frame of a video with a U-Net model (frames go through the model in batches).
    Served models and their classes: {models}.

    Args:
        video: The video file ({video_limits}). The audio is dropped; a phone's rotation is applied.
        model_name: A served model ({model_names}) or the session's fine-tuned model ({finetuned}).
        output_kind: What the output video shows: "overlay" (the mask over the frames), "mask" (the colour mask),
            "input | mask" (side by side) or "virtual background" (one class kept, with a soft edge, over a
            blurred copy of the frame or a plain colour: see keep_class, background, background_color).
        keep_class: With "virtual background": the class kept in front, one of the model's classes; empty or a
            class the model lacks: the model's shown class ("pet" for "pets"); the note names the class kept.
        background: With "virtual background": "blur" (a blurred copy of the frame) or "plain" (background_color).
        background_color: With background "plain": the colour, "#rrggbb" or "rgb(r, g, b)" (default chroma-key
            green "#00b140").

    Returns:
        the segmented video: H.264 mp4 (yuv420p), same frame rate and frame count as the input
        a ZIP of the class-index masks: masks/frame_000000.png ... (pixel value = class index, full size), classes.json
        each class's share of each frame: rows of (time_s, class, share)
        a note: frames, rate, sizes, timings, and what changed (audio dropped, rotation, frame rate)
    """
    key = session_key(request)
    segmenter = segmenter_for(model_name, key)
    started = time.perf_counter()

    def report(done, total):
        rate = done / max(time.perf_counter() - started, 1e-6)
        progress((done, total), desc=f"frame {done} of {total} · {rate:.1f} frames/s", unit="frames")

    virtual = virtual_background(segmenter, keep_class, background, background_color) \
        if output_kind == VIRTUAL_BACKGROUND else None
    result = run_video(video, segmenter, request_folder(key), output_kind, DEFAULT_OPACITY, report, virtual)
    return result.video_path, result.masks_path, shares_table(result), video_note(result)


def build_webcam(model_choice, opacity, smooth, backdrop):
    view = gr.Radio(list(WEBCAM_VIEWS), value=OVERLAY, label="Webcam shows", elem_id="live-webcam-view")
    with gr.Row(equal_height=True):
        camera = StreamedFrame(sources=["webcam"], streaming=True, type="filepath", image_mode=None,
                               label="Camera", elem_id="live-camera",
                               webcam_options=gr.WebcamOptions(mirror=True, constraints=CAMERA_CONSTRAINTS))
        overlay = gr.Image(format="jpeg", label="Overlay or virtual background", interactive=False,
                           elem_id="live-output")
        mask = gr.Image(format="png", label="Class mask", interactive=False, elem_id="live-mask")
    stats = gr.Markdown("Press record to start the camera.", label="Frames/s, timings", elem_id="live-stats")
    camera.stream(live, [camera, model_choice, opacity, smooth, view, *backdrop], [overlay, mask, stats],
                  stream_every=LIVE_STREAM_EVERY_S, time_limit=LIVE_TIME_LIMIT_S, concurrency_limit=LIVE_CONCURRENCY,
                  concurrency_id="live-webcam", api_visibility="private", show_progress="hidden")


def build_video(model_choice, backdrop):
    with gr.Row():
        with gr.Column():
            video = gr.Video(sources=["upload"], format=None, include_audio=True, label="Video",
                             elem_id="live-video-input")
            kind = gr.Radio(list(OUTPUT_KINDS), value=OVERLAY, label="Output video shows", elem_id="live-video-kind")
            run = gr.Button("Segment the video", variant="primary", elem_id="live-video-run")
            clip = live_clip(served_models(), current_config().weights_dir, EXAMPLE_CLIP)
            if clip is not None:  # the showcased model's own clip, ours only beside the bundled models
                bundled = " (free to redistribute, see examples/SOURCES.md)" if clip == EXAMPLE_CLIP else ""
                gr.Examples([[str(clip)]], inputs=[video], label=f"Example clip{bundled}")
        with gr.Column():
            output = gr.Video(format=None, label="Segmented video (H.264 mp4)", interactive=False,
                              elem_id="live-video-output")
            masks = gr.File(label="Class-index masks per frame (ZIP of PNGs)", interactive=False,
                            elem_id="live-video-masks")
    with gr.Row():
        shares = gr.LinePlot(x="time_s", y="share", color="class", y_lim=[0, 1], label="Share of the frame per class",
                             x_title="time (s)", y_title="share of the frame", elem_id="live-video-shares")
        note = gr.Markdown(label="Note: frames, rate, sizes, timings", elem_id="live-video-note")
    run.click(segment_video, [video, model_choice, kind, *backdrop], [output, masks, shares, note],
              api_name="segment_video", concurrency_limit=1)


def build_backdrop(model_name):
    """The virtual background's controls, shared by the webcam and the video: (class kept, background, colour)."""
    card = ModelCard.load(served_models()[model_name])
    with gr.Row():
        # free values over the API: a class of another model than the page shows
        keep_class = FreeDropdown(card.classes, value=card.shown_class, allow_custom_value=True,
                                  label="Virtual background: class kept", elem_id="live-keep-class")
        background = gr.Radio(BACKGROUND_CHOICES, value=BLUR, label="Virtual background: behind it",
                              elem_id="live-background")
        color = gr.ColorPicker(DEFAULT_COLOR_HEX, label="Virtual background: plain colour",
                               elem_id="live-background-color")
    return keep_class, background, color


def build_live_tab():
    """Lay out the tab inside an open `gr.Blocks` and wire its events."""
    gr.Markdown(HOW_TO)
    model_name = default_model_name(served_models())
    with gr.Row():
        model_choice = FreeDropdown(model_menu(), value=model_name, allow_custom_value=True,
                                    label="Model", elem_id="live-model")
        opacity = gr.Slider(0.0, 1.0, value=DEFAULT_OPACITY, step=0.05, label="Overlay opacity")
        smooth = gr.Checkbox(False, label=f"Temporal smoothing (webcam): average the probabilities with the "
                                          f"previous frames' ({LIVE_SMOOTHING:g} weight): steadier, slower to follow")
    backdrop = build_backdrop(model_name)
    model_choice.change(class_menu, [model_choice], [backdrop[0]], api_visibility="private", show_progress="hidden")
    with gr.Tab("Webcam"):
        build_webcam(model_choice, opacity, smooth, backdrop)
    with gr.Tab("Video file"):
        build_video(model_choice, backdrop)
