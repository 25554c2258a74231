"""What the tests and the benchmarks share: the app launched as a real server on a free loopback port, and
small generated data (images, image/mask pairs, encoded files, ZIPs). Imported as `tests.helpers`."""

import io
import os
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT = 180
EXAMPLES = ROOT / "examples"


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_app(log_path, script="app.py", **env):
    """Start `python <script>` (the app) on a free loopback port, offline, with extra environment variables.
    Returns (process, URL, seconds until the page answered)."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port),
           "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", **env}
    started = time.perf_counter()
    with open(log_path, "w") as log_file:
        process = subprocess.Popen([sys.executable, script], cwd=ROOT, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    while time.perf_counter() - started < SERVER_START_TIMEOUT:
        if process.poll() is not None:
            raise RuntimeError(f"app exited early:\n{Path(log_path).read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url, time.perf_counter() - started
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"app did not start in {SERVER_START_TIMEOUT}s:\n{Path(log_path).read_text()[-3000:]}")


def stop_app(process, log_path=None):
    """Stop a started app (killed after 20 s); print the end of its log for the test report."""
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    if log_path is not None:
        print(Path(log_path).read_text()[-2000:])


def blocky_image(rng, height=96, width=128, block=16):
    """An RGB image of flat random-colour blocks (interpolation only changes block edges)."""
    small = rng.integers(0, 256, (height // block + 1, width // block + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, block, 0), block, 1)[:height, :width]


def square_pairs(count, size, rng):
    """Images with a bright square on a dark noisy background; the mask marks the square (class 1)."""
    images = rng.integers(0, 60, (count, size, size, 3)).astype(np.uint8)
    masks = np.zeros((count, size, size), np.uint8)
    for index in range(count):
        side = rng.integers(size // 4, size // 2)
        top, left = rng.integers(0, size - side, 2)
        images[index, top: top + side, left: left + side] = rng.integers(180, 255, 3)
        masks[index, top: top + side, left: left + side] = 1
    return images, masks


def add_square_pairs(archive, count, seed):
    """`count` square pairs (`square_pairs` at 64 px) written into an open ZipFile as images/pN.jpg and
    masks/pN.png in the pets base's class indices (square = pet 0, the rest = background 1). Returns
    (images, masks)."""
    images, masks = square_pairs(count, 64, np.random.default_rng(seed))
    for index, (image, mask) in enumerate(zip(images, masks)):
        archive.writestr(f"images/p{index}.jpg", encoded(image, "JPEG"))
        archive.writestr(f"masks/p{index}.png", encoded((1 - mask).astype(np.uint8)))
    return images, masks


def write_dataset(root, images, masks):
    """images/pairN.jpg + masks/pairN_mask.png (black/white) under `root`."""
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for index, (image, mask) in enumerate(zip(images, masks)):
        Image.fromarray(image).save(root / "images" / f"pair{index}.jpg", quality=95)
        Image.fromarray(mask * 255).save(root / "masks" / f"pair{index}_mask.png")  # binary 0/255


def encoded(array, fmt="PNG"):
    """An array as the bytes of an image file."""
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, fmt)
    return buffer.getvalue()


def batch_zip(path):
    """A ZIP with three good images (one in a folder, one PNG with alpha) and two bad files."""
    cat = Image.open(EXAMPLES / "chelsea_cat.png").convert("RGB")
    cup = np.asarray(Image.open(EXAMPLES / "coffee_cup.png"))
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("cat.jpg", encoded(np.asarray(cat), "JPEG"))
        archive.writestr("more/cup.png", encoded(cup))
        archive.writestr("small.png", encoded(np.asarray(cat.resize((50, 40)).convert("RGBA"))))
        archive.writestr("broken.jpg", b"not a jpeg at all")
        archive.writestr("notes.txt", b"hello")
    return str(path)


def write_y4m(path, frames, fps=10):
    """A raw YUV4MPEG2 (4:2:0) video of RGB frames (HxWx3 uint8, even sizes): what Chromium's fake camera plays
    (--use-file-for-fake-video-capture), looping. Full-range BT.601, as the C420jpeg tag says."""
    height, width = frames[0].shape[:2]
    with open(path, "wb") as handle:
        handle.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for frame in frames:
            rgb = frame.astype(np.float32)
            y = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
            u = 128 - 0.168736 * rgb[..., 0] - 0.331264 * rgb[..., 1] + 0.5 * rgb[..., 2]
            v = 128 + 0.5 * rgb[..., 0] - 0.418688 * rgb[..., 1] - 0.081312 * rgb[..., 2]
            handle.write(b"FRAME\n")
            for plane, step in ((y, 1), (u, 2), (v, 2)):
                if step == 2:
                    plane = plane.reshape(height // 2, 2, width // 2, 2).mean(axis=(1, 3))
                handle.write(np.clip(plane.round(), 0, 255).astype(np.uint8).tobytes())
    return str(path)
