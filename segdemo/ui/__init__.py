"""The Gradio app: `build_demo()` assembles one module per tab."""

import logging

import gradio as gr

from segdemo.inference import describe_device, enable_bf16_inference, enable_gpu_memory_growth
from segdemo.registry import bundled_models, default_model_name, get_segmenter
from segdemo.ui.about_tab import build_about_tab
from segdemo.ui.finetune_tab import build_finetune_tab
from segdemo.ui.segment_tab import build_segment_tab

TITLE = "segdemo: U-Net semantic segmentation"
INTRO = ("Pick a model (pets, street scenes or cell membranes) and drop an image: the U-Net labels every pixel "
         "with a class. Outputs: the class mask, the probability map of one class, and an overlay. In "
         "**Fine-tune**, upload a few labelled images of your own and adapt a model to them, for this session "
         "only.")
GRADIO_CACHE_CLEANUP = (3600, 7200)  # every hour, delete Gradio's cached uploads/outputs older than 2 hours
QUEUE_SIZE = 64  # requests waiting beyond this are refused with a message instead of piling up

log = logging.getLogger(__name__)


def build_demo():
    """The whole app as a `gr.Blocks`, queued."""
    enable_gpu_memory_growth()
    enable_bf16_inference()  # before any model is loaded: it applies to graphs built afterwards
    log.info("segdemo starting on %s", describe_device())
    get_segmenter(default_model_name(bundled_models()))  # loaded and warmed before the first request
    with gr.Blocks(title=TITLE, delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        gr.Markdown(f"# {TITLE}\n{INTRO}")
        with gr.Tab("Segment"):
            model_choice = build_segment_tab(demo)
        with gr.Tab("Fine-tune"):
            build_finetune_tab(model_choice)
        with gr.Tab("About"):
            build_about_tab()
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=2)
    return demo
