"""Draw examples/synthetic_membranes.png: an EM-like picture of cells (pale, grainy interiors) separated by
dark wavy membranes, for trying the membranes model. Made from random numbers only, so it is ours to
redistribute (MIT, like the project).

    python examples/make_synthetic_membranes.py
"""

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

SIZE = 512
CELLS = 60
MEMBRANE_WIDTH = 3.0  # px, where the two nearest cell centres are about equally far
SEED = 2012


def smooth_noise(rng, size, scale, blur):
    """Smooth random field in [-1, 1]: coarse Gaussian noise, upsampled and blurred."""
    coarse = rng.normal(size=(size // scale, size // scale)).astype(np.float32)
    image = Image.fromarray(((coarse - coarse.min()) / np.ptp(coarse) * 255).astype(np.uint8))
    image = image.resize((size, size), Image.BICUBIC).filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(image, np.float32) / 127.5 - 1.0


def draw(seed=SEED):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, SIZE, size=(CELLS, 2))
    y, x = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    y = y + 12 * smooth_noise(rng, SIZE, 32, 8)  # wavy membranes
    x = x + 12 * smooth_noise(rng, SIZE, 32, 8)
    distances = np.sqrt((y[..., None] - centres[:, 0]) ** 2 + (x[..., None] - centres[:, 1]) ** 2)
    order = np.argsort(distances, axis=-1)[..., :2]
    d1, d2 = (np.take_along_axis(distances, order[..., i: i + 1], -1)[..., 0] for i in (0, 1))
    spacing = np.linalg.norm(centres[order[..., 0]] - centres[order[..., 1]], axis=-1)
    to_border = (d2**2 - d1**2) / (2 * spacing)  # distance to the bisector of the two nearest centres
    membrane = np.clip(1.0 - to_border / MEMBRANE_WIDTH, 0.0, 1.0)
    texture = 0.5 * smooth_noise(rng, SIZE, 4, 1) + 0.3 * smooth_noise(rng, SIZE, 16, 3)
    intensity = 165 + 25 * texture - 110 * membrane + rng.normal(0, 10, size=(SIZE, SIZE))
    picture = Image.fromarray(np.clip(intensity, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(0.8))
    return picture


if __name__ == "__main__":
    draw().save(Path(__file__).resolve().parent / "synthetic_membranes.png")
