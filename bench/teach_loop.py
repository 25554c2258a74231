"""The teach loop (issue 12): does a person who labels the images the model is least sure of, two at a time,
and fine-tunes again after each pair of corrections, get a better model for the same labelling effort than one
who labels random images?

    python bench/teach_loop.py [--shared ../shared] [--domain cars-from-pets] [--rounds 5] [--seeds 0 1]
                               [--steps 100] [--pool extended] [--arms loop random baseline baseline-long]
                               [--score-limit 0]

A simulated user on a domain the bundled base model is poor at (default `cars-from-pets`: CamVid, car vs the
rest, from the pets base, new classes ["background", "object"]; or `membranes-from-pets`), domains built as
bench/finetune_robustness.py builds them (.cache/finetune_domains/). The ground-truth masks play a perfect
annotator's corrections.

- Pool of candidate images: the domain's 20 train pairs; with `--pool extended` (the default; cars only) also
  every other CamVid train image that finetune_robustness.py's car source draws (every 5th train image with
  over 2% car pixels), written the same way to .cache/teach_loop/pool/. The score set is CamVid *test*
  images, so the pool never overlaps it.
- Score: the domain's score/ pairs (60 images at their original resolution), foreground ("object") IoU.
- Arms, all with the same seeds and steps:
  * loop: each round predicts every pool image not yet chosen with the current model, picks the 2 with the
    highest `mean_uncertainty` (1 - top-two margin; ties by name) and fine-tunes FROM THE PREVIOUS ROUND'S
    MODEL (round 1 from the base, new classes; rounds 2+ keep the classes of the saved model) on all pairs
    chosen so far. Each round's model is saved with `save_result` under .cache/teach_loop/models/ and is the
    next round's base.
  * random: the same loop, but the 2 pairs of each round are the next two of a permutation of the pool drawn
    by numpy's default_rng(seed).
  * baseline: one fine-tune from the base on the first 2 x rounds (10) pairs of that same permutation, i.e.
    the random loop's final pairs trained in one go, with the same steps as one round.
  * baseline-long: the same, with rounds x steps (500): the chained arms' models have seen that many steps
    in all, so this separates "more optimizer steps" from "retrained round after round".
- Held-out pairs: `run_finetune` holds out round(n * val_share) pairs (at least one) by a hash of the names.
  val_share = 0.05 holds out exactly one pair for any 2-29 pairs (the fewest allowed; 0.2 would hold out 2 of
  10), so at 10 pairs the model trains on 9. The held-out pair only feeds run_finetune's own curves.
- Round 0 is the base model itself. Its classes (pet / background / border) are mapped to the new ones as
  run_finetune's `before` does, by overlap of its predictions with the masks, here fitted once on the whole
  pool; that figure is shared by all arms.
- Seconds of a round = selection (predicting the remaining pool, loop arm) + the fine-tune; scoring the 60
  images is timed apart.

Every finished fine-tune is cached (.cache/teach_loop/results.json keyed by domain / pool / steps / arm /
seed / round, plus the .keras files), so an interrupted run resumes where it stopped. Prints a line per
round, then a table per arm and round (min / median IoU over seeds, median seconds), whether the loop's curve
rose every round, loop vs random at 2 x rounds pairs per seed, one JSON line; plots the learning curves to
docs/teach_loop.png (needs matplotlib, a bench-only dependency: pip install matplotlib).
"""

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, print_json  # noqa: E402
from finetune_robustness import DOMAINS, build_domain, cars_source, foreground_iou, recipe_key, score_pairs, write_pair  # noqa: E402

CACHE = ROOT / ".cache" / "teach_loop"
RESULTS = CACHE / "results.json"
PLOT = ROOT / "docs" / "teach_loop.png"
PER_ROUND = 2
VAL_SHARE = 0.05  # one held-out pair for 2-29 pairs (see the docstring)
TEACH_DOMAINS = ["cars-from-pets", "membranes-from-pets"]
ARMS = ["loop", "random", "baseline", "baseline-long"]


# --- cache ---------------------------------------------------------------------------------------------------


def load_results():
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def store_result(key, value):
    results = load_results()
    results[key] = value
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1))
    tmp.replace(RESULTS)


# --- pool and scoring ----------------------------------------------------------------------------------------


def build_pool(domain, shared, folder, extended):
    """Folder of the pool's black/white pairs: the domain's train/ (20) plus, for cars with `extended`, the
    other car-bearing CamVid train images of finetune_robustness's source (never the test images scored)."""
    if not (extended and domain.startswith("cars")):
        return folder / "train"
    pool = CACHE / "pool" / domain
    if (pool / "masks").is_dir():
        return pool
    from segdemo.data.pairs import find_pairs

    candidates, _, white = cars_source(shared)
    for pair in find_pairs(folder / "train").pairs:  # the domain's 20, as written
        import shutil

        for sub in ("images", "masks"):
            (pool / sub).mkdir(parents=True, exist_ok=True)
        shutil.copy(pair.image, pool / "images" / Path(pair.image).name)
        shutil.copy(pair.mask, pool / "masks" / Path(pair.mask).name)
    have = {Path(p).stem for p in (pool / "images").iterdir()}
    for name, image, mask in candidates:
        if name not in have:
            write_pair(pool, name, image, white(mask))
    return pool


def score_segmenter(model, card, items):
    from segdemo.serving.segmenter import Segmenter

    started = time.perf_counter()
    iou = foreground_iou(Segmenter(model, card, freeze=False), items)
    return iou, time.perf_counter() - started


def round0_iou(base, pool_pairs, score_items, classes):
    """The base model scored on the new classes, its classes mapped by overlap on the pool (as `before`)."""
    from segdemo.finetune.data import resize_pairs
    from segdemo.finetune.scoring import base_class_mapping
    from segdemo.models import cards
    from segdemo.models.files import load_model_file
    from segdemo.serving.registry import resolve_model_path
    from segdemo.serving.segmenter import Segmenter
    from segdemo.training.evaluation import evaluate_arrays

    path = resolve_model_path(base)
    segmenter = Segmenter(load_model_file(path), cards.ModelCard.load(path), freeze=False)
    images, masks = resize_pairs([p[1:] for p in pool_pairs], segmenter.size)
    mapping = base_class_mapping(segmenter.model, images, masks, len(classes))
    started = time.perf_counter()
    result = evaluate_arrays(segmenter, score_items, classes=classes, label_map=mapping)
    white = 1  # "object"
    return {"iou": result["per_class_iou"][classes[white]], "pairs": [], "seconds": 0.0,
            "score_seconds": time.perf_counter() - started,
            "mapping": {name: classes[mapping[i]] for i, name in enumerate(segmenter.classes)}}


# --- one round -----------------------------------------------------------------------------------------------


def select_uncertain(model_path, pool_pairs, chosen, count):
    """The `count` not-yet-chosen pool pairs the model at `model_path` is least sure of."""
    from segdemo.models import cards
    from segdemo.models.files import load_model_file
    from segdemo.serving.registry import resolve_model_path
    from segdemo.serving.segmenter import Segmenter, mean_uncertainty

    path = resolve_model_path(model_path)
    segmenter = Segmenter(load_model_file(path), cards.ModelCard.load(path), freeze=False)
    scored = [(mean_uncertainty(segmenter.predict(image).probs), name)
              for name, image, _ in pool_pairs if name not in chosen]
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [name for _, name in scored[:count]], [round(u, 4) for u, _ in scored[:count]]


def finetune_round(pool_by_name, names, base, classes, steps, seed, out_path, score_items):
    from segdemo.finetune.options import FinetuneOptions
    from segdemo.finetune.recipe import run_finetune
    from segdemo.finetune.result import save_result

    pairs = [pool_by_name[name] for name in names]
    started = time.perf_counter()
    model, summary = run_finetune(pairs, FinetuneOptions(base=str(base), classes=classes, steps=steps, seed=seed,
                                                         val_share=VAL_SHARE))
    seconds = time.perf_counter() - started
    save_result(model, summary, out_path)
    iou, score_seconds = score_segmenter(model, summary.card, score_items)
    return {"iou": iou, "finetune_seconds": seconds, "score_seconds": score_seconds, "held_out": summary.held_out,
            "held_out_after_iou": summary.after["per_class_iou"].get("object"), "model_path": str(out_path)}


def run_arm(arm, seed, args, ctx):
    """Rounds of one arm for one seed (cached); returns [result of round 1..R] (baseline: one result)."""
    pool_names = sorted(ctx["pool_by_name"])
    order = [pool_names[i] for i in np.random.default_rng(seed).permutation(len(pool_names))]
    results = []
    chosen = []
    previous = ctx["base"]
    rounds = 1 if arm.startswith("baseline") else args.rounds
    steps = args.steps * args.rounds if arm == "baseline-long" else args.steps
    for r in range(1, rounds + 1):
        key = f"{ctx['key']}|{arm}|seed{seed}|round{r}"
        model_path = CACHE / "models" / ctx["model_tag"] / arm / f"seed{seed}" / f"round{r}.keras"
        cached = load_results().get(key)
        if cached and Path(cached["model_path"]).exists():
            result = cached
        else:
            started = time.perf_counter()
            uncertainties = None
            if arm == "loop":
                picked, uncertainties = select_uncertain(previous, ctx["pool"], set(chosen), PER_ROUND)
            elif arm == "random":
                picked = order[len(chosen): len(chosen) + PER_ROUND]
            else:
                picked = order[: PER_ROUND * args.rounds]
            select_seconds = time.perf_counter() - started
            names = chosen + picked
            classes = ctx["classes"] if r == 1 else None  # rounds 2+: the saved model already has them
            result = finetune_round(ctx["pool_by_name"], names, previous, classes, steps, seed, model_path,
                                    ctx["score_items"])
            result.update(pairs=names, picked=picked, uncertainty=uncertainties, select_seconds=select_seconds,
                          seconds=select_seconds + result["finetune_seconds"])
            store_result(key, result)
        chosen, previous = list(result["pairs"]), result["model_path"]
        results.append(result)
        label = "one-shot" if arm.startswith("baseline") else f"round {r}"
        print(f"{arm:8} seed {seed} {label:8} pairs {len(result['pairs']):2}  fg IoU {result['iou']:.4f}  "
              f"round {result['seconds']:6.1f} s (select {result['select_seconds']:.1f}, fine-tune "
              f"{result['finetune_seconds']:.1f}; scoring {result['score_seconds']:.1f})  "
              f"picked {'-' if arm.startswith('baseline') else result['picked']}"
              + (f" uncertainty {result['uncertainty']}" if result.get("uncertainty") else ""), flush=True)
    return results


# --- report --------------------------------------------------------------------------------------------------


def summarise(values):
    values = sorted(values)
    return {"min": round(values[0], 4), "median": round(float(np.median(values)), 4), "max": round(values[-1], 4)}


def plot(curves, baselines, round0, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    colors = {"loop": "tab:red", "random": "tab:blue"}
    labels = {"loop": "teach loop (2 least certain / round)", "random": "random loop (2 random / round)"}
    for arm, rows in curves.items():
        pairs = [0] + [row["pairs"] for row in rows]
        med = [round0] + [row["iou"]["median"] for row in rows]
        low = [round0] + [row["iou"]["min"] for row in rows]
        high = [round0] + [row["iou"]["max"] for row in rows]
        ax.plot(pairs, med, "o-", color=colors[arm], label=labels[arm])
        ax.fill_between(pairs, low, high, color=colors[arm], alpha=0.15)
    styles = {"baseline": ("s", "black", "one fine-tune on the random pairs, same steps"),
              "baseline-long": ("D", "tab:gray", "one fine-tune on the random pairs, rounds x steps")}
    for offset, (arm, baseline) in enumerate(baselines.items()):
        marker, color, label = styles[arm]
        ax.errorbar([baseline["pairs"] + 0.15 * (offset + 1)], [baseline["iou"]["median"]],
                    yerr=[[baseline["iou"]["median"] - baseline["iou"]["min"]],
                          [baseline["iou"]["max"] - baseline["iou"]["median"]]],
                    fmt=marker, color=color, capsize=4, label=label)
    ax.set_xlabel("labelled pairs (one held out by the fine-tune)")
    ax.set_ylabel("foreground IoU on the score set")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--domain", default="cars-from-pets", choices=TEACH_DOMAINS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--pool", default="extended", choices=["extended", "domain"],
                        help="extended: the domain's 20 train pairs plus the other car images (cars only)")
    parser.add_argument("--arms", nargs="+", default=ARMS, choices=ARMS)
    parser.add_argument("--score-limit", type=int, default=0, help="score only the first N images (smoke tests)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--plot", default=str(PLOT))
    args = parser.parse_args()
    from segdemo.finetune.data import load_training_pairs
    from segdemo.finetune.options import target_card
    from segdemo.models import cards
    from segdemo.serving.registry import resolve_model_path
    from segdemo.training.loop import limit_threads

    limit_threads(args.threads)
    started = time.perf_counter()
    folder = build_domain(args.domain, args.shared)
    base, classes = DOMAINS[args.domain]
    base_card = cards.ModelCard.load(resolve_model_path(base))
    pool_folder = build_pool(args.domain, args.shared, folder, args.pool == "extended")
    pool, problems = load_training_pairs(pool_folder, base_card, classes)
    if problems:
        print("pool problems:", problems)
    score_items = score_pairs(folder, target_card(base_card, classes))
    if args.score_limit:
        score_items = score_items[: args.score_limit]
    pool_tag = f"{args.pool}{len(pool)}"
    recipe = hashlib.sha1(recipe_key().encode()).hexdigest()[:8]
    ctx = {"pool": pool, "pool_by_name": {p[0]: p for p in pool}, "base": base, "classes": classes,
           "score_items": score_items,
           "key": f"{args.domain}|{pool_tag}|steps{args.steps}|score{len(score_items)}|val{VAL_SHARE}|{recipe}",
           "model_tag": f"{args.domain}-{pool_tag}-steps{args.steps}-{recipe}"}
    if PER_ROUND * args.rounds > len(pool):
        parser.error(f"{args.rounds} rounds need {PER_ROUND * args.rounds} pool pairs; the pool has {len(pool)}")
    print(f"{args.domain}: base {base}, pool {len(pool)} pairs ({pool_folder}), score {len(score_items)} images, "
          f"{args.steps} steps, val_share {VAL_SHARE}", flush=True)

    key0 = f"{ctx['key']}|round0"
    zero = load_results().get(key0)
    if not zero:
        zero = round0_iou(base, pool, score_items, classes)
        store_result(key0, zero)
    print(f"round 0 (base {base}, classes mapped {zero['mapping']}): fg IoU {zero['iou']:.4f}", flush=True)

    runs = {arm: {} for arm in args.arms}
    for seed in args.seeds:
        for arm in args.arms:
            runs[arm][seed] = run_arm(arm, seed, args, ctx)

    report = {"domain": args.domain, "base": base, "pool": len(pool), "score_images": len(score_items),
              "steps": args.steps, "val_share": VAL_SHARE, "seeds": args.seeds, "per_round": PER_ROUND,
              "round0_iou": round(zero["iou"], 4), "round0_mapping": zero["mapping"]}
    curves = {}
    print(f"\n{'arm':13} {'round':>5} {'pairs':>5}  {'fg IoU min / median':20} {'s/round median':>14}")
    print(f"{'base':13} {0:5} {0:5}  {zero['iou']:.3f} / {zero['iou']:.3f}")
    for arm in args.arms:
        rows = []
        count = 1 if arm.startswith("baseline") else args.rounds
        for r in range(count):
            ious = [runs[arm][s][r]["iou"] for s in args.seeds]
            secs = [runs[arm][s][r]["seconds"] for s in args.seeds]
            row = {"round": r + 1, "pairs": len(runs[arm][args.seeds[0]][r]["pairs"]), "iou": summarise(ious),
                   "seconds": summarise(secs), "per_seed": {str(s): round(v, 4) for s, v in zip(args.seeds, ious)}}
            rows.append(row)
            print(f"{arm:13} {'-' if arm.startswith('baseline') else r + 1:>5} {row['pairs']:5}  "
                  f"{row['iou']['min']:.3f} / {row['iou']['median']:.3f}{'':6} {row['seconds']['median']:14.1f}")
        report[arm] = rows
        if not arm.startswith("baseline"):
            curves[arm] = rows
    for arm in curves:
        rose = {}
        for s in args.seeds:
            values = [zero["iou"]] + [r["iou"] for r in runs[arm][s]]
            rose[str(s)] = all(b > a for a, b in zip(values[1:], values[2:]))  # rounds 1..R, each above the last
        report[f"{arm}_rose_every_round"] = rose
        print(f"{arm}: IoU rose every round (1..{args.rounds}) per seed: {rose}")
    final = PER_ROUND * args.rounds
    for other in ("random", "baseline", "baseline-long"):
        if "loop" in runs and other in runs:
            wins = {str(s): round(runs["loop"][s][-1]["iou"] - runs[other][s][-1]["iou"], 4) for s in args.seeds}
            report[f"loop_minus_{other}_at_{final}"] = wins
            verdict = ", ".join(f"seed {s}: {'loop better' if d > 0 else 'loop NOT better'} ({d:+.4f})"
                                for s, d in wins.items())
            print(f"loop vs {other} at {final} pairs: {verdict}")
    report["total_seconds_this_run"] = round(time.perf_counter() - started, 1)
    if curves:
        try:
            plot(curves, {arm: report[arm][0] for arm in ("baseline", "baseline-long") if arm in report},
                 zero["iou"], Path(args.plot),
                 f"{args.domain}: {args.steps} steps per fine-tune, seeds {args.seeds}, "
                 f"{len(score_items)} scored images")
            plot_path = Path(args.plot)
            report["plot"] = str(plot_path.relative_to(ROOT)) if plot_path.is_relative_to(ROOT) else args.plot
        except ImportError:
            print("matplotlib is not installed: no plot (pip install matplotlib)")
    print_json(report)


if __name__ == "__main__":
    main()
