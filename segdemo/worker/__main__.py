"""A fine-tune worker:

    SEGDEMO_QUEUE=redis://HOST:PORT/DB python -m segdemo.worker

runs the fine-tune jobs the apps on that queue enqueue, one at a time, on this machine (its GPU when TensorFlow
sees one), until Ctrl-C or SIGTERM. Run several, on as many machines as reach Redis, to run several jobs at once.
It shares no folder with the apps: a job's inputs and results travel through Redis. It imports TensorFlow and
loads the bundled base models before it takes a job, so a job's first figures come seconds after it is taken.
The app starts one itself, on its embedded queue, when SEGDEMO_QUEUE is unset."""

import argparse
import logging
import os
import sys

from huey.signals import SIGNAL_COMPLETE, SIGNAL_ERROR

from segdemo.config import QUEUE_ENV, AppConfig
from segdemo.errors import InputError
from segdemo.finetune.worker import WORKER_THREADS, finetune_queue, worker_identity
from segdemo.jobqueue.broker import check_reachable, shown_url
from segdemo.jobqueue.local import PARENT_ENV, exit_with_parent

POLL_MAX_DELAY_S = 0.5  # the SQLite queue is polled (Redis blocks): at most this long between looks when idle

log = logging.getLogger("segdemo.worker")


def prepare(huey, preload=True):
    """Import TensorFlow, load the bundled bases and trace the default base's usual jobs (`preload`), stopping
    early when a job waits (it waits for one step of this at most). Again after each job: what is still
    loaded or prepared is kept."""
    from segdemo.training.loop import limit_threads

    limit_threads(WORKER_THREADS)
    import segdemo.serving.segmenter  # noqa: F401 - the heavy imports happen before a job arrives
    if not preload:
        return
    from segdemo.finetune.network import preload_bases, prepare_training_model
    from segdemo.finetune.options import BINARY_CLASSES
    from segdemo.serving.registry import DEFAULT_MODEL, MODEL_SUFFIX, current_config

    def job_waiting():
        return huey.pending_count() > 0

    bases = sorted(current_config().weights_dir.glob(f"*{MODEL_SUFFIX}"),
                   key=lambda path: (path.stem != DEFAULT_MODEL, path.stem))
    preload_bases(bases[:1], job_waiting)
    for classes in (None, BINARY_CLASSES):
        if not job_waiting():
            prepare_training_model(bases[0], classes)
    preload_bases(bases[1:], job_waiting)  # bundled bases only (a Hub one loads on use)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-preload", action="store_true",
                        help="take jobs once TensorFlow is imported; a base model loads when a job first needs it "
                             "(less memory and start-up work where few jobs come, slower first figures)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = AppConfig.from_environment()
    if not config.queue_url:
        parser.exit(2, f"segdemo.worker: set {QUEUE_ENV}=redis://HOST:PORT/DB, the queue the app enqueues on\n")
    if os.environ.get(PARENT_ENV):
        exit_with_parent(int(os.environ[PARENT_ENV]))
    try:
        huey, _ = finetune_queue(config.queue_url)
        check_reachable(huey, config.queue_url)
    except InputError as error:
        parser.exit(2, f"segdemo.worker: {error}\n")
    prepare(huey, preload=not args.no_preload)
    if not args.no_preload:  # a job used up a prepared model: the next job finds one again
        huey.signal(SIGNAL_COMPLETE, SIGNAL_ERROR)(lambda *_, **__: prepare(huey))
    worker, device = worker_identity()
    log.info("fine-tune worker %s (process %s, %s) takes jobs from %s", worker["host"], worker["pid"], device,
             shown_url(config.queue_url))
    huey.create_consumer(workers=1, periodic=False, initial_delay=0.05, backoff=1.15, max_delay=POLL_MAX_DELAY_S,
                         check_worker_health=False).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
