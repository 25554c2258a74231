"""The fine-tune job boundary in-process: the events a job yields, their wire format, Stop, failures."""

from pathlib import Path

import numpy as np
import pytest

from segdemo.finetune import worker as finetune_worker
from segdemo.finetune.events import Failed, FinetuneSummary, Finished, RoundDone, Started, StepDone
from segdemo.finetune.options import FinetuneOptions
from segdemo.models.cards import ModelCard


def palette():
    return [(0, 0, 0), (255, 0, 0)]


def collect(job):
    return list(job.events())


@pytest.mark.slow  # over 7 s: the full suite runs it, the fast loop does not
def test_a_job_yields_steps_rounds_then_its_result(tiny_base, squares, tmp_path):  # noqa: F811
    options = FinetuneOptions(base=tiny_base, steps=8, val_share=0.25)
    events = collect(finetune_worker.start(tmp_path, squares, options, palette(), in_process=True))
    steps = [e for e in events if isinstance(e, StepDone)]
    rounds = [e for e in events if isinstance(e, RoundDone)]
    assert [e.step for e in steps] == list(range(1, 9)) and all(e.steps == 8 for e in steps)
    assert len(rounds) == 8 and all((tmp_path / f"sample_{e.round}.png").is_file() for e in rounds)
    assert rounds[-1].logs["loss"] > 0 and 0 <= rounds[-1].logs["val_miou"] <= 1
    assert isinstance(events[-1], Finished)
    summary = events[-1].summary
    assert summary.model_path.endswith(".keras") and (tmp_path / "squares-finetuned.keras").is_file()
    assert summary.steps_run == 8 and not summary.stopped_by_user and len(summary.history) == 8
    # the last sample's prediction panel is the finished model's prediction of the first held-out pair, served as
    # its card says (the mean with the mirror's prediction)
    from PIL import Image

    from segdemo.serving.registry import load_segmenter

    _, image, _ = squares[finetune_worker.sample_index([name for name, _, _ in squares], 0.25)]
    served = load_segmenter(summary.model_path)
    assert served.tta
    predicted = served.predict(image).labels
    panel = np.asarray(Image.open(tmp_path / f"sample_{rounds[-1].round}.png").convert("RGB"))[:, -image.shape[1]:]
    assert (panel == np.array(palette(), np.uint8)[predicted]).all(-1).mean() > 0.99


def test_events_round_trip_the_wire_format():
    summary = FinetuneSummary(card=ModelCard("m", ["a", "b"], 32), before={"miou": 0.3}, after={"miou": 0.9},
                              history=[{"loss": 1.0}], seconds=3.5, stopped_by_user=True, held_out=["a"], steps_run=7,
                              before_note="x → y", model_path="/tmp/m.keras")
    in_process_only = np.zeros((4, 4), np.uint8)  # a RoundDone's prediction is not sent
    for event in (Started({"host": "gpu-1", "pid": 42}, "GPU: H100"),
                  StepDone(3, 10), RoundDone(1, 8, 5, 40, {"loss": 0.5, "val_miou": None}, "s.png", in_process_only),
                  Finished(summary), Failed("bad pairs"), Failed("boom", input_error=False, details="trace")):
        assert finetune_worker.decode_event(finetune_worker.encode_event(event)) == event
    assert "prediction" not in finetune_worker.encode_event(RoundDone(1, 8, 5, 40, {}, "", in_process_only))
    assert finetune_worker.decode_event("some library's stray output") is None
    assert finetune_worker.decode_event('{"type": "Unknown"}') is None


def test_stop_ends_the_job_with_the_weights_so_far(tiny_base, squares, tmp_path):  # noqa: F811
    job = finetune_worker.start(tmp_path, squares, FinetuneOptions(base=tiny_base, steps=2000), palette(),
                                in_process=True)
    events = []
    for event in job.events():
        events.append(event)
        if isinstance(event, StepDone) and event.step == 3:
            job.stop()
    summary = events[-1].summary
    assert summary.stopped_by_user and summary.steps_run < 2000 and summary.after["images"] > 0


def test_bad_input_ends_as_a_failed_event_with_the_message(tiny_base, squares, tmp_path):  # noqa: F811
    name, image, mask = squares[0]
    bad = [(name, image, np.full_like(mask, 7))] + squares[1:]
    events = collect(finetune_worker.start(tmp_path, bad, FinetuneOptions(base=tiny_base), palette(),
                                           in_process=True))
    assert events == [Failed(f"{name}: mask has class values [7] but only 2 classes are defined")]


@pytest.mark.slow
def test_the_embedded_queue_runs_a_job_in_its_own_worker_process(tiny_base, squares, tmp_path):  # noqa: F811
    """SEGDEMO_QUEUE unset: the job goes through this process's SQLite queue to the worker process it starts
    (lowest priority); the base model (a file, not a bundled one) travels as bytes, the model comes back."""
    import os

    job = finetune_worker.start(tmp_path, squares, FinetuneOptions(base=tiny_base, steps=4), palette())
    try:
        events = collect(job)
    finally:
        worker = finetune_worker.LOCAL_WORKER.process
        finetune_worker.LOCAL_WORKER.close()
    assert isinstance(events[0], Started) and events[0].worker == {"host": os.uname().nodename, "pid": worker.pid}
    assert events[0].device.startswith(("CPU", "GPU"))
    assert isinstance(events[-1], Finished), events[-1]
    assert sum(isinstance(e, StepDone) for e in events) == 4
    rounds = [e for e in events if isinstance(e, RoundDone)]
    assert rounds and all(Path(e.sample).parent == tmp_path and Path(e.sample).stat().st_size > 0 for e in rounds)
    model_path = Path(events[-1].summary.model_path)
    assert model_path.parent == tmp_path and model_path.stat().st_size > 0
    assert model_path.with_suffix(".json").is_file() and model_path.with_suffix(".md").is_file()
