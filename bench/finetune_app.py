"""A fine-tune through the app, as a user runs it: 20 pairs (or `--pairs N`, the first N by name) of a new
domain as one ZIP, the tab's defaults.

    python bench/finetune_app.py [--domain pets-binary-from-pets] [--pairs 20] [--shared ../shared]

Prints: seconds from Train to the first round's figures and to the finished model, and another user's
`segment` latency while the training runs against the same calls with the server idle (ratio); the same
fine-tune again with the server otherwise idle; then the
seconds of one teach-loop round (a bare `retrain` call: the session's set, here the 20 uploaded pairs, from
the fine-tuned model, at its default steps), then one JSON line.
The domain folders come from bench/finetune_robustness.py.
"""

import argparse
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

from common import ROOT, print_json, start_server  # noqa: E402
from finetune_robustness import DOMAINS, build_domain  # noqa: E402

SEGMENT_IMAGE = ROOT / "examples" / "chelsea_cat.png"
WORKER_READY_S = 45  # after the first answer: what a real user arriving later finds ready
IDLE_CALLS = 20


def pairs_zip(folder, path, pairs):
    """The domain's first `pairs` training pairs (by name) as one ZIP of images/ and masks/."""
    names = sorted(file.stem for file in (folder / "train" / "images").iterdir())[:pairs]
    with zipfile.ZipFile(path, "w") as archive:
        for sub in ("images", "masks"):
            for file in sorted((folder / "train" / sub).iterdir()):
                if file.stem in names:
                    archive.write(file, f"{sub}/{file.name}")
    return path


def segment_latencies(client, stop_when, handle_file):
    """Seconds of each `segment` call made until `stop_when()`."""
    seconds = []
    while not stop_when():
        started = time.perf_counter()
        client.predict(handle_file(str(SEGMENT_IMAGE)), "pets", "pet", 0.5, api_name="/segment")
        seconds.append(time.perf_counter() - started)
        time.sleep(0.2)  # a person clicking, not a load test
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--domain", default="pets-binary-from-pets", choices=list(DOMAINS))
    parser.add_argument("--shared", default=str(ROOT.parent / "shared"))
    parser.add_argument("--pairs", type=int, default=20, help="the first N of the domain's 20 pairs")
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    base, classes = DOMAINS[args.domain]
    archive = pairs_zip(build_domain(args.domain, args.shared), Path(tempfile.mkdtemp()) / "pairs.zip", args.pairs)
    process, url, _ = start_server(Path(tempfile.mkdtemp()) / "server.log")
    try:
        trainer, visitor = Client(url, verbose=False), Client(url, verbose=False)
        count = iter(range(IDLE_CALLS + 3))
        idle = segment_latencies(visitor, lambda: next(count, None) is None, handle_file)[3:]
        # the fine-tune worker (started by the first answer, at the lowest priority) imports TensorFlow, loads the
        # bases and traces the two usual jobs (17-20 s here); after 20 s the first job still waited for that
        time.sleep(WORKER_READY_S)
        mode = "define new classes" if classes else "keep the base model's classes"
        started = time.perf_counter()
        job = trainer.submit([handle_file(str(archive))], base, mode, ", ".join(classes or []),
                             api_name="/finetune")
        busy = []
        visitor_thread = threading.Thread(target=lambda: busy.extend(segment_latencies(visitor, job.done,
                                                                                          handle_file)))
        first_round = None
        visitor_thread.start()
        while not job.done():
            if first_round is None and any("Round" in str(update[0]) for update in job.outputs()):
                first_round = time.perf_counter() - started
            time.sleep(0.1)
        result = job.result()
        finished = time.perf_counter() - started
        visitor_thread.join()
        time.sleep(20)  # the worker prepares the next job's model when one ends; a person takes longer to go on
        started = time.perf_counter()  # the same fine-tune with nobody else using the server
        alone = trainer.submit([handle_file(str(archive))], base, mode, ", ".join(classes or []),
                               api_name="/finetune").result()
        finished_alone = time.perf_counter() - started
        time.sleep(20)
        started = time.perf_counter()  # a teach-loop round: a bare retrain on the session's set, from its model
        retrained = trainer.predict(api_name="/retrain")
        retrain_s = time.perf_counter() - started
    finally:
        process.kill()
    summary = result[4]
    report = {"domain": args.domain, "pairs": summary["pairs"], "steps": summary["steps_run"],
              "first_round_s": round(first_round, 1), "finished_s": round(finished, 1),
              "held_out_miou_before": summary["before"]["miou"], "held_out_miou_after": summary["after"]["miou"],
              "segment_idle_median_s": round(statistics.median(idle), 3),
              "segment_during_training_median_s": round(statistics.median(busy), 3) if busy else None,
              "segment_calls_during_training": len(busy), "finished_alone_s": round(finished_alone, 1),
              "held_out_miou_after_alone": alone[4]["after"]["miou"],
              "retrain_s": round(retrain_s, 1), "retrain_pairs": retrained["pairs"],
              "retrain_steps": retrained["steps_run"], "retrain_miou_before": retrained["before"]["miou"],
              "retrain_miou_after": retrained["after"]["miou"]}
    if busy:
        report["segment_slowdown"] = round(statistics.median(busy) / statistics.median(idle), 2)
    for key, value in report.items():
        print(f"{key:34} {value}")
    print_json(report)


if __name__ == "__main__":
    sys.exit(main())
