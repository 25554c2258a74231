"""Load, memory and training-while-serving figures for the app, measured through `gradio_client` against a
server this script starts on a free loopback port (`python app.py`).

    python bench/load.py [--clients 8] [--calls 50] [--memory-calls 1000]

Phases: idle latency (one client), concurrent load (N clients x M `segment` calls), server RSS after the
first 100 and after `--memory-calls` calls, `segment` latency while another session fine-tunes, and server
RSS before and after fine-tunes whose clients leave mid-training.
Prints a table and, last, one JSON line. Loops are bounded; everything stays on 127.0.0.1.
"""

import argparse
import io
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
from common import percentiles, print_json, rss_mb, start_server
from PIL import Image


def segment_calls(url, image, count, latencies, errors, stop=None):
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    for _ in range(count):
        if stop is not None and stop.is_set():
            break
        started = time.perf_counter()
        try:
            client.predict(handle_file(image), "pets", "pet", 0.5, api_name="/segment")
            latencies.append(time.perf_counter() - started)
        except Exception as error:  # noqa: BLE001 - counted
            errors.append(repr(error)[:200])


def concurrent(url, image, clients, calls):
    latencies, errors, threads = [], [], []
    started = time.perf_counter()
    for _ in range(clients):
        thread = threading.Thread(target=segment_calls, args=(url, image, calls, latencies, errors))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started


def training_zip(path, pairs=20, size=192):
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(pairs):
            image = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
            mask = np.ones((size, size), np.uint8)
            top, left, side = *rng.integers(0, size // 2, 2), size // 3
            image[top: top + side, left: left + side] = (200, 160, 90)
            mask[top: top + side, left: left + side] = 0
            for name, array, fmt in ((f"images/p{index}.jpg", image, "JPEG"), (f"masks/p{index}.png", mask, "PNG")):
                buffer = io.BytesIO()
                Image.fromarray(array).save(buffer, fmt)
                archive.writestr(name, buffer.getvalue())
    return path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--memory-calls", type=int, default=1000)
    parser.add_argument("--cancelled", type=int, default=4, help="fine-tunes abandoned mid-training")
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="segdemo_bench_"))
    image = work / "photo.jpg"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (375, 500, 3), dtype=np.uint8)).save(image, quality=90)
    process, url, _ = start_server(work / "server.log")
    results = {}
    try:
        latencies, errors, _ = concurrent(url, str(image), 1, 30)
        results["idle"] = {**percentiles(latencies), "errors": len(errors)}
        rss_first = rss_mb(process.pid)
        served = 30
        latencies, errors, seconds = concurrent(url, str(image), args.clients, args.calls)
        served += len(latencies) + len(errors)
        results["load"] = {**percentiles(latencies), "errors": len(errors), "clients": args.clients,
                           "calls_each": args.calls, "throughput_per_s": round(len(latencies) / seconds, 1)}
        results["load"]["p95_over_p50"] = round(results["load"]["p95_ms"] / results["load"]["p50_ms"], 2)
        if served < 100:
            concurrent(url, str(image), 1, 100 - served)
            served = 100
        rss_100 = rss_mb(process.pid)
        remaining = max(0, args.memory_calls - served)
        per_client = -(-remaining // args.clients)
        _, memory_errors, _ = concurrent(url, str(image), args.clients, per_client)
        served += per_client * args.clients
        results["memory"] = {"rss_after_start_mb": round(rss_first, 1), "rss_after_100_mb": round(rss_100, 1),
                             f"rss_after_{served}_mb": round(rss_mb(process.pid), 1), "errors": len(memory_errors)}
        results["memory"]["growth_pct"] = round(100 * (rss_mb(process.pid) / rss_100 - 1), 1)

        trainer = Client(url, verbose=False)
        job = trainer.submit([handle_file(str(training_zip(work / "pairs.zip")))], "pets",
                             "keep the base model's classes", "", 10, 5e-4, 4, 0, 0.2, True, "ce_dice", True,
                             api_name="/finetune")
        while not any("Epoch" in str(update[0]) for update in job.outputs()):
            time.sleep(0.2)  # wait until the training loop itself runs
        latencies, errors, stop, finished = [], [], threading.Event(), {}
        watcher = threading.Thread(target=lambda: (finished.update(summary=job.result(timeout=600)[4]), stop.set()))
        watcher.start()
        segment_calls(url, str(image), 200, latencies, errors, stop)
        watcher.join()
        summary = finished["summary"]
        results["during_finetune"] = {**percentiles(latencies), "errors": len(errors),
                                      "finetune_wall_s": summary["wall_seconds"], "epochs": summary["epochs_run"],
                                      "finetune_in_worker_s": summary["seconds"]}
        results["during_finetune"]["p50_over_idle"] = round(
            results["during_finetune"]["p50_ms"] / results["idle"]["p50_ms"], 2)

        # fine-tunes abandoned mid-training (the client leaves): what they held must be freed
        rss_before = rss_mb(process.pid)
        for _ in range(args.cancelled):
            leaver = Client(url, verbose=False)
            job = leaver.submit([handle_file(str(work / "pairs.zip"))], "pets", "keep the base model's classes", "",
                                50, 5e-4, 4, 0, 0.2, True, "ce_dice", True, api_name="/finetune")
            while not any("Epoch" in str(update[0]) for update in job.outputs()):
                time.sleep(0.2)
            job.cancel()
            leaver.close()
            time.sleep(5)  # the stopped run finishes its batch and scores the held-out pairs
        concurrent(url, str(image), 1, 5)
        results["cancelled_finetunes"] = {"runs": args.cancelled, "rss_before_mb": round(rss_before, 1),
                                          "rss_after_mb": round(rss_mb(process.pid), 1)}
        results["cancelled_finetunes"]["growth_mb_per_run"] = round(
            (results["cancelled_finetunes"]["rss_after_mb"] - rss_before) / max(args.cancelled, 1), 1)
    finally:
        process.terminate()
        process.wait(timeout=30)
    for phase, figures in results.items():
        print(f"{phase:16s} " + ", ".join(f"{key} {value}" for key, value in figures.items()))
    print_json(results)


if __name__ == "__main__":
    main()
