"""The app plus trivial endpoints for `bench/api_speed.py`: the same server answers `segment` and the
floor it is compared with. Started by that script (`python bench/api_server.py` on GRADIO_SERVER_PORT).

- /echo: takes an uploaded image, returns three fixed 500x375 PNGs (what `segment` returns for that input)
- /echo_tiny: the same with three 1x1 PNGs (is the floor in the payload?)
- /echo_unqueued: /echo with `queue=False` (is the floor in the queue and its event stream?)
"""

import sys
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from app import demo  # noqa: E402  (builds the real app)
from segdemo.ui import launch  # noqa: E402


def fixed_pngs(size, folder):
    """Three PNGs like segment's outputs: a class-colour mask, a grey probability map, a photo overlay."""
    cat = np.asarray(Image.open(ROOT / "examples" / "chelsea_cat.png").convert("RGB").resize(size))
    mask = np.where(cat[..., :1] > 120, [230, 25, 75], [0, 0, 0]).astype(np.uint8)
    arrays = {"mask": mask, "probability": cat[..., 0], "overlay": ((cat + mask) // 2).astype(np.uint8)}
    paths = []
    for name, array in arrays.items():
        path = Path(folder) / f"{name}_{size[0]}x{size[1]}.png"
        Image.fromarray(array).save(path, compress_level=1)
        paths.append(str(path))
    return tuple(paths)


FOLDER = tempfile.mkdtemp(prefix="segdemo-echo-")
FULL, TINY = fixed_pngs((500, 375), FOLDER), fixed_pngs((1, 1), FOLDER)

with demo:
    with gr.Row(visible=False):
        upload = gr.Image(type="filepath")
        outputs = [gr.Image(format="png") for _ in range(3)]
        for api_name, pngs, queue in [("echo", FULL, True), ("echo_tiny", TINY, True), ("echo_unqueued", FULL, False)]:
            gr.Button(api_name).click(lambda image, pngs=pngs: pngs, upload, outputs, api_name=api_name, queue=queue)

if __name__ == "__main__":
    launch(demo)
