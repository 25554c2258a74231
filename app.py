"""segdemo's entry point (also the Hugging Face Spaces app file): `python app.py`."""

import logging
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of the logs

from segdemo.ui import build_demo  # noqa: E402

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

demo = build_demo()

if __name__ == "__main__":
    from segdemo.finetune_worker import SPARE_WORKERS

    SPARE_WORKERS.prestart()  # a fine-tune worker with TensorFlow already imported: first figures sooner
    demo.launch()
