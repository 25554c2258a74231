"""segdemo's entry point (also the Hugging Face Spaces app file): `python app.py`. The page is served as soon
as Gradio is up; TensorFlow and the default model load in the background."""

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the logs

from segdemo.ui import build_demo, launch  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

demo = build_demo()

if __name__ == "__main__":
    launch(demo)
