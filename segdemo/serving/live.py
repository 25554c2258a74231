"""One webcam frame through a model, as fast as it goes: the frame (a JPEG at the camera's resolution) is shrunk
while it is decoded (JPEG draft mode: the decoder skips the detail it would throw away), segmented, optionally
smoothed with the previous frames' probabilities, and drawn (overlay, or a virtual background: one class over a
plain colour or a blurred frame, serving.cutout; and the colour mask). A `LiveStream` holds one
stream's state: its smoothing, its frame counts and rates. No Gradio: the Live tab calls `live_frame`."""

import base64
import binascii
import io
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from segdemo.compat import LazyModule
from segdemo.data.images import display_size, resize_image
from segdemo.errors import InputError
from segdemo.limits import LIVE_MAX_SIDE, LIVE_SMOOTHING
from segdemo.serving.drawing import colorize, overlay
from segdemo.serving.png import png_bytes

tf = LazyModule("tensorflow")
RATE_WINDOW_S = 3.0  # frames/s and latency are measured over the last seconds of the stream
NEW_STREAM_GAP_S = 10.0  # a frame this long after the previous one starts a new count (a new recording)
MASK_FILES = 4  # a stream's mask PNGs are written round-robin into this many files (the page copies each)


@dataclass
class LiveStream:
    """One webcam stream's state: the smoothed probabilities (with the model and size they belong to), how many
    frames it has answered, and when the recent ones arrived and how long they took."""

    model_key: tuple = None  # (model's identity, frame size): a change resets the smoothing
    smoothed: np.ndarray = None  # (h, w, C) probabilities on the model's grid, the running mean
    frames: int = 0
    arrivals: deque = field(default_factory=lambda: deque(maxlen=120))  # (arrival time, server seconds)
    model_ms: deque = field(default_factory=lambda: deque(maxlen=30))

    def record(self, arrived, server_seconds, model_seconds):
        self.frames += 1
        self.arrivals.append((arrived, server_seconds))
        self.model_ms.append(model_seconds * 1000)
        while self.arrivals and arrived - self.arrivals[0][0] > RATE_WINDOW_S:
            self.arrivals.popleft()

    def is_stale(self, now):
        """Whether a frame arriving at `now` starts a new recording (counts start again)."""
        return not self.arrivals or now - self.arrivals[-1][0] > NEW_STREAM_GAP_S

    def rate(self):
        """Frames/s over the window (0 until two frames)."""
        if len(self.arrivals) < 2:
            return 0.0
        span = self.arrivals[-1][0] - self.arrivals[0][0]
        return (len(self.arrivals) - 1) / span if span > 0 else 0.0

    def stats(self):
        """{frames, fps, model_ms, server_ms, latency_ms}. The browser sends the next frame once it has the
        previous answer, so the time between frames is a frame's round trip: camera -> server -> overlay."""
        fps = self.rate()
        server = [seconds for _, seconds in self.arrivals]
        return {"frames": self.frames, "fps": fps,
                "model_ms": float(np.mean(self.model_ms)) if self.model_ms else 0.0,
                "server_ms": 1000 * float(np.mean(server)) if server else 0.0,
                "latency_ms": 1000 / fps if fps else 0.0}


@dataclass
class LiveResult:
    """A frame's outputs and where its time went."""

    frame: np.ndarray  # the shrunk frame (HxWx3 uint8) the outputs are drawn on
    labels: np.ndarray  # (H, W) class indices at that size
    overlay: np.ndarray  # None when a virtual background was drawn instead
    mask: np.ndarray  # colour class mask
    seconds: dict  # decode (incl. shrinking), model, draw
    stats: dict  # the stream's: frames, fps, model_ms, server_ms, latency_ms
    background: np.ndarray = None  # the frame over its virtual background, when one was asked for

    @property
    def view(self):
        """What the live view shows: the virtual background when there is one, else the overlay."""
        return self.overlay if self.background is None else self.background


def frame_bytes(source):
    """The encoded image of a frame given as a data URL, raw bytes or a file path."""
    if isinstance(source, bytes):
        return source
    if isinstance(source, str) and source.startswith("data:"):
        try:
            return base64.b64decode(source.partition(",")[2], validate=False)
        except (binascii.Error, ValueError):
            raise InputError("the camera sent a frame that is not an image") from None
    with open(source, "rb") as handle:
        return handle.read()


def shrink_frame(source, max_side=LIVE_MAX_SIDE):
    """An HxWx3 uint8 RGB frame at most `max_side` on its long side, from a data URL, bytes, a path or an
    array. A JPEG is decoded at the smallest power-of-two reduction that stays at least that large."""
    if isinstance(source, np.ndarray):
        image = source[..., :3] if source.ndim == 3 else np.stack([source] * 3, axis=-1)
        height, width = image.shape[:2]
        return resize_image(image.astype(np.uint8, copy=False), display_size(width, height, max_side))
    if source is None or source == "":
        raise InputError("no camera frame: allow the browser to use the camera, then press record")
    try:
        image = Image.open(io.BytesIO(frame_bytes(source)))
        size = display_size(image.width, image.height, max_side)
        image.draft("RGB", size)  # JPEG only: decode at 1/2, 1/4 or 1/8 scale when that is still >= size
        image = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError):
        raise InputError("the camera sent a frame that could not be decoded") from None
    if image.size != size:
        image = image.resize(size, Image.BILINEAR)
    return np.asarray(image)


def smoothed_labels(stream, prediction, segmenter, smoothing, size):
    """Class indices at `size` (w, h) from the running mean of the probabilities (`smoothing`: the previous
    frames' weight, 0 = this frame only). Resets when the model or the frame size changes."""
    key = (id(segmenter), size)
    if stream.model_key != key or stream.smoothed is None or stream.smoothed.shape != prediction.probs.shape:
        stream.model_key, stream.smoothed = key, prediction.probs
    else:
        stream.smoothed = smoothing * stream.smoothed + (1.0 - smoothing) * prediction.probs
    full = tf.image.resize(stream.smoothed, (size[1], size[0]), method="bilinear")
    return tf.cast(tf.argmax(full, axis=-1), tf.uint8).numpy()


def live_frame(source, segmenter, stream, opacity=0.5, smooth=False, smoothing=LIVE_SMOOTHING, virtual=None):
    """Segment one webcam frame for `stream` (a LiveStream, updated): shrink, predict, smooth when `smooth`,
    draw (the overlay, or with `virtual`, a cutout.VirtualBackground, the frame over it instead, its soft edge
    from the smoothed probabilities when smoothing). Returns a LiveResult."""
    arrived = time.perf_counter()
    frame = shrink_frame(source)
    decoded = time.perf_counter()
    prediction = segmenter.predict(frame)
    predicted = time.perf_counter()
    height, width = frame.shape[:2]
    if smooth:
        labels = smoothed_labels(stream, prediction, segmenter, float(np.clip(smoothing, 0.0, 0.95)),
                                 (width, height))
        probs = stream.smoothed
    else:
        stream.model_key = stream.smoothed = None
        labels, probs = prediction.labels, prediction.probs
    mask = colorize(labels, segmenter.palette)
    blended = overlay(frame, mask, opacity) if virtual is None else None
    background = virtual.draw(frame, labels, probs) if virtual is not None else None
    done = time.perf_counter()
    seconds = {"decode": decoded - arrived, "model": predicted - decoded, "draw": done - predicted}
    stream.record(arrived, done - arrived, seconds["model"])
    return LiveResult(frame, labels, blended, mask, seconds, stream.stats(), background)


def write_mask(result, palette, folder):
    """The frame's class mask as a palette PNG in `folder` (one of MASK_FILES names, round-robin): 2 ms where
    Gradio's own PNG encoding of the colour mask takes 17."""
    path = Path(folder) / f"live_mask_{result.stats['frames'] % MASK_FILES}.png"
    path.write_bytes(png_bytes(result.labels, palette))
    return str(path)


def stats_line(stats, smooth, time_limit):
    """The line under the live view."""
    if not stats["frames"]:
        return "Waiting for the camera…"
    smoothing = f" · smoothing on ({LIVE_SMOOTHING:g} of the previous frames)" if smooth else ""
    return (f"**{stats['fps']:.1f} frames/s** · model {stats['model_ms']:.0f} ms/frame · server "
            f"{stats['server_ms']:.0f} ms/frame · latency ≈ {stats['latency_ms']:.0f} ms · {stats['frames']} frames"
            f"{smoothing} · the stream stops after {time_limit} s (press record again to go on)")
