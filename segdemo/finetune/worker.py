"""The fine-tune job boundary: `start(job_dir, pairs, options, palette)` queues one fine-tune and returns its job:
iterate `events()` (`Started`, then `StepDone` and `RoundDone`, then `Finished` or `Failed`, from
`segdemo.finetune.events`); `job.stop()` ends it after the current step, keeping the weights so far.

Jobs go through the app's job queue (`segdemo.jobqueue`: Huey; an embedded SQLite file served by the app's own
worker process by default, Redis and `python -m segdemo.worker` processes anywhere with SEGDEMO_QUEUE). A worker
shares no folder with the app: the inputs (`JobInputs`, with the base model's file when it is the session's own)
go into the queue's storage as one blob, each event comes back as one key, and the files an event names (sample
predictions, the model) as blobs that the app writes into JOB_DIR. Worker side: `execute` is the queue's task;
`run_job` draws the samples and calls the recipe through `run_recipe`, the one call into it."""

import contextlib
import functools
import itertools
import json
import os
import queue
import socket
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import replace
from pathlib import Path

from segdemo.data.pairs import split_pairs
from segdemo.finetune.events import Failed, Finished, JobInputs, RoundDone, Started
from segdemo.finetune.wire import decode_event, decode_inputs, encode_event, encode_inputs
from segdemo.jobqueue.broker import QUEUE_ERRORS, open_queue, unreachable
from segdemo.jobqueue.channel import BEAT_SECONDS, EVENT_POLL_SECONDS, JobChannel, Silence, WorkerLink
from segdemo.jobqueue.local import LocalWorker, embedded_url
from segdemo.models.cards import card_path
from segdemo.serving.registry import current_config

WORKER_THREADS = 2  # at the lowest CPU priority, so a serving request preempts it
TASK_NAME = "segdemo.finetune"
# a worker whose heartbeat stood still this long is gone (killed, cut off); the cluster tests set it lower
WORKER_SILENT_SECONDS = float(os.environ.get("SEGDEMO_WORKER_SILENT_SECONDS") or 20)
LOCAL_WORKER = LocalWorker()  # the embedded queue's worker process


def sample_index(names, val_share):
    """The held-out pair shown after every round."""
    return split_pairs(names, val_share)[1][0]


def run_recipe(pairs, options, on_event, stop_event, out_dir):
    """The one call into the fine-tune recipe: train on `pairs` with `options` (`on_event(event, model)` gets its
    StepDone and RoundDone events; `stop_event` ends it after a step); returns its FinetuneSummary, the model and
    its card saved in `out_dir` (`summary.model_path`)."""
    from segdemo.finetune.recipe import run_finetune
    from segdemo.finetune.result import save_result

    model, summary = run_finetune(pairs, options, on_event=on_event, stop_event=stop_event)
    save_result(model, summary, Path(out_dir) / f"{summary.card.name}.keras")
    return summary


def run_job(inputs, emit, stop_event, out_dir):
    """Run a job in this process, passing each event to `emit`; the last is Finished or Failed. Each round's
    sample prediction is drawn into `out_dir` (the event's `sample`), the model saved there."""
    from PIL import Image

    from segdemo.data.images import resize_image, resize_mask
    from segdemo.errors import InputError
    from segdemo.serving.drawing import palette_lut, sample_strip

    try:
        pairs, options = inputs.pairs, inputs.options
        _, image, mask = pairs[sample_index([name for name, _, _ in pairs], options.val_share)]
        lut = palette_lut(inputs.palette)

        def on_event(event, model):
            if isinstance(event, RoundDone):
                size = event.prediction.shape[::-1]  # the training size, (w, h)
                event.sample = str(Path(out_dir) / f"sample_{event.round}.png")
                strip = sample_strip(resize_image(image, size), resize_mask(mask, size), event.prediction, lut)
                Image.fromarray(strip).save(event.sample, compress_level=1)
            emit(event)

        emit(Finished(run_recipe(pairs, options, on_event, stop_event, out_dir)))
    except InputError as error:
        emit(Failed(str(error)))
    except Exception as error:  # noqa: BLE001 - reported to the app, which logs it
        emit(Failed(f"{type(error).__name__}: {error}", input_error=False, details=traceback.format_exc()))


@functools.lru_cache(maxsize=1)
def worker_identity():
    """({"host", "pid"}, device) of this worker process."""
    from segdemo.serving.runtime import describe_device

    return {"host": socket.gethostname(), "pid": os.getpid()}, describe_device()


def with_local_base(inputs, folder):
    """`inputs` with a base model that came as bytes written into `folder` (options.base its path there)."""
    if not inputs.base_file:
        return inputs
    path = Path(folder) / "base" / inputs.base_name
    path.parent.mkdir()
    path.write_bytes(inputs.base_file)
    card_path(path).write_text(json.dumps(inputs.base_card))
    return replace(inputs, options=replace(inputs.options, base=str(path)), base_file=b"")


def execute(channel):
    """Worker side of a queued job (the queue's task): beat and watch for Stop while it runs, send its events,
    each round's sample and the model through the queue's storage."""
    stop = threading.Event()
    link = WorkerLink(channel, stop)
    sent = []

    def send(event):
        if isinstance(event, RoundDone) and event.sample:
            sent.append(Path(event.sample).name)
            channel.put_file(sent[-1], Path(event.sample).read_bytes())
            event.sample = sent[-1]
        elif isinstance(event, Finished):
            sent.append("model")
            channel.put_file("model", Path(event.summary.model_path).read_bytes())
        channel.emit(encode_event(event).encode())

    try:
        send(Started(*worker_identity()))
        data = channel.take_inputs()
        with tempfile.TemporaryDirectory(prefix="segdemo_job_") as folder:
            if data is None:
                send(Failed("This job's inputs are no longer in the queue: press Train to start again."))
            elif channel.stop_requested():
                send(Failed("Stopped before training began: no model was made."))
            else:
                run_job(with_local_base(decode_inputs(data), folder), send, stop, folder)
    finally:
        link.close()
        if link.abandoned:  # nobody reads the result: leave nothing behind in the queue's storage
            channel.clear(sent)


@functools.lru_cache(maxsize=None)
def finetune_queue(url):
    """(the Huey queue of `url`, the fine-tune task registered on it): the app enqueues, the worker runs it."""
    huey = open_queue(url)

    @huey.task(name=TASK_NAME)
    def finetune_task(job_id):
        execute(JobChannel(huey, job_id))

    return huey, finetune_task


@functools.lru_cache(maxsize=1)
def _embedded_url():
    return embedded_url()


def queue_url():
    """The app's queue: SEGDEMO_QUEUE's, else its own embedded one."""
    return current_config().queue_url or _embedded_url()


def keep_local_worker():
    """Embedded queue: start the app's worker process unless it runs (at app start, and while a job waits).
    Returns the process (None with SEGDEMO_QUEUE: the workers run elsewhere)."""
    if not current_config().queue_url:
        return LOCAL_WORKER.ensure(queue_url(), current_config().environment())
    return None


def job_inputs(pairs, options, palette):
    """The JobInputs of a fine-tune; a base that is not a bundled model (which every worker has) goes as bytes."""
    from segdemo.serving.registry import resolve_model_path

    path = Path(resolve_model_path(options.base))
    palette = [list(map(int, color)) for color in palette]
    if options.base == path.stem and path.parent == current_config().weights_dir:
        return JobInputs(list(pairs), options, palette)
    return JobInputs(list(pairs), options, palette, path.read_bytes(), path.name,
                     json.loads(card_path(path).read_text()))


class LocalJob:
    """A job on a thread of this process (tests): the same events, no queue."""

    def __init__(self, job_dir, inputs):
        self.job_dir, self._events, self._stop = Path(job_dir), queue.Queue(), threading.Event()
        threading.Thread(target=run_job, args=(inputs, self._events.put, self._stop, job_dir), daemon=True,
                         name=f"finetune-{self.job_dir.name}").start()

    def events(self):
        while True:
            event = self._events.get()
            yield event
            if isinstance(event, (Finished, Failed)):
                return

    def stop(self):
        self._stop.set()


class QueuedJob:
    """App side of a queued job: its events as the worker sends them, the files they name written into JOB_DIR;
    a worker gone silent ends it with a Failed that says so. `keep_worker`: called while the job waits (the
    embedded queue starts its worker again if it has died)."""

    def __init__(self, job_dir, channel, url, keep_worker=None):
        self.job_dir, self.channel, self.url, self.keep_worker = Path(job_dir), channel, url, keep_worker
        self.started = None  # the worker's Started event

    def events(self):
        silence, beats, last_beat = Silence(self.channel, "worker"), itertools.count(), 0.0
        try:
            while True:
                if time.monotonic() - last_beat >= BEAT_SECONDS:
                    last_beat = time.monotonic()
                    self.channel.beat("app", next(beats))
                    if self.started is None and self.keep_worker is not None:
                        self.keep_worker()
                    elif self.started is not None and silence.seconds() > WORKER_SILENT_SECONDS:
                        yield Failed(self.lost_message(silence.seconds()))
                        return
                data = self.channel.next_event()
                if data is None:
                    time.sleep(EVENT_POLL_SECONDS)
                    continue
                event = decode_event(data)
                if isinstance(event, Started):
                    self.started, silence = event, Silence(self.channel, "worker")
                elif isinstance(event, RoundDone) and event.sample:
                    event.sample = self.save_file(event.sample)
                elif isinstance(event, Finished):
                    event.summary.model_path = self.save_model(event.summary)
                yield event
                if isinstance(event, (Finished, Failed)):
                    return
        except QUEUE_ERRORS as error:
            yield Failed(str(unreachable(self.url, error)))
        finally:
            with contextlib.suppress(*QUEUE_ERRORS):
                self.channel.clear()

    def lost_message(self, seconds):
        worker = self.started.worker
        return (f"The fine-tune worker on {worker['host']} (process {worker['pid']}) stopped answering "
                f"{seconds:.0f} s ago: it was stopped, or lost the job queue. This fine-tune is lost; your "
                "training set and models are unchanged: press Train to start again.")

    def save_file(self, name):
        path = self.job_dir / name
        path.write_bytes(self.channel.take_file(name))
        return str(path)

    def save_model(self, summary):
        """The model file the worker sent, written with its card beside it (as the worker had them)."""
        path = self.job_dir / f"{summary.card.name}.keras"
        path.write_bytes(self.channel.take_file("model"))
        summary.card.save(path)
        return str(path)

    def stop(self):
        try:
            self.channel.request_stop()
        except QUEUE_ERRORS as error:
            raise unreachable(self.url, error) from None


def start(job_dir, pairs_data, options, palette, in_process=False):
    """Start a fine-tune of `pairs_data` [(name, image, class-index mask)] with `options`; returns its job.
    `in_process`: run it on a thread here (tests) instead of through the queue. QueueUnreachableError (an InputError
    naming SEGDEMO_QUEUE) when the queue cannot be reached."""
    if in_process:
        return LocalJob(job_dir, JobInputs(list(pairs_data), options, palette))
    url = queue_url()
    huey, task = finetune_queue(url)
    channel = JobChannel(huey, uuid.uuid4().hex)
    try:
        channel.put_inputs(encode_inputs(job_inputs(pairs_data, options, palette)))
        task(channel.job_id)
    except QUEUE_ERRORS as error:
        raise unreachable(url, error) from None
    return QueuedJob(job_dir, channel, url, None if current_config().queue_url else keep_local_worker)
