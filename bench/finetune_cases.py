"""Fine-tune timing and before/after metrics on realistic cases built from the shared datasets.

    python bench/finetune_cases.py [--shared ../shared] [--pairs 20] [--epochs 10]

Cases (each fine-tunes the bundled pets model through the same `run_finetune` the app uses):
- isbi-membranes: 20 ISBI 2012 EM pairs, new classes membrane / cell (head re-initialised)
- pets-binary: 20 Oxford pets test-split pairs with masks made binary (pet + its border vs background)
- pets-same-classes: 20 other Oxford pets test-split pairs, the base model's 3 classes (so 'before' exists)
Prints a table and, last, one JSON line. Nothing here is a test; figures depend on the machine.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import print_json  # noqa: E402

from segdemo.data import find_pairs, load_pair
from segdemo.finetune import FinetuneOptions, run_finetune


def isbi_pairs(shared, count):
    pairs = find_pairs(Path(shared) / "datasets" / "isbi2012-membranes", "train").pairs
    return [(p.name, *load_pair(p, 2)) for p in sorted(pairs, key=lambda p: int(p.name))[:count]]


def pets_test_pairs(shared, count, offset):
    pairs = find_pairs(Path(shared) / "datasets" / "oxford-pets-subset", "test").pairs
    step = len(pairs) // count
    return [(p.name, *load_pair(p, 3)) for p in pairs[offset::step][:count]]


def binary_pets(pairs):
    """trimap classes pet 0, background 1, border 2 -> background 0, pet 1 (border counts as pet)."""
    return [(name, image, (mask != 1).astype(np.uint8)) for name, image, mask in pairs]


def run_case(name, pairs, options):
    epoch_ends, batch_ends = [], []
    started = time.perf_counter()

    def on_event(kind, epoch, step, logs, model):
        (epoch_ends if kind == "epoch" else batch_ends).append(time.perf_counter())

    result = run_finetune(pairs, options, on_event=on_event)
    total = time.perf_counter() - started
    per_epoch = float(np.median(np.diff(epoch_ends))) if len(epoch_ends) > 1 else float("nan")
    return {
        "case": name, "pairs": len(pairs), "classes": result.card["classes"], "epochs_run": len(epoch_ends),
        "input_size": result.card["input_size"], "total_s": round(total, 1),
        "first_epoch_s": round(epoch_ends[0] - started, 1),
        "later_epoch_s": round(per_epoch, 2),
        # model load + 'before' evaluation + tracing + one step; then the steady step time
        "to_first_step_s": round(batch_ends[0] - started, 1),
        "step_s": round(float(np.median(np.diff(batch_ends))), 3) if len(batch_ends) > 1 else None,
        "before": result.before, "after": result.after,
        "held_out": result.val_names,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default="../shared")
    parser.add_argument("--pairs", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--cases", nargs="*", default=["isbi-membranes", "pets-binary", "pets-same-classes"])
    args = parser.parse_args()
    # patience = epochs: all epochs run, so the timing is for exactly pairs x epochs
    base = dict(epochs=args.epochs, patience=args.epochs)
    builders = {
        "isbi-membranes": lambda: (isbi_pairs(args.shared, args.pairs),
                                   FinetuneOptions(classes=["membrane", "cell"], **base)),
        "pets-binary": lambda: (binary_pets(pets_test_pairs(args.shared, args.pairs, 0)),
                                FinetuneOptions(classes=["background", "pet"], **base)),
        "pets-same-classes": lambda: (pets_test_pairs(args.shared, args.pairs, 7), FinetuneOptions(**base)),
    }
    results = []
    for name in args.cases:
        pairs, options = builders[name]()
        results.append(run_case(name, pairs, options))
        row = results[-1]
        before = f"{row['before']['miou']:.4f}" if row["before"] else "n/a"
        print(f"{name:18s} pairs {row['pairs']} epochs {row['epochs_run']} size {row['input_size']} | "
              f"total {row['total_s']:6.1f}s (to the first step, incl. model load, 'before' eval and tracing, "
              f"{row['to_first_step_s']:.1f}s; first epoch {row['first_epoch_s']:.1f}s, "
              f"later epochs {row['later_epoch_s']:.2f}s) | held-out mIoU before {before} after "
              f"{row['after']['miou']:.4f}, pixel acc after {row['after']['pixel_acc']:.4f}", flush=True)
    print_json(results)


if __name__ == "__main__":
    main()
