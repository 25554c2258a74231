"""The fine-tune job boundary: `start(job_dir, pairs, options, palette)` runs one fine-tune in its own process
and yields its events (`StepDone`, `RoundDone`, then `Finished` or `Failed`, from `segdemo.finetune`);
`job.stop()` ends it after the current step, keeping the weights so far.

A process of its own, so that serving keeps the CPU (the worker runs at the lowest priority) and everything
training held (graphs, optimizer state, tf.data buffers) goes back to the system when it ends. One spare
worker is kept started with TensorFlow imported, so a job's first figures arrive seconds after Train.

On the wire: JOB_DIR holds `job.npz` (decoded pairs) and `job.json` (options, sample pair, palette); the worker
reads a JOB_DIR line on stdin, writes one JSON event per line to stdout (`encode_event` / `decode_event`),
sample predictions as PNGs and the model (`<name>.keras` + card) into JOB_DIR, and stops when JOB_DIR/stop
appears.
"""

import json
import os
import queue
import select
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import numpy as np

from segdemo.config import PROJECT_ROOT
from segdemo.data.pairs import split_pairs
from segdemo.finetune.events import Failed, FinetuneSummary, Finished, RoundDone, StepDone
from segdemo.finetune.options import FinetuneOptions
from segdemo.models.cards import ModelCard
from segdemo.serving.registry import current_config

WORKER_THREADS = 2  # at the lowest CPU priority, so a serving request preempts it
WORKER_NICENESS = 19
STOP_POLL_SECONDS = 0.2
EVENT_TYPES = {cls.__name__: cls for cls in (StepDone, RoundDone, Finished, Failed)}


def encode_event(event):
    """One JSON line for an event (a RoundDone's in-process `prediction` stays behind)."""
    data = asdict(event)
    data.pop("prediction", None)
    if isinstance(event, Finished):
        data["summary"]["card"] = event.summary.card.to_dict()  # the card's JSON form, as its file has it
    return json.dumps({"type": type(event).__name__, **data})


def decode_event(line):
    """The event an `encode_event` line holds (None for a line that is not one: a library's stray output)."""
    try:
        data = json.loads(line)
        cls = EVENT_TYPES[data.pop("type")]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    if cls is Finished:
        summary = data["summary"]
        return Finished(FinetuneSummary(**{**summary, "card": ModelCard.from_dict(summary["card"])}))
    return cls(**data)


def sample_index(names, val_share):
    """The held-out pair shown after every round."""
    return split_pairs(names, val_share)[1][0]


def write_job(job_dir, pairs_data, options, palette):
    """Store a fine-tune's inputs for the worker."""
    job_dir = Path(job_dir)
    arrays = {}
    for index, (_, image, mask) in enumerate(pairs_data):
        arrays[f"image_{index}"], arrays[f"mask_{index}"] = image, mask
    np.savez(job_dir / "job.npz", **arrays)
    (job_dir / "job.json").write_text(json.dumps({
        "names": [name for name, _, _ in pairs_data], "options": asdict(options),
        "palette": [list(map(int, color)) for color in palette],
    }))


def read_job(job_dir):
    spec = json.loads((job_dir / "job.json").read_text())
    with np.load(job_dir / "job.npz") as arrays:
        pairs = [(name, arrays[f"image_{i}"], arrays[f"mask_{i}"]) for i, name in enumerate(spec["names"])]
    return pairs, FinetuneOptions(**spec["options"]), spec["palette"]


def run_job(job_dir, emit):
    """Run the job in JOB_DIR in this process, passing each event to `emit`; the last is Finished or Failed."""
    from PIL import Image

    from segdemo.data.images import resize_image, resize_mask
    from segdemo.errors import InputError
    from segdemo.finetune.recipe import run_finetune, save_result
    from segdemo.serving.drawing import palette_lut, sample_strip

    job_dir = Path(job_dir)
    try:
        pairs, options, palette = read_job(job_dir)
        stop = threading.Event()
        threading.Thread(target=watch_stop_file, args=(job_dir / "stop", stop), daemon=True).start()
        _, image, mask = pairs[sample_index([name for name, _, _ in pairs], options.val_share)]
        lut = palette_lut(palette)

        def on_event(event, model):
            if isinstance(event, RoundDone):
                size = event.prediction.shape[::-1]  # the training size, (w, h)
                event.sample = str(job_dir / f"sample_{event.round}.png")
                strip = sample_strip(resize_image(image, size), resize_mask(mask, size), event.prediction, lut)
                Image.fromarray(strip).save(event.sample, compress_level=1)
            emit(event)

        model, summary = run_finetune(pairs, options, on_event=on_event, stop_event=stop)
        save_result(model, summary, job_dir / f"{summary.card.name}.keras")
        emit(Finished(summary))
    except InputError as error:
        emit(Failed(str(error)))
    except Exception as error:  # noqa: BLE001 - reported to the app, which logs it
        emit(Failed(f"{type(error).__name__}: {error}", input_error=False, details=traceback.format_exc()))


def watch_stop_file(path, stop):
    """Set `stop` when the stop file appears or the app that started this worker is gone."""
    parent = os.getppid()
    while not stop.is_set():
        if path.exists() or os.getppid() != parent:
            stop.set()
        time.sleep(STOP_POLL_SECONDS)


class FinetuneJob:
    """A running fine-tune: iterate `events()`; `stop()` asks it to end after the current step."""

    def __init__(self, job_dir, events, process=None):
        self.job_dir, self._events, self.process = Path(job_dir), events, process

    def events(self):
        """Yield events until the job's Finished or Failed (a worker that dies says so as a Failed)."""
        while True:
            event = self._events.get()
            if event is None:
                yield Failed(f"the fine-tune worker ended without a result; see {self.job_dir / 'worker.log'}",
                             input_error=False)
                return
            yield event
            if isinstance(event, (Finished, Failed)):
                return

    def stop(self):
        (self.job_dir / "stop").touch()


def start(job_dir, pairs_data, options, palette, in_process=False):
    """Start a fine-tune of `pairs_data` [(name, image, class-index mask)] with `options`. Returns a
    FinetuneJob. `in_process`: run it on a thread here (tests) instead of a worker process."""
    job_dir = Path(job_dir)
    write_job(job_dir, pairs_data, options, palette)
    events = queue.Queue()
    if in_process:
        def run():
            run_job(job_dir, events.put)
            events.put(None)

        threading.Thread(target=run, name=f"finetune-{job_dir.name}", daemon=True).start()
        return FinetuneJob(job_dir, events)
    process = SPARE_WORKERS.take()
    log_file = open(job_dir / "worker.log", "w")
    process.stdin.write(f"{job_dir}\n")
    process.stdin.flush()
    threading.Thread(target=relay_events, args=(process, events, log_file), daemon=True,
                     name=f"finetune-{job_dir.name}").start()
    return FinetuneJob(job_dir, events, process)


def relay_events(process, events, log_file):
    """Turn the worker's stdout lines into events; its other output goes to the job's log."""
    try:
        for line in process.stdout:
            event = decode_event(line)
            if event is None:
                log_file.write(line)
            else:
                events.put(event)
        process.wait()
    finally:
        stderr_log = getattr(process, "log_path", None)
        if stderr_log and Path(stderr_log).exists():
            log_file.write(Path(stderr_log).read_text(errors="replace"))
            Path(stderr_log).unlink(missing_ok=True)
        log_file.close()
        events.put(None)
        SPARE_WORKERS.prestart()  # the next job's worker starts now, not while this one trained


class SpareWorkers:
    """One worker process started ahead of time (Python, TensorFlow and Keras imported, the bundled bases
    loaded, the default base's usual jobs traced: ~7 s saved per job, ~13 s for a job that matches).
    The next spare starts when a job's worker has ended, not when the job starts: a worker starting beside a
    training one slowed a 20-pair fine-tune from 30 to 50 s on 2 cores (far more than its 3 s of CPU)."""

    def __init__(self):
        self._spare, self._lock = None, threading.Lock()

    def _launch(self):
        with tempfile.NamedTemporaryFile("w", prefix="segdemo_worker_", suffix=".log", delete=False) as stderr:
            environment = {**os.environ, **current_config().environment()}  # the app's models, by name
            process = subprocess.Popen([sys.executable, "-m", "segdemo.finetune.worker"], cwd=PROJECT_ROOT,
                                       env=environment, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=stderr, text=True,
                                       preexec_fn=lambda: os.nice(WORKER_NICENESS))
        process.log_path = stderr.name  # its TensorFlow chatter; copied into the job's worker.log at the end
        return process

    def prestart(self):
        """Start the spare if there is none (call when the app starts)."""
        with self._lock:
            if self._spare is None or self._spare.poll() is not None:
                self._spare = self._launch()

    def take(self):
        """The spare worker (started now if there is none); `relay_events` starts the next one when it ends."""
        with self._lock:
            process = self._spare if self._spare is not None and self._spare.poll() is None else self._launch()
            self._spare = None
        return process

    def close(self):
        with self._lock:
            if self._spare is not None and self._spare.poll() is None:
                self._spare.kill()
            self._spare = None


SPARE_WORKERS = SpareWorkers()


def main():
    """Worker process: import everything, then run the job whose folder arrives on stdin."""
    from segdemo.training.loop import limit_threads

    limit_threads(WORKER_THREADS)
    import segdemo.serving.segmenter  # noqa: F401 - the heavy imports happen before the job arrives
    from segdemo.finetune.options import BINARY_CLASSES
    from segdemo.finetune.recipe import preload_bases, prepare_training_model
    from segdemo.serving.registry import DEFAULT_MODEL, MODEL_SUFFIX

    def job_waiting():
        return bool(select.select([sys.stdin], [], [], 0)[0])

    # the default base first, and the two jobs the tab starts most (its classes; two new ones) traced for it;
    # a job that arrives meanwhile waits for one step of this at most
    bases = sorted(current_config().weights_dir.glob(f"*{MODEL_SUFFIX}"),
                   key=lambda path: (path.stem != DEFAULT_MODEL, path.stem))
    preload_bases(bases[:1], job_waiting)
    for classes in (None, BINARY_CLASSES):
        if not job_waiting():
            prepare_training_model(bases[0], classes)
    preload_bases(bases[1:], job_waiting)  # bundled bases only (a Hub one loads on use)

    line = sys.stdin.readline().strip()
    if not line:
        return  # the app closed without using this spare

    def emit(event):
        sys.stdout.write(encode_event(event) + "\n")
        sys.stdout.flush()

    run_job(line, emit)


if __name__ == "__main__":
    main()
