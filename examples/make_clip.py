"""Make `examples/live_clip.mp4`, the Live tab's example video, from two example photos (CC0, see SOURCES.md):
a slow pan and zoom over Chelsea the cat, a cross-fade, then a zoom into the coffee cup (no pet), 5 s at 20
frames/s, 640x360, H.264 yuv420p with faststart. Deterministic: the same file every run.

    python examples/make_clip.py [--out examples/live_clip.mp4]
"""

import argparse
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
SIZE = (640, 360)
FPS = 20
CAT_FRAMES, FADE_FRAMES, CUP_FRAMES = 50, 20, 30


def view(image, center, zoom):
    """The SIZE-shaped window of `image` around `center` (fractions of width, height), `zoom` times closer than
    the widest window of that shape."""
    width, height = image.size
    scale = min(width / SIZE[0], height / SIZE[1]) / zoom
    box_w, box_h = SIZE[0] * scale, SIZE[1] * scale
    left = min(max(center[0] * width - box_w / 2, 0), width - box_w)
    top = min(max(center[1] * height - box_h / 2, 0), height - box_h)
    return np.asarray(image.resize(SIZE, Image.BICUBIC, box=(left, top, left + box_w, top + box_h)))


def frames():
    cat = Image.open(HERE / "chelsea_cat.png").convert("RGB")
    cup = Image.open(HERE / "coffee_cup.png").convert("RGB")
    for index in range(CAT_FRAMES):  # pan from the left edge to the cat's face, zooming in
        t = index / (CAT_FRAMES - 1)
        yield view(cat, (0.3 + 0.25 * t, 0.5 - 0.1 * t), 1.0 + 0.5 * t)
    last_cat, first_cup = view(cat, (0.55, 0.4), 1.5), view(cup, (0.5, 0.5), 1.0)
    for index in range(FADE_FRAMES):
        t = (index + 1) / (FADE_FRAMES + 1)
        yield (last_cat * (1 - t) + first_cup * t).round().astype(np.uint8)
    for index in range(CUP_FRAMES):  # zoom into the cup
        yield view(cup, (0.5, 0.5), 1.0 + 0.6 * index / (CUP_FRAMES - 1))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(HERE / "live_clip.mp4"))
    args = parser.parse_args()
    with av.open(args.out, "w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width, stream.height = SIZE
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "slow", "crf": "26"}
        for index, array in enumerate(frames()):
            frame = av.VideoFrame.from_ndarray(array, format="rgb24")
            frame.pts = index
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    print(f"{args.out}: {CAT_FRAMES + FADE_FRAMES + CUP_FRAMES} frames, {Path(args.out).stat().st_size} bytes")


if __name__ == "__main__":
    main()
