"""Memory per loaded model: the process's RSS before and after loading (and warming up) each bundled model.

    python bench/model_memory.py

The app loads a model on its first use and keeps at most `registry.LOADED_MODELS_CACHE` of them (least
recently used goes first), so serving memory is bounded by that many of the figures printed here.
Prints a table, then one JSON line.
"""

import os

from common import print_json, print_table, rss_mb

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main():
    import tensorflow as tf  # imported first so the baseline includes TensorFlow itself

    from segdemo.serving.registry import LOADED_MODELS_CACHE, get_segmenter, served_models

    tf.constant(0.0).numpy()
    baseline = rss_mb()
    rows, previous = [], baseline
    for name, path in served_models().items():
        segmenter = get_segmenter(name)
        now = rss_mb()
        rows.append({"model": name, "input": "x".join(map(str, segmenter.card.size)),
                     "params_M": round(segmenter.model.count_params() / 1e6, 2),
                     "file_MB": round(path.stat().st_size / 1e6, 1), "rss_added_MB": round(now - previous, 1)})
        previous = now
    print(f"RSS with TensorFlow imported: {baseline:.0f} MB; models kept loaded at most: {LOADED_MODELS_CACHE}")
    print_table(rows, ["model", "input", "params_M", "file_MB", "rss_added_MB"])
    print_json({"baseline_rss_mb": round(baseline, 1), "cache_size": LOADED_MODELS_CACHE, "models": rows})


if __name__ == "__main__":
    main()
