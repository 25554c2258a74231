"""The fine-tune job service: a session's fine-tunes and teach-loop retrains from start to the model it then
serves. `start_finetune` / `start_retrain` check the request and start the worker (`finetune_worker`);
`Job.events()` yields its `StepDone` and `RoundDone` events, then a `JobResult` once the finished model is
published to the session (`sessions.FINETUNED_MODELS`, named `sessions.FINETUNED_CHOICE`); `stop_job` ends a
running job after the current step. The Fine-tune tab, the teach loop's Retrain and the `retrain` API are thin
callers: they format events, nothing more."""

import dataclasses
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from segdemo.app.sessions import (
    FINETUNED_CHOICE,
    FINETUNED_MODELS,
    RUNNING_JOBS,
    SessionModel,
    base_for,
    session_folder,
    training_set_of,
)
from segdemo.errors import InputError
from segdemo.finetune import worker as finetune_worker
from segdemo.finetune.events import Failed, FinetuneSummary, RoundDone, Started, StepDone
from segdemo.finetune.options import FinetuneOptions, check_pair_count
from segdemo.limits import RETRAIN_STEPS
from segdemo.models.cards import class_colors
from segdemo.serving.registry import current_config

CURVES = ("loss", "val_loss", "val_miou", "val_mdice")  # the validation rounds' figures a curve shows
QUEUED_STREAMS = 16  # with SEGDEMO_QUEUE: jobs one app follows at once (each waits in the queue for a worker)

log = logging.getLogger(__name__)


@dataclass
class JobResult:
    """A finished job: what it measured and the files of the model the session now serves as `model_name`."""

    summary: FinetuneSummary
    files: list  # the model (.keras), its card (.json) and the card as Markdown (.md)
    wall_seconds: float  # from the start of the job to the model being served
    pairs: int
    curves: list = field(default_factory=list)  # [(step, {curve: value})] per validation round
    skipped_pairs: list = field(default_factory=list)  # names of uploaded pairs that could not be read
    model_name: str = FINETUNED_CHOICE
    worker: dict = None  # where it ran: {"host", "pid"} of the worker process (None: on a thread here, tests)
    device: str = ""

    def status(self):
        """The result in one line of plain words."""
        summary = self.summary
        how = "stopped by you; the weights so far are kept" if summary.stopped_by_user else "finished"
        note = f" ({summary.before_note})" if summary.before_note else ""
        where = f" on {describe_worker(self.worker, self.device)}" if self.worker else ""
        return (f"Done ({how}) in {self.wall_seconds:.0f}s{where}, {summary.steps_run} steps. Mean IoU on the "
                f"{len(summary.held_out)} held-out pairs: {summary.before['miou']:.3f} before → "
                f"{summary.after['miou']:.3f} after{note}")

    def metrics(self):
        """The result as JSON: before/after metrics on the held-out pairs, timings, steps, the curves."""
        summary = self.summary
        return {"before": summary.before, "before_note": summary.before_note, "after": summary.after,
                "seconds": round(summary.seconds, 1), "wall_seconds": round(self.wall_seconds, 1),
                "steps_run": summary.steps_run, "stopped_by_user": summary.stopped_by_user,
                "held_out": summary.held_out, "pairs": self.pairs, "model_name": self.model_name,
                "curves": [{"step": step, **values} for step, values in self.curves],
                "skipped_pairs": list(self.skipped_pairs), "worker": self.worker, "device": self.device}


class Job:
    """One running fine-tune of a session (see the module's docstring)."""

    def __init__(self, key, worker_job, pair_count, skipped_pairs=()):
        self.key, self._worker_job, self.pair_count = key, worker_job, pair_count
        self.skipped_pairs = list(skipped_pairs)
        self.started = time.perf_counter()
        self.curves = []
        self.worker, self.device = None, ""  # from the worker's Started event

    @property
    def elapsed(self):
        return time.perf_counter() - self.started

    def events(self):
        """Started once a worker takes it, StepDone and RoundDone events while it trains, then the JobResult (the
        model is served by then).
        A failure raises: InputError for what the user can fix, RuntimeError for a bug (logged by the caller).
        Closing the iterator early (the client left) stops the job."""
        outcome = None
        try:
            for event in self._worker_job.events():
                if isinstance(event, RoundDone):
                    self.curves.append((event.step, {name: value for name, value in event.logs.items()
                                                     if name in CURVES and value is not None}))
                if isinstance(event, Started):
                    self.worker, self.device = event.worker, event.device
                if isinstance(event, (Started, StepDone, RoundDone)):
                    yield event
                else:
                    outcome = event
        finally:
            RUNNING_JOBS.pop(self.key)
            if outcome is None:  # the caller stopped listening: stop training instead of orphaning it
                self._worker_job.stop()
                log.info("fine-tune stopped: its session stopped listening")
        if isinstance(outcome, Failed):
            if outcome.input_error:
                raise InputError(outcome.message)
            raise RuntimeError(f"fine-tune failed: {outcome.message}\n{outcome.details}")
        yield self._publish(outcome.summary)

    def _publish(self, summary):
        model_path = Path(summary.model_path)
        files = [str(model_path), str(model_path.with_suffix(".json")), str(model_path.with_suffix(".md"))]
        FINETUNED_MODELS.put(self.key, SessionModel(model_path, summary.card, files))
        return JobResult(summary, files, self.elapsed, self.pair_count, list(self.curves), self.skipped_pairs,
                         worker=self.worker, device=self.device)

    def stop(self):
        self._worker_job.stop()


def describe_worker(worker, device):
    """Where a job runs, in a few words: 'HOST (process PID, DEVICE)'."""
    return f"{worker['host']} (process {worker['pid']}, {device})"


def concurrent_jobs():
    """How many of this app's sessions may fine-tune at once: one on the embedded queue (one worker, this
    machine's cores); with SEGDEMO_QUEUE, as many as wait for the workers (the queue runs them in order)."""
    return QUEUED_STREAMS if current_config().queue_url else 1


def describe_round(event, elapsed):
    """A validation round in one line of plain words (the tab's status line and the API's stream)."""
    logs = event.logs
    return (f"Round {event.round}/{event.rounds} (step {event.step}/{event.steps}): loss {logs.get('loss') or 0:.4f}, "
            f"held-out loss {logs.get('val_loss') or 0:.4f}, held-out mean IoU {logs.get('val_miou') or 0:.3f}, "
            f"mean Dice {logs.get('val_mdice') or 0:.3f} · {elapsed:.0f}s")


def start_job(key, pairs, options, card, skipped_pairs=(), in_process=False, too_few=""):
    """Start fine-tuning `pairs` [(name, image, class-index mask)] for session `key`; returns its Job.
    `in_process`: on a thread here instead of the worker process (tests); `too_few`: what to do when the
    pairs are too few or too many, added to the message."""
    if key in RUNNING_JOBS:
        raise InputError("A training is already running in this session: wait for it to finish, or press Stop.")
    options.check()
    check_pair_count(len(pairs), too_few)
    job_dir = session_folder(key) / f"finetune_{uuid.uuid4().hex[:12]}"
    job_dir.mkdir()
    worker_job = finetune_worker.start(job_dir, pairs, options, class_colors(card), in_process=in_process)
    job = Job(key, worker_job, len(pairs), skipped_pairs)
    RUNNING_JOBS.put(key, job)
    return job


def start_finetune(key, loaded, options, card, skipped_pairs=()):
    """A fine-tune of an upload's good pairs `loaded` and the corrected pairs of the session's training set
    (which the upload joins, replacing the previous upload's pairs). `options.base` names the base model."""
    base, _ = base_for(options.base, key)
    pairs = list(loaded) + join_training_set(key, loaded, card)
    return start_job(key, pairs, dataclasses.replace(options, base=str(base)), card, skipped_pairs,
                     too_few=": see 'Check pairs' for what was skipped")


def start_retrain(key, model_name="", steps=RETRAIN_STEPS, learning_rate=None, batch_size=None):
    """A teach-loop round: fine-tune the session's current model (or the one named) on the pairs of its
    training set that have the model's classes. Learning rate and batch size default to a fine-tune's."""
    defaults = FinetuneOptions()
    base, card = base_for(model_name, key)
    pairs, other = training_set_of(key).for_classes(card.classes)
    if other and not pairs:
        raise InputError(f"None of the {len(other)} pairs in your training set has the classes of this model "
                         f"({', '.join(card.classes)}): correct predictions of this model, or pick another.")
    options = FinetuneOptions(base=str(base), steps=int(steps),
                              learning_rate=float(learning_rate or defaults.learning_rate),
                              batch_size=int(batch_size or defaults.batch_size))
    return start_job(key, pairs, options, card,
                     too_few=" in your training set: add corrected pairs (Segment tab) or upload pairs")


def join_training_set(key, loaded, card):
    """The upload's good pairs replace the previous upload's in the session's training set; returns the set's
    corrected pairs with `card`'s classes, which train along with them."""
    training_set = training_set_of(key)
    training_set.replace_uploaded(loaded, card.classes, class_colors(card))
    return training_set.corrected_for(card.classes)


def stop_job(key):
    """Ask the session's running job to stop after the current step; False when none runs."""
    job = RUNNING_JOBS.get(key)
    if job is None:
        return False
    job.stop()
    return True
