"""The fine-tune command:

    python -m segdemo.finetune --base pets --data DIR --out PATH [options]

prints each validation round, then the before/after metrics on the held-out pairs as one JSON object on its
last line."""

import argparse
import json
import threading
import time

from segdemo.finetune.data import load_training_pairs
from segdemo.finetune.events import RoundDone
from segdemo.finetune.options import RECIPES, FinetuneOptions
from segdemo.finetune.recipe import run_finetune
from segdemo.finetune.result import save_result
from segdemo.models import cards
from segdemo.training.losses import LOSSES


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = FinetuneOptions()
    parser.add_argument("--base", default=defaults.base, help="bundled model name or .keras path")
    parser.add_argument("--data", required=True, help="folder (images/+masks/ etc.), ZIP, or folder of loose files")
    parser.add_argument("--split", default=None)
    parser.add_argument("--out", required=True, help="output .keras path")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--input-size", type=int, default=defaults.input_size)
    parser.add_argument("--val-share", type=float, default=defaults.val_share)
    parser.add_argument("--loss", default=defaults.loss, choices=LOSSES)
    parser.add_argument("--no-augment", action="store_true")
    parser.add_argument("--unfreeze-encoder", action="store_true")
    parser.add_argument("--recipe", default=defaults.recipe, choices=RECIPES,
                        help="cached: the frozen encoder runs once per training view; full: every step through the "
                             "whole network (as before)")
    parser.add_argument("--no-flip-tta", action="store_true", help="serve without averaging with the mirror image")
    parser.add_argument("--classes", nargs="+", default=None,
                        help="new class names (a new head); black/white masks: black -> 'background', white -> "
                             "the last other class")
    parser.add_argument("--limit", type=int, default=0, help="use only the first N pairs")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--push-to", default=None, help="Hub model repo id to push to (token from HF_TOKEN)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    from segdemo.serving.registry import resolve_model_path

    options = FinetuneOptions(base=args.base, steps=args.steps, learning_rate=args.lr, batch_size=args.batch_size,
                              input_size=args.input_size, val_share=args.val_share, augment=not args.no_augment,
                              loss=args.loss, freeze_encoder=not args.unfreeze_encoder, flip_tta=not args.no_flip_tta,
                              classes=args.classes, seed=args.seed, recipe=args.recipe)
    base_card = cards.ModelCard.load(resolve_model_path(args.base))
    pairs_data, problems = load_training_pairs(args.data, base_card, args.classes, args.split, args.limit)
    for problem in problems:
        print(f"skipped: {problem}")
    started = time.perf_counter()

    def log_round(event, model):
        if isinstance(event, RoundDone):
            print(f"round {event.round}/{event.rounds} (step {event.step}): "
                  + ", ".join(f"{k} {v:.4f}" for k, v in event.logs.items() if v is not None), flush=True)

    model, summary = run_finetune(pairs_data, options, on_event=log_round, stop_event=threading.Event())
    save_result(model, summary, args.out)
    pushed = None
    if args.push_to:
        import os
        import tempfile

        from segdemo.models.hub import build_push_folder, push_folder

        with tempfile.TemporaryDirectory() as folder:
            pushed = push_folder(build_push_folder(args.out, folder, args.push_to), args.push_to,
                                 os.environ.get("HF_TOKEN"))
    print(json.dumps({"model": str(args.out), "pushed_to": pushed, "pairs": len(pairs_data),
                      "held_out": summary.held_out, "before": summary.before, "before_note": summary.before_note,
                      "after": summary.after, "steps_run": summary.steps_run,
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
