"""The Gradio app: `build_demo()` assembles one module per tab and the teach loop; `launch(demo)` serves it
with the upload limit and the MCP server. The page is served before TensorFlow is imported: the default model
loads in the background (startup.STARTUP) and the page says "loading the model…" until it is ready."""

import logging
import threading

import gradio as gr

from segdemo.app.showcase import page_text
from segdemo.app.startup import STARTUP, after_first_answer
from segdemo.config import AppConfig
from segdemo.models.cards import ModelCard
from segdemo.serving.registry import configure, current_config, default_model_name, served_models
from segdemo.ui.about_tab import build_about_tab
from segdemo.ui.batch_tab import build_batch_tab
from segdemo.ui.compare_tab import build_compare_tab
from segdemo.ui.finetune_tab import build_finetune_tab
from segdemo.ui.gradio_compat import spread_mcp_outputs
from segdemo.ui.handlers import document_handlers
from segdemo.ui.live_tab import build_live_tab
from segdemo.ui.segment_tab import build_segment_tab
from segdemo.ui.teach import build_correction_panel, build_training_set_panel, wire_teach_loop

GRADIO_CACHE_CLEANUP = (3600, 7200)  # every hour, delete Gradio's cached uploads/outputs older than 2 hours
QUEUE_SIZE = 64  # requests waiting beyond this are refused with a message instead of piling up
# Callable endpoints kept out of the API page and the MCP tools: a Stop button's event, a download an assistant
# has no use for, the Hub push (it takes a token: no tool takes credentials) and a model upload (code from
# a file an assistant would have to bring; the page and scripts can upload).
NOT_TOOLS = ("stop_finetune", "download_training_set", "push_to_hub", "upload_model")

log = logging.getLogger(__name__)


def startup_status():
    """Once the default model answers: the device lines of the Segment and About tabs."""
    device = STARTUP.device()
    if device is None:
        failed = f"Loading the default model failed ({type(STARTUP.error).__name__}); it is retried on first use."
        return failed, failed
    return f"Device: {device}", f"Running on **{device}**."


def hide_from_tools(demo, api_names):
    """Keep these endpoints callable by clients but out of the API page and the MCP tool list."""
    for function in demo.fns.values():
        if function.api_name in api_names:
            function.api_visibility = "undocumented"


def build_demo(config=None):
    """The whole app as a `gr.Blocks`, queued, built without importing TensorFlow, serving what `config` (an
    `AppConfig`; None: the environment's) says. Requests wait for the default model, which `launch` loads in
    the background once the page is served."""
    config = configure(config or AppConfig.from_environment())
    models = served_models()
    STARTUP.expect(default_model_name(models))
    served = {name: ModelCard.load(path) for name, path in models.items()}
    document_handlers(served)
    words = page_text(config, served)
    with gr.Blocks(title=words.title, delete_cache=GRADIO_CACHE_CLEANUP) as demo:
        gr.Markdown(words.heading, elem_id="page-heading")
        with gr.Tab("Segment"):
            segment_tab = build_segment_tab()
            correction = build_correction_panel()
        with gr.Tab("Batch"):
            build_batch_tab()
        with gr.Tab("Compare"):
            build_compare_tab()
        with gr.Tab("Live"):
            build_live_tab()
        with gr.Tab("Fine-tune") as finetune_tab_header:
            finetune_tab = build_finetune_tab(segment_tab.model_choice)
            training_set = build_training_set_panel()  # the teach loop's section, after the result
        with gr.Tab("About"):
            about_device = build_about_tab(segment_tab.model_choice, words.about)
        # after the tabs: its API-only endpoint would split them
        wire_teach_loop(demo, segment_tab, correction, finetune_tab, training_set)
        # opening the Fine-tune tab starts the spare worker now (else it waits for the first answer)
        finetune_tab_header.select(STARTUP.first_answer, None, None, api_visibility="private", queue=False,
                                   show_progress="hidden")
        demo.load(startup_status, None, [segment_tab.info, about_device], api_visibility="private",
                  concurrency_limit=None, show_progress="hidden")
    hide_from_tools(demo, NOT_TOOLS)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=2)
    return demo


def launch(demo, **options):
    """Serve the app: uploads bounded to the configuration's `max_upload_mb` per file (one file may be as large as
    the largest ZIP the fine-tune and the batch unpack; larger uploads are refused while they stream in, before
    they fill the disk), and an MCP server at /gradio_api/mcp/ whose
    tools are the documented endpoints (segment, segment_batch, compare, ...). TensorFlow and the default
    model load in the background once the page is up."""
    spread_mcp_outputs()  # each image output an MCP image (see segdemo/ui/gradio_compat.py)
    max_file_size = current_config().max_upload_mb * 1_000_000
    demo.launch(mcp_server=True, max_file_size=max_file_size, prevent_thread_lock=True, **options)
    STARTUP.start()
    threading.Thread(target=prestart_finetune_worker, name="spare-worker", daemon=True).start()
    demo.block_thread()


def prestart_finetune_worker():
    """A fine-tune worker with TensorFlow imported, so a Train's first figures come seconds later. Started after
    the first answer (or when the Fine-tune tab opens): on 2 cores, a second TensorFlow import beside the
    model's load and first request would delay the first answered segment."""

    def prestart():
        from segdemo.finetune.worker import keep_local_worker

        if keep_local_worker():  # on the embedded queue (SEGDEMO_QUEUE unset); with Redis they run elsewhere
            log.info("fine-tune worker started (embedded queue)")

    after_first_answer(STARTUP, prestart)
