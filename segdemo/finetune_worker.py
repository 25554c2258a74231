"""Run one fine-tune in its own process, so that serving keeps a core and everything the training held
(graphs, optimizer state, tf.data buffers) is returned to the system when it ends, stopped or failed.

The app starts `python -m segdemo.finetune_worker JOB_DIR`. JOB_DIR holds `job.npz` (the decoded pairs) and
`job.json` (options); the worker writes one JSON line per event to stdout, sample images as PNG files in
JOB_DIR, the model as JOB_DIR/<name>.keras with its card, and stops after the current batch when the file
JOB_DIR/stop appears.
"""

import json
import sys
import threading
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np

WORKER_THREADS = 1  # leave the other core to serving
STOP_POLL_SECONDS = 0.2


def write_job(job_dir, pairs_data, options, sample_index, palette):
    """Store a fine-tune's inputs for the worker."""
    job_dir = Path(job_dir)
    arrays = {}
    for index, (name, image, mask) in enumerate(pairs_data):
        arrays[f"image_{index}"], arrays[f"mask_{index}"] = image, mask
    np.savez(job_dir / "job.npz", **arrays)
    (job_dir / "job.json").write_text(json.dumps({
        "names": [name for name, _, _ in pairs_data], "options": asdict(options),
        "sample_index": sample_index, "palette": [list(map(int, color)) for color in palette],
    }))


def read_job(job_dir):
    from segdemo.finetune import FinetuneOptions

    spec = json.loads((job_dir / "job.json").read_text())
    with np.load(job_dir / "job.npz") as arrays:
        pairs = [(name, arrays[f"image_{i}"], arrays[f"mask_{i}"]) for i, name in enumerate(spec["names"])]
    return pairs, FinetuneOptions(**spec["options"]), spec["sample_index"], spec["palette"]


def emit(event):
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def main(job_dir):
    from segdemo.training import limit_threads

    limit_threads(WORKER_THREADS)
    from PIL import Image

    from segdemo.cards import input_wh, load_card
    from segdemo.data import InputError, resize_image, resize_mask
    from segdemo.finetune import run_finetune, save_result
    from segdemo.inference import palette_lut, sample_strip
    from segdemo.registry import resolve_model_path

    job_dir = Path(job_dir)
    pairs, options, sample_index, palette = read_job(job_dir)
    stop = threading.Event()
    threading.Thread(target=watch_stop_file, args=(job_dir / "stop", stop), daemon=True).start()
    size = options.input_size or input_wh(load_card(resolve_model_path(options.base)))
    _, image, mask = pairs[sample_index]
    sample_image, sample_mask, lut = resize_image(image, size), resize_mask(mask, size), palette_lut(palette)

    def on_event(kind, epoch, step, logs, model):
        if kind == "batch":
            emit({"kind": "batch", "epoch": epoch, "step": step})
            return
        path = job_dir / f"sample_{epoch}.png"
        Image.fromarray(sample_strip(model, sample_image, sample_mask, lut)).save(path, compress_level=1)
        emit({"kind": "epoch", "epoch": epoch, "step": step, "sample": str(path),
              "logs": {k: (None if v is None else float(v)) for k, v in logs.items()}})

    try:
        result = run_finetune(pairs, options, on_event=on_event, stop_event=stop)
        model_path = save_result(result, job_dir / f"{result.card['name']}.keras")
        emit({"kind": "done", "model": str(model_path), "card": result.card, "before": result.before,
              "after": result.after, "history": {k: [float(v) for v in vs] for k, vs in result.history.items()},
              "seconds": result.seconds, "stopped": result.stopped_early, "held_out": result.val_names})
    except InputError as error:
        emit({"kind": "error", "input_error": True, "message": str(error)})
    except Exception as error:  # noqa: BLE001 - reported to the app, which logs it
        import traceback

        emit({"kind": "error", "input_error": False, "message": f"{type(error).__name__}: {error}",
              "traceback": traceback.format_exc()})


def watch_stop_file(path, stop):
    while not stop.is_set():
        if path.exists():
            stop.set()
        time.sleep(STOP_POLL_SECONDS)


if __name__ == "__main__":
    main(sys.argv[1])
