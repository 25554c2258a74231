"""The cluster on this machine (segdemo.deploy.cluster: redis-server, HAProxy, replicas, workers):

    python bench/scale.py [--jobs 4] [--steps 30] [--pairs 10] [--clients 4] [--seconds 20]

1. Four fine-tunes queued at once (four gradio_client sessions on one replica) with two workers, then with one:
   seconds until the last is done. On a 2-core machine two workers share the same two cores, so the gain is
   bounded by the cores, not by the queue.
2. The queue's own cost per job: one fine-tune's time to the worker taking it, to the first figures and to Done,
   on the embedded default (`python app.py`, its own SQLite queue and worker) and through Redis (one worker).
3. `segment` through the balancer: `--clients` sessions calling it for `--seconds`, with one and with two
   replicas: requests per second and the median latency.
Every worker preloads as a started one does; each step starts when the workers are idle. Prints a table, then
one JSON line."""

import argparse
import statistics
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
from common import ROOT, print_json, print_table, start_server, wait_until_children_quiet

from segdemo.deploy.cluster import Cluster
from tests.helpers import encoded, square_pairs, stop_app

ENVIRONMENT = {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
CAT = str(ROOT / "examples" / "chelsea_cat.png")


def pairs_zip(path, count, size=128):
    images, masks = square_pairs(count, size, np.random.default_rng(0))
    with zipfile.ZipFile(path, "w") as archive:
        for index, (image, mask) in enumerate(zip(images, masks)):
            archive.writestr(f"images/p{index}.jpg", encoded(image, "JPEG"))
            archive.writestr(f"masks/p{index}.png", encoded((1 - mask).astype(np.uint8)))  # pets: 0 is the pet
    return str(path)


def finetune(url, archive, steps):
    """One session's fine-tune: seconds from submitting to the worker taking it, to the first round, to Done."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    started = time.perf_counter()
    job = client.submit([handle_file(archive)], "pets", "keep the base model's classes", "", steps, 1e-3, 4, 0,
                        0.2, True, "ce_dice", True, True, api_name="/finetune")
    marks = {}
    while not job.done():
        for update in job.outputs():
            status = str(update[0])
            if status.startswith("Training on"):
                marks.setdefault("taken_s", time.perf_counter() - started)
            if status.startswith("Round"):
                marks.setdefault("first_figures_s", time.perf_counter() - started)
        time.sleep(0.05)
    summary = job.result()[4]
    return {**marks, "done_s": time.perf_counter() - started, "worker": summary["worker"]["pid"]}


def queued_finetunes(url, archive, steps, jobs):
    """`jobs` fine-tunes submitted at once: (seconds until the last is done, their workers)."""
    results = [None] * jobs
    started = time.perf_counter()
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, finetune(url, archive, steps)))
               for i in range(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started, sorted({result["worker"] for result in results})


def segment_rate(url, clients, seconds):
    """(requests per second, median seconds) of `clients` sessions calling `segment` for `seconds`."""
    from gradio_client import Client, handle_file

    sessions = [Client(url, verbose=False) for _ in range(clients)]
    for session in sessions:
        session.predict(handle_file(CAT), "pets", "pet", 0.5, api_name="/segment")  # warm: models, connections
    latencies, deadline = [], time.perf_counter() + seconds

    def call(session):
        while time.perf_counter() < deadline:
            begun = time.perf_counter()
            session.predict(handle_file(CAT), "pets", "pet", 0.5, api_name="/segment")
            latencies.append(time.perf_counter() - begun)

    threads = [threading.Thread(target=call, args=(session,)) for session in sessions]
    begun = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return len(latencies) / (time.perf_counter() - begun), statistics.median(latencies)


def quiet(cluster):
    for process in [*cluster.replicas, *cluster.workers]:
        wait_until_children_quiet(process.pid, limit_s=60)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--pairs", type=int, default=10)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="segdemo_scale_"))
    archive = pairs_zip(folder / "pairs.zip", args.pairs)
    rows, result = [], {"jobs": args.jobs, "steps": args.steps, "pairs": args.pairs}

    process, url, _ = start_server(folder / "embedded.log", **ENVIRONMENT)  # the embedded default
    try:
        finetune(url, archive, args.steps)  # its worker started and traced, as a user's finds it
        time.sleep(5)
        embedded = finetune(url, archive, args.steps)
    finally:
        stop_app(process)
    rows.append({"what": "one fine-tune, embedded queue", **embedded})
    print(rows[-1], flush=True)

    with Cluster(replicas=2, workers=2, folder=folder / "two", environment=ENVIRONMENT) as cluster:
        cluster.wait_for_workers()
        quiet(cluster)
        replica = cluster.replica_urls[0]
        result["segment_2_replicas"] = segment_rate(cluster.url, args.clients, args.seconds)
        finetune(replica, archive, args.steps)  # each worker's first job pays its tracing: not measured
        finetune(replica, archive, args.steps)
        wall, workers = queued_finetunes(replica, archive, args.steps, args.jobs)
        rows.append({"what": f"{args.jobs} fine-tunes queued, 2 workers", "done_s": wall, "worker": workers})
        print(rows[-1], result, flush=True)
        cluster.workers.pop().terminate()
        time.sleep(5)
        redis = finetune(replica, archive, args.steps)
        rows.append({"what": "one fine-tune, Redis queue, 1 worker", **redis})
        print(rows[-1], flush=True)
        wall, workers = queued_finetunes(replica, archive, args.steps, args.jobs)
        rows.append({"what": f"{args.jobs} fine-tunes queued, 1 worker", "done_s": wall, "worker": workers})
    with Cluster(replicas=1, workers=0, folder=folder / "one", environment=ENVIRONMENT) as cluster:
        quiet(cluster)
        result["segment_1_replica"] = segment_rate(cluster.url, args.clients, args.seconds)
    for replicas in (1, 2):
        rate, median = result.pop(f"segment_{replicas}_replica{'s' if replicas == 2 else ''}")
        rows.append({"what": f"segment, {args.clients} clients, {replicas} replica(s)",
                     "requests_per_s": round(rate, 2), "median_s": round(median, 3)})
    for row in rows:
        for key in ("taken_s", "first_figures_s", "done_s"):
            if key in row:
                row[key] = round(row[key], 1)
    print_table(rows, ["what", "taken_s", "first_figures_s", "done_s", "worker", "requests_per_s", "median_s"])
    print_json({**result, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
