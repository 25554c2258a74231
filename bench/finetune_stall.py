"""Does the end of a fine-tune's `fit` sit idle? One fine-tune per fresh process (as the app's worker runs
them), alternating the two training pipelines of `segdemo.training.loop.train_dataset`:
- autotuned: parallel map and prefetch sized by tf.data's autotuning (what full training uses, and what the
  fine-tune used before),
- fixed: one map call at a time, prefetch 2, autotuning off (what the fine-tune uses now).

    python bench/finetune_stall.py [--runs 8] [--pipelines autotuned fixed] [--domain pets-binary-from-pets]

Each run times the seconds from the last round's figures to `fit` returning (normally under a tenth of a
second) and from start to the finished model. The stall this looks for: ~20 s with the CPU idle and the main
thread in the teardown of `fit`'s locals, seen in 5 of 36 fine-tunes while `fit` also ran Keras's own
validation (`validation_data`); the fine-tune now validates in `ValidationIoU` instead. Prints per pipeline the
runs, how many had a gap over STALL_SECONDS, the median and worst gap, the median total; then one JSON line.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time

from common import ROOT, print_json  # noqa: E402

STALL_SECONDS = 5.0


def one_run(domain, pipeline):
    """In this (fresh) process: one fine-tune at the tab's defaults; prints its timings as JSON."""
    sys.path.insert(0, str(ROOT))
    from finetune_robustness import DOMAINS, build_domain

    from segdemo.finetune.data import load_training_pairs
    from segdemo.finetune.events import RoundDone
    from segdemo.finetune.options import FinetuneOptions
    from segdemo.finetune.recipe import run_finetune
    from segdemo.models import cards
    from segdemo.serving.registry import resolve_model_path
    from segdemo.training.loop import limit_threads

    limit_threads(2)
    base, classes = DOMAINS[domain]
    folder = build_domain(domain, str(ROOT.parent / "shared"))
    pairs, _ = load_training_pairs(folder / "train", cards.ModelCard.load(resolve_model_path(base)), classes)
    last_round = {}

    def on_event(event, model):
        if isinstance(event, RoundDone):
            last_round["at"] = time.perf_counter()

    import segdemo.finetune.recipe as finetune

    fit_returned = {}
    score_base = finetune.score_base

    def timed_score_base(*args, **kwargs):  # the first call after `fit` returns
        fit_returned.setdefault("at", time.perf_counter())
        return score_base(*args, **kwargs)

    finetune.score_base = timed_score_base
    if pipeline == "autotuned":
        import segdemo.training.loop as training

        fixed = training.train_dataset
        training.train_dataset = lambda *args, **kwargs: fixed(*args, **{**kwargs, "parallel": True})
    started = time.perf_counter()
    run_finetune(pairs, FinetuneOptions(base=base, classes=classes, seed=0, recipe="full"), on_event=on_event)
    print(json.dumps({"gap": fit_returned["at"] - last_round["at"], "total": time.perf_counter() - started}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=8, help="runs per pipeline")
    parser.add_argument("--pipelines", nargs="+", default=["autotuned", "fixed"], choices=["autotuned", "fixed"])
    parser.add_argument("--domain", default="pets-binary-from-pets")
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child process's run
    args = parser.parse_args()
    if args.one is not None:
        return one_run(args.domain, args.one)
    results = {setting: [] for setting in args.pipelines}
    for index in range(args.runs):
        for setting in args.pipelines:  # alternating, so a slow spell of the machine hits both
            output = subprocess.run([sys.executable, __file__, "--one", setting, "--domain", args.domain],
                                    capture_output=True, text=True, check=True).stdout
            results[setting].append(json.loads(output.strip().splitlines()[-1]))
            print(f"run {index + 1} {setting}: " + ", ".join(
                f"{k} {v:.1f} s" for k, v in results[setting][-1].items()), flush=True)
    report = {}
    print(f"\n{'pipeline':>16} {'runs':>5} {'gaps > 5 s':>10} {'gap median':>10} {'gap max':>8} "
          f"{'total median':>12}")
    for setting, runs in results.items():
        gaps = [r["gap"] for r in runs]
        report[setting] = {"runs": len(runs), "stalls": sum(g > STALL_SECONDS for g in gaps),
                           "gap_median": round(statistics.median(gaps), 2), "gap_max": round(max(gaps), 2),
                           "total_median": round(statistics.median(r["total"] for r in runs), 1)}
        r = report[setting]
        print(f"{setting:>16} {r['runs']:>5} {r['stalls']:>10} {r['gap_median']:>10.2f} {r['gap_max']:>8.2f} "
              f"{r['total_median']:>12.1f}")
    print_json({"domain": args.domain, "pipelines": report})


if __name__ == "__main__":
    main()
