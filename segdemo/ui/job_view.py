"""How a fine-tune job looks in the Fine-tune tab: its events (from `segdemo.jobs`) formatted as the tab's
outputs (status, curves, sample prediction, metrics table, metrics JSON, files). The tab's Train and the teach
loop's Retrain stream through `stream_job`."""

import gradio as gr
import pandas as pd

from segdemo.finetune.events import RoundDone, StepDone
from segdemo.jobs import JobResult

STEP_UPDATE_SECONDS = 1.0  # between two yields while steps run (Gradio cancels a generator at a yield)
STARTING = "Training on the good pairs (starting the worker, a few seconds)…"


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


def round_status(event, elapsed):
    logs = event.logs
    return (f"Round {event.round}/{event.rounds} (step {event.step}/{event.steps}): loss {logs.get('loss') or 0:.4f}, "
            f"held-out loss {logs.get('val_loss') or 0:.4f}, held-out mean IoU {logs.get('val_miou') or 0:.3f}, "
            f"mean Dice {logs.get('val_mdice') or 0:.3f} · {elapsed:.0f}s")


def result_status(result):
    summary = result.summary
    before, after = summary.before, summary.after
    how = "stopped by you; the weights so far are kept" if summary.stopped_by_user else "finished"
    return (f"**Done** ({how}) in {result.wall_seconds:.0f}s, {summary.steps_run} steps. Mean IoU on the "
            f"{len(summary.held_out)} held-out pairs: {before['miou']:.3f} before → **{after['miou']:.3f}** after"
            + (f" ({summary.before_note})" if summary.before_note else "")
            + ". Tick *use this model* to segment with it.")


def stream_job(job, progress):
    """The tab's outputs (status, curves, sample, metrics table, metrics JSON, files) as `job` runs; the last
    update holds the result."""
    skip = gr.skip()
    last_yield = 0.0
    yield STARTING, None, None, None, None, None
    for event in job.events():
        if isinstance(event, StepDone):
            done = event.step / event.steps
            progress(done, desc=f"step {event.step}/{event.steps}, "
                                f"ETA {job.elapsed / max(done, 1e-6) * (1 - done):.0f}s")
            if job.elapsed - last_yield >= STEP_UPDATE_SECONDS:  # a yield point, so a cancel lands promptly
                last_yield = job.elapsed
                yield skip, skip, skip, skip, skip, skip
        elif isinstance(event, RoundDone):
            yield round_status(event, job.elapsed), curve_frame(job.curves), event.sample, skip, skip, skip
        elif isinstance(event, JobResult):
            yield (result_status(event), curve_frame(event.curves), skip,
                   metrics_frame(event.summary.before, event.summary.after), event.metrics(), event.files)
