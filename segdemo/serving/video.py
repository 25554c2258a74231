"""A video file through a model: the header checked (video_io.probe_video) -> frames decoded -> batches through
`Segmenter.predict_batch` -> each frame drawn (overlay, colour mask, input | mask, or a virtual background: one
class kept over a plain colour or a blurred copy of the frame, serving.cutout) -> an H.264 mp4, a ZIP of
the class-index masks (one PNG per frame, full resolution) and each class's share of every frame. Drawing and
encoding run on a thread beside the model, so they overlap its next batch. No Gradio: the Live tab and the
`segment_video` API call `segment_video`; scripts can too."""

import json
import queue
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from segdemo.data.images import resize_image, resize_mask
from segdemo.errors import InputError
from segdemo.limits import VIDEO_OUTPUT_MAX_SIDE
from segdemo.serving.cutout import PLAIN, VirtualBackground, class_index_of
from segdemo.serving.drawing import colorize, overlay
from segdemo.serving.png import png_bytes
from segdemo.serving.segmenter import BATCH_SIZE
from segdemo.serving.video_io import Mp4Writer, decode_frames, probe_video

OVERLAY, MASK, SIDE_BY_SIDE, VIRTUAL_BACKGROUND = "overlay", "mask", "input | mask", "virtual background"
OUTPUT_KINDS = (OVERLAY, MASK, SIDE_BY_SIDE, VIRTUAL_BACKGROUND)
STEPS = ("decode", "model", "draw", "encode")  # the timed steps, in order ("encode": the mp4 and the mask PNGs)


@dataclass
class VideoResult:
    """A segmented video: the files, each class's share of each frame, and where the time went."""

    video_path: str  # H.264 yuv420p mp4, faststart, no audio
    masks_path: str  # ZIP: masks/frame_000000.png ... (pixel value = class index), classes.json
    classes: list
    shares: np.ndarray  # (frames, classes): the fraction of each frame each class covers
    fps: float
    frames: int
    size: tuple  # (width, height) of the input as shown (rotation applied)
    output_size: tuple  # (width, height) of the output video's frames
    kind: str
    seconds: dict = field(default_factory=dict)  # decode, model, draw, encode (totals), and "total"
    notes: list = field(default_factory=list)

    @property
    def frames_per_second(self):
        """Frames segmented per second of wall time."""
        return self.frames / max(self.seconds.get("total", 0.0), 1e-9)

    def share_rows(self):
        """[(time in s, class, share)] for each frame and class: a line plot's data."""
        times = np.arange(self.frames) / self.fps
        return [(round(float(t), 3), name, round(float(share), 4))
                for t, row in zip(times, self.shares) for name, share in zip(self.classes, row)]


def require_kind(kind):
    if kind not in OUTPUT_KINDS:
        raise InputError(f"Unknown output kind {kind!r}; choose one of: {', '.join(OUTPUT_KINDS)}.")


def output_size(width, height, kind):
    """The output video's frame size and each panel's: the input's (two panels side by side), scaled down so the
    frame fits VIDEO_OUTPUT_MAX_SIDE, even (H.264 in yuv420p needs even sizes). Returns (frame size, panel)."""
    panels = 2 if kind == SIDE_BY_SIDE else 1
    scale = min(1.0, VIDEO_OUTPUT_MAX_SIDE / max(width * panels, height))
    panel = (max(2, int(width * scale) // 2 * 2), max(2, int(height * scale) // 2 * 2))
    return (panel[0] * panels, panel[1]), panel


def default_background(segmenter):
    """The virtual background when none is given: the model's shown class (its card's) over a blurred frame."""
    card = segmenter.card
    return VirtualBackground(class_index_of(segmenter.classes, card.shown_class, card.shown_class))


def describe_background(virtual, classes):
    """The note on a virtual background video: what is kept and what is behind it."""
    behind = ("a plain colour rgb({}, {}, {})".format(*virtual.color) if virtual.background == PLAIN
              else "a blurred copy of the frame")
    return f"virtual background: the class {classes[virtual.class_index]!r} kept ({virtual.edge} edge) over {behind}"


def draw(frame, labels, palette, kind, panel, opacity, probs=None, virtual=None):
    """One output frame: `frame` and its `labels` at the panel size, as `kind` says (a virtual background also
    needs the frame's `probs` on the model's grid and the `virtual` VirtualBackground)."""
    small_labels = resize_mask(labels, panel)
    if kind == VIRTUAL_BACKGROUND:
        return virtual.draw(resize_image(frame, panel), small_labels, probs)
    colours = colorize(small_labels, palette)
    if kind == MASK:
        return colours
    small = resize_image(frame, panel)
    if kind == OVERLAY:
        return overlay(small, colours, opacity)
    return np.concatenate([small, colours], axis=1)


def notes_for(info, panel):
    """What the user should know about the output."""
    notes = []
    if info.has_audio:
        notes.append("the audio track is dropped (the output has video only)")
    if info.rotation:
        notes.append(f"turned {info.rotation}° as the phone recorded it")
    if info.variable_rate:
        notes.append(f"variable frame rate: every frame is kept and the output plays at the average "
                     f"{float(info.fps):.2f} frames/s (timing within a second may differ)")
    if info.truncated:
        announced = f" of the {info.announced} its header announces" if info.announced > info.frames else ""
        notes.append(f"the file is damaged or truncated: the {info.frames} frames{announced} before the damage are "
                     "segmented")
    if panel != (info.width, info.height):
        notes.append(f"video frames shown at {panel[0]}×{panel[1]} (even size for H.264); the masks are "
                     f"{info.width}×{info.height}")
    return notes


class FrameSink:
    """Draws, encodes and archives frames on its own thread, in order: the model's next batch runs meanwhile."""

    def __init__(self, folder, stem, segmenter, kind, opacity, fps, virtual=None):
        self.folder, self.stem, self.segmenter = Path(folder), stem, segmenter
        self.kind, self.opacity, self.fps, self.virtual = kind, opacity, fps, virtual
        self.video_path = str(self.folder / f"{stem}_segmented.mp4")
        self.masks_path = str(self.folder / f"{stem}_masks.zip")
        self.archive = zipfile.ZipFile(self.masks_path, "w", zipfile.ZIP_STORED)  # PNGs are compressed already
        self.writer = self.size = self.panel = None
        self.shares = []
        self.seconds = {"draw": 0.0, "encode": 0.0}
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="video-sink")
        self.pending = None

    def submit(self, frames, predictions, first_index):
        if self.pending is not None:
            self.pending.result()  # at most one batch waits: memory stays bounded
        probs = [p.probs for p in predictions] if self.kind == VIRTUAL_BACKGROUND else [None] * len(predictions)
        self.pending = self.executor.submit(self._write, frames, [p.labels for p in predictions], probs,
                                            first_index)

    def _write(self, frames, labels_list, probs_list, first_index):
        classes = len(self.segmenter.classes)
        for offset, (frame, labels, probs) in enumerate(zip(frames, labels_list, probs_list)):
            started = time.perf_counter()
            if self.writer is None:
                height, width = frame.shape[:2]
                self.size, self.panel = output_size(width, height, self.kind)
                self.writer = Mp4Writer(self.video_path, self.size, self.fps)
            if frame.shape[:2] != labels.shape:
                raise InputError("the video's frame size changes part-way; only videos of one frame size are "
                                 "accepted")
            drawn = draw(frame, labels, self.segmenter.palette, self.kind, self.panel, self.opacity, probs,
                         self.virtual)
            counts = np.bincount(labels.reshape(-1), minlength=classes)[:classes]
            self.shares.append(counts / max(labels.size, 1))
            encoding = time.perf_counter()
            self.writer.write(drawn)
            self.archive.writestr(f"masks/frame_{first_index + offset:06d}.png", png_bytes(labels))
            done = time.perf_counter()
            self.seconds["draw"] += encoding - started
            self.seconds["encode"] += done - encoding

    def close(self, info):
        try:
            if self.pending is not None:
                self.pending.result()
        finally:
            self.executor.shutdown(wait=True)
            if self.writer is not None:
                started = time.perf_counter()
                self.writer.close()
                self.seconds["encode"] += time.perf_counter() - started
            self.archive.writestr("classes.json", json.dumps({
                "classes": dict(enumerate(self.segmenter.classes)), "fps": float(info.fps),
                "frames": len(self.shares), "size": [info.width, info.height],
                "about": "masks/frame_NNNNNN.png: one per video frame, pixel value = class index"}, indent=1))
            self.archive.close()


def prefetched_batches(frames, size, decode_seconds, depth=2):
    """Lists of up to `size` frames from the iterator `frames`, decoded ahead on a thread (FFmpeg releases the
    GIL, so decoding overlaps the model). Time spent decoding is added to decode_seconds[0]; an exception while
    decoding is raised here, in order."""
    ready = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce():
        try:
            chunk, started = [], time.perf_counter()
            for frame in frames:
                chunk.append(frame)
                if len(chunk) == size:
                    decode_seconds[0] += time.perf_counter() - started
                    ready.put(chunk)
                    if stop.is_set():
                        return
                    chunk, started = [], time.perf_counter()
            decode_seconds[0] += time.perf_counter() - started
            ready.put(chunk)
            ready.put(None)
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            ready.put(error)

    thread = threading.Thread(target=produce, name="video-decode", daemon=True)
    thread.start()
    try:
        while (item := ready.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            if item:
                yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            try:
                ready.get(timeout=0.1)
            except queue.Empty:
                pass


def segment_video(path, segmenter, folder, kind=OVERLAY, opacity=0.5, progress=None, virtual=None):
    """Segment every frame of the video at `path` with `segmenter`; output files go into `folder`.
    `progress(done, total)` is called after each batch (total from the header: an estimate for some formats).
    `virtual`: the VirtualBackground the kind "virtual background" draws (None: `default_background`).
    Returns a VideoResult; raises InputError for bad input (checked from the header before decoding)."""
    require_kind(kind)
    if kind == VIRTUAL_BACKGROUND and virtual is None:
        virtual = default_background(segmenter)
    started = time.perf_counter()
    info = probe_video(path)
    total = info.frames or max(1, round(info.seconds * float(info.fps)))
    sink = FrameSink(folder, Path(path).stem[:60] or "video", segmenter, kind, opacity, info.fps, virtual)
    decode_seconds, model_seconds, done = [0.0], 0.0, 0
    try:
        for chunk in prefetched_batches(decode_frames(path, info), BATCH_SIZE, decode_seconds):
            predicting = time.perf_counter()
            predictions = segmenter.predict_batch(chunk)
            model_seconds += time.perf_counter() - predicting
            sink.submit(chunk, predictions, done)
            done += len(chunk)
            if progress is not None:
                progress(done, max(total, done))
    finally:
        sink.close(info)
    seconds = {"decode": decode_seconds[0], "model": model_seconds, **sink.seconds,
               "total": time.perf_counter() - started}
    notes = notes_for(info, sink.panel)
    if kind == VIRTUAL_BACKGROUND:
        notes.insert(0, describe_background(virtual, segmenter.classes))
    return VideoResult(sink.video_path, sink.masks_path, list(segmenter.classes), np.asarray(sink.shares),
                       float(info.fps), done, (info.width, info.height), sink.size, kind, seconds, notes)
