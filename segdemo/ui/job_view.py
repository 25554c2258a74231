"""How a fine-tune job looks in the Fine-tune tab: its events (from `segdemo.app.jobs`) formatted as the tab's
outputs (status, curves, sample prediction, metrics table, metrics JSON, files). The tab's Train and the teach
loop's Retrain stream through `stream_job`."""

import gradio as gr
import pandas as pd

from segdemo.app.jobs import JobResult, describe_round, describe_worker
from segdemo.finetune.events import RoundDone, Started, StepDone

STEP_UPDATE_SECONDS = 1.0  # between two yields while steps run (Gradio cancels a generator at a yield)
STARTING = "Training on the good pairs (waiting for a fine-tune worker to take the job)…"


def curve_frame(curves):
    """Long-format frame of the curves for gr.LinePlot: curves is [(step, {series: value})]."""
    rows = [(step, series, value) for step, values in curves for series, value in values.items()]
    return pd.DataFrame(rows, columns=["step", "series", "value"])


def metrics_frame(before, after):
    rows = []
    for key, label in (("pixel_acc", "pixel accuracy"), ("miou", "mean IoU"), ("mdice", "mean Dice")):
        rows.append([label, None if before is None else before[key], after[key]])
    for name, value in after["per_class_iou"].items():
        rows.append([f"IoU {name}", None if before is None else before["per_class_iou"].get(name), value])
    return pd.DataFrame(rows, columns=["metric", "before (base model)", "after (fine-tuned)"])


def result_status(result):
    done, rest = result.status().split(" ", 1)
    return f"**{done}** {rest}. Tick *use this model* to segment with it."


def stream_job(job, progress):
    """The tab's outputs (status, curves, sample, metrics table, metrics JSON, files) as `job` runs; the last
    update holds the result."""
    skip = gr.skip()
    last_yield = 0.0
    yield STARTING, None, None, None, None, None
    for event in job.events():
        if isinstance(event, Started):
            yield f"Training on {describe_worker(event.worker, event.device)}…", skip, skip, skip, skip, skip
        elif isinstance(event, StepDone):
            done = event.step / event.steps
            progress(done, desc=f"step {event.step}/{event.steps}, "
                                f"ETA {job.elapsed / max(done, 1e-6) * (1 - done):.0f}s")
            if job.elapsed - last_yield >= STEP_UPDATE_SECONDS:  # a yield point, so a cancel lands promptly
                last_yield = job.elapsed
                yield skip, skip, skip, skip, skip, skip
        elif isinstance(event, RoundDone):
            yield describe_round(event, job.elapsed), curve_frame(job.curves), event.sample, skip, skip, skip
        elif isinstance(event, JobResult):
            yield (result_status(event), curve_frame(event.curves), skip,
                   metrics_frame(event.summary.before, event.summary.after), event.metrics(), event.files)
