"""What a fine-tune job tells: an event after every step and every validation round, then its result (or
why it failed). The worker sends them over a pipe (`finetune_worker.encode_event`); the job service
(`segdemo.app.jobs`) hands them on."""

from dataclasses import dataclass, field

import numpy as np


@dataclass
class StepDone:
    """One optimizer step finished."""

    step: int
    steps: int


@dataclass
class RoundDone:
    """A validation round: the curves' values so far and (from the worker) a sample prediction PNG."""

    round: int
    rounds: int
    step: int
    steps: int
    logs: dict
    sample: str = ""
    # the first held-out pair's predicted class indices at the training size (in process only, not sent:
    # the worker draws the sample from it rather than running the model again)
    prediction: np.ndarray = field(default=None, repr=False, compare=False)


@dataclass
class FinetuneSummary:
    """What a fine-tune produced, apart from the model itself."""

    card: dict
    before: dict  # the base model on the held-out pairs (new classes: its classes mapped, see before_note)
    after: dict
    history: list  # logs of each round
    seconds: float
    stopped_by_user: bool
    held_out: list
    steps_run: int
    before_note: str = ""
    model_path: str = ""


@dataclass
class Finished:
    summary: FinetuneSummary


@dataclass
class Failed:
    message: str
    input_error: bool = True  # False: a bug; `details` holds the traceback for the log
    details: str = ""


@dataclass
class Started:
    """A worker took the job from the queue: where it runs ({"host", "pid"}) and on what device."""

    worker: dict
    device: str


@dataclass
class JobInputs:
    """Everything a fine-tune job needs, sent whole to a worker that shares no folder with the app: the decoded
    pairs [(name, image, class-index mask)], the options (a `finetune.options.FinetuneOptions`), the palette the
    sample predictions are drawn in, and the base model's `.keras` bytes and card (a dict) when the worker cannot
    load it by name (a session's own model; empty for a bundled one, which every worker has)."""

    pairs: list
    options: object
    palette: list
    base_file: bytes = b""
    base_name: str = ""  # the base file's name (its suffix says its format: .keras, .h5)
    base_card: dict = None
