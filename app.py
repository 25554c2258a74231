"""segdemo's entry point (also the Hugging Face Spaces app file):

    python app.py [--model PATH ...] [--only] [--title TITLE] [--description FILE.md]

serves the bundled models, and each model `--model` names: a .keras, .h5 or SavedModel file with the card
`python -m segdemo.card` wrote beside it, or a Hub repository `hf://owner/name` (segdemo's format, or Keras's
own layout followed by segdemo.card's options: "hf://owner/name --classes a b --input-scale 0..1"); also
SEGDEMO_MODELS=a.keras,hf://owner/name. `--only` hides the bundled ones: with one model, the page is that model's
showcase (its card's title, description, examples and colours). `--title` and `--description` (a Markdown file or
the text; also SEGDEMO_TITLE, SEGDEMO_DESCRIPTION, e.g. a Space's variables) state the page's heading and text.
The page is served as soon as Gradio is up. Before importing Gradio, the app starts a second process that loads
the default model and answers its first requests, while the app loads its own (SEGDEMO_MODEL_PROCESS=off: no
such process; requests wait for the app's own)."""

import argparse
import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the logs

from segdemo.app.startup import STARTUP  # noqa: E402
from segdemo.card.cli import local_model_path  # noqa: E402
from segdemo.card.showcase import check_title, read_description  # noqa: E402
from segdemo.config import AppConfig  # noqa: E402
from segdemo.jobqueue.broker import check_queue  # noqa: E402
from segdemo.serving.registry import check_listed_models  # noqa: E402


def app_config(argv=None):
    """The configuration the app serves: the environment's, with `--model` and `--only` from the command line.
    Each model file is checked (and an hf:// one fetched and described) before the page is built."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", action="append", default=[], help="a model file to serve (repeatable)")
    parser.add_argument("--only", action="store_true", help="serve only the --model / SEGDEMO_MODELS models")
    parser.add_argument("--title", default=None, help="the page's heading and browser title (SEGDEMO_TITLE)")
    parser.add_argument("--description", default=None, metavar="FILE.md",
                        help="the Markdown under the heading: a file or the text (SEGDEMO_DESCRIPTION)")
    args, _ = parser.parse_known_args(argv)
    config = AppConfig.from_environment()
    listed = [*config.model_files, *args.model]
    title, description = (config.title if args.title is None else args.title), (
        config.description if args.description is None else args.description)
    try:
        title = check_title(title, "--title (SEGDEMO_TITLE)") if title else ""
        description = read_description(description, "--description (SEGDEMO_DESCRIPTION)")
        listed = [local_model_path(item) for item in listed]
        check_listed_models(listed)
        check_queue(config.queue_url)  # SEGDEMO_QUEUE: the Redis the fine-tunes go through answers
    except Exception as error:  # noqa: BLE001 - a model that cannot be served: say why and stop
        parser.exit(2, f"app.py: {error}\n")
    if (args.only or config.only) and not listed:
        parser.exit(2, "app.py: --only needs a --model (or SEGDEMO_MODELS)\n")
    return config.replace(model_files=tuple(map(str, listed)), only=args.only or config.only, title=title,
                          description=description)


logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
config = app_config()
if config.model_process and __name__ == "__main__":
    STARTUP.start_model_process(config)  # the default model loads on the other core while Gradio is imported

from segdemo.ui import build_demo, launch  # noqa: E402

demo = build_demo(config)

if __name__ == "__main__":
    launch(demo)
