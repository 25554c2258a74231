"""Reading and writing video files with PyAV (FFmpeg): the container's header checked against the limits before
anything is decoded, frames decoded as RGB arrays with the phone's rotation applied, and frames encoded as an
H.264 mp4 that plays in Chrome and Safari (yuv420p, even dimensions, the index at the front: faststart)."""

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from segdemo.errors import InputError
from segdemo.limits import MAX_VIDEO_BYTES, MAX_VIDEO_FRAMES, MAX_VIDEO_PIXELS, MAX_VIDEO_SECONDS, MAX_VIDEO_SIDE

VIDEO_FORMATS = "MP4, WebM or MOV (H.264, H.265, VP8, VP9, AV1 or MPEG-4 video)"
ENCODER = "libx264"
ENCODER_OPTIONS = {"preset": "veryfast", "crf": "23"}  # x264's speed/size trade-off; crf 23 is its default quality
VARIABLE_RATE_TOLERANCE = 0.02  # the average frame rate this far from the nominal one: a variable frame rate


def accepted():
    return (f"accepted: {VIDEO_FORMATS}, up to {MAX_VIDEO_SECONDS} s, {MAX_VIDEO_FRAMES} frames, "
            f"{MAX_VIDEO_BYTES // 1_000_000} MB and {MAX_VIDEO_SIDE} px on the long side (Full HD)")


def av_module():
    import av  # imported on first use: the page and the tests that never touch video do not load FFmpeg

    return av


@dataclass
class VideoInfo:
    """What a video's header says: its frames as shown (rotation applied), their rate, and how many."""

    name: str
    width: int  # as displayed: a phone's portrait video is taller than wide
    height: int
    fps: Fraction  # the average frame rate (frames / duration)
    frames: int  # from the header (0 when the container does not say: counted while decoding)
    seconds: float
    rotation: int  # clockwise degrees the frames are turned to be shown upright (0, 90, 180, 270)
    codec: str
    has_audio: bool
    variable_rate: bool
    truncated: bool = False  # decoding stopped early: damaged data, or fewer frames than the header announced
    announced: int = 0  # the header's frame count, once decoded (`frames` is then the count decoded)


def upright(array, angle):
    """The frame turned by FFmpeg's display-matrix `angle` (counterclockwise degrees): as a player shows it."""
    turns = round(angle / 90) % 4
    return np.ascontiguousarray(np.rot90(array, k=turns)) if turns else array


def open_container(path):
    av = av_module()
    try:
        return av.open(str(path), metadata_errors="ignore")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as error:
        raise InputError(f"{Path(path).name} is not a readable video (damaged, truncated or another kind of "
                         f"file: {type(error).__name__}); {accepted()}") from None


def probe_video(path):
    """Read a video's header and check it against the limits (size, duration, frames, resolution) before anything
    is decoded. Returns VideoInfo; raises InputError with what was wrong and what is accepted."""
    path = Path(path)
    name = path.name
    if not path.is_file():
        raise InputError(f"No video given: upload a video file ({accepted()}).")
    size = path.stat().st_size
    if size > MAX_VIDEO_BYTES:
        raise InputError(f"{name} is {size / 1e6:.0f} MB; {accepted()}")
    if size == 0:
        raise InputError(f"{name} is empty; {accepted()}")
    with open_container(path) as container:
        if not container.streams.video:
            raise InputError(f"{name} has no video frames (zero frames, audio only, or not a video); {accepted()}")
        stream = container.streams.video[0]
        context = stream.codec_context
        width, height = context.width, context.height
        if not width or not height:
            raise InputError(f"{name}: its video track has no frame size (damaged header); {accepted()}")
        if max(width, height) > MAX_VIDEO_SIDE or width * height > MAX_VIDEO_PIXELS:
            raise InputError(f"{name} is {width}x{height} (4K or larger); {accepted()}. Scale it down first, "
                             "e.g. ffmpeg -i in.mp4 -vf scale=-2:1080 out.mp4")
        seconds = float(stream.duration * stream.time_base) if stream.duration and stream.time_base else \
            (container.duration or 0) / 1e6
        nominal = stream.guessed_rate or stream.base_rate
        fps = stream.average_rate or nominal
        if not fps or fps <= 0:
            raise InputError(f"{name}: its video track states no frame rate (damaged header); {accepted()}")
        frames = stream.frames or 0
        if seconds > MAX_VIDEO_SECONDS + 0.5:
            raise InputError(f"{name} lasts {seconds:.0f} s; {accepted()}. Cut it shorter first.")
        if max(frames, round(seconds * float(fps))) > MAX_VIDEO_FRAMES + 1:
            raise InputError(f"{name} has {max(frames, round(seconds * float(fps)))} frames; {accepted()}")
        variable = bool(nominal and abs(float(fps) / float(nominal) - 1) > VARIABLE_RATE_TOLERANCE)
        return VideoInfo(name, width, height, Fraction(fps).limit_denominator(100_000), frames, seconds, 0,
                         context.name, bool(container.streams.audio), variable)


def decode_frames(path, info):
    """Yield each frame of the video as an upright HxWx3 uint8 RGB array. Sets `info.rotation` from the first
    frame and `info.frames` to the count decoded. Stops with InputError past MAX_VIDEO_FRAMES; a file damaged
    part-way ends the frames there (`info.truncated` says so)."""
    av = av_module()
    count = 0
    info.truncated = False
    with open_container(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame and slice threads: decoding is a small share of the time
        try:
            for frame in container.decode(stream):
                angle = frame.rotation or 0  # counterclockwise, from the display matrix (phones write one)
                if count == 0:
                    info.rotation = round(-angle) % 360
                    if info.rotation in (90, 270):
                        info.width, info.height = info.height, info.width
                if count >= MAX_VIDEO_FRAMES:
                    raise InputError(f"{info.name} has more than {MAX_VIDEO_FRAMES} frames; {accepted()}")
                count += 1
                yield upright(frame.to_ndarray(format="rgb24"), angle)
        except av.error.FFmpegError:
            info.truncated = True
    if count == 0:
        raise InputError(f"{info.name}: no frame could be decoded (zero frames, or damaged); {accepted()}")
    info.truncated = info.truncated or bool(info.frames and count < info.frames)
    info.announced, info.frames = info.frames, count


class Mp4Writer:
    """Frames (HxWx3 uint8 RGB of one size, even) in -> an H.264 yuv420p mp4 with its index at the front, at a
    constant `fps`; no audio track."""

    def __init__(self, path, size, fps):
        av = av_module()
        self.path = str(path)
        self.container = av.open(self.path, "w", format="mp4", options={"movflags": "+faststart"})
        self.stream = self.container.add_stream(ENCODER, rate=Fraction(fps))
        self.stream.width, self.stream.height = size
        self.stream.pix_fmt = "yuv420p"
        self.stream.options = dict(ENCODER_OPTIONS)
        self.frames = 0

    def write(self, array):
        av = av_module()
        frame = av.VideoFrame.from_ndarray(array, format="rgb24")
        frame.pts = self.frames
        self.frames += 1
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self):
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
