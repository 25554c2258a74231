"""End to end through the API with `gradio_client`: cold start, `segment` round trips beside trivial echo
endpoints in the same run, the handler's own time split, and the server's memory after many requests.

    python bench/api_speed.py [--calls 30] [--memory-requests 200]

1. Cold start, in one run: `python -c "import gradio"` (the floor), then `python app.py` started -> the page
   answers (served before TensorFlow and the model load) -> first successful `segment` answer (a fresh
   process, one client that connects as soon as the page answers; the request waits for the model).
2. Round trips on `bench/api_server.py` (the app plus /echo, /echo_tiny, /echo_unqueued): for a 500x375
   JPEG, a 12 MP JPEG and a 1x1 PNG, `segment` and `echo` calls alternate; medians and p95, the difference,
   and the handler's decode / preprocess / model / postprocess / encode split as `segment` reports it.
3. Memory: the server's peak RSS (VmHWM) after --memory-requests requests in all.
Prints a table, then one JSON line. Everything stays on 127.0.0.1.
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import percentiles, print_json, print_table, rss_mb, start_server
from handler_speed import make_inputs

STEP_PATTERN = re.compile(r"\((decode [^)]*) ms\)")


def import_gradio_seconds():
    """Seconds for `python -c "import gradio"`: what serving any Gradio page costs at the least."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import gradio"], check=True)
    return time.perf_counter() - started


def cold_start(work, image):
    from gradio_client import Client, handle_file

    import_gradio_s = import_gradio_seconds()
    started = time.perf_counter()
    process, url, page_s = start_server(work / "cold.log")
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(image), "pets", "pet", 0.5, api_name="/segment")
        return {"import_gradio_s": round(import_gradio_s, 1), "page_s": round(page_s, 1),
                "page_minus_import_gradio_s": round(page_s - import_gradio_s, 1),
                "first_segment_s": round(time.perf_counter() - started, 1)}
    finally:
        process.kill()
        process.wait()


def handler_split(info):
    """{'decode': ms, ...} from segment's info line."""
    match = STEP_PATTERN.search(info)
    if not match:
        return {}
    return {step: float(value) for step, value in (part.rsplit(" ", 1) for part in match.group(1).split(" · "))}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--memory-requests", type=int, default=200)
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="segdemo-api-bench-"))
    inputs = make_inputs(work)
    result = {"cold_start": cold_start(work, inputs["500x375 JPEG"])}

    process, url, _ = start_server(work / "server.log", script="bench/api_server.py")
    requests = 0
    try:
        client = Client(url, verbose=False)
        rows = []
        for name, path in inputs.items():
            calls = args.calls if "12 MP" not in name else max(5, args.calls // 3)
            timings = {"segment": [], "echo": [], "echo_tiny": [], "echo_unqueued": []}
            splits = []
            for index in range(calls + 2):  # the first two of each are warm-up
                for endpoint in timings:
                    started = time.perf_counter()
                    if endpoint == "segment":
                        output = client.predict(handle_file(path), "pets", "pet", 0.5, api_name="/segment")
                    else:
                        client.predict(handle_file(path), api_name=f"/{endpoint}")
                    requests += 1
                    if index >= 2:
                        timings[endpoint].append(time.perf_counter() - started)
                        if endpoint == "segment":
                            splits.append(handler_split(output[-2]))  # (..., info, class-index mask)
            stats = {endpoint: percentiles(values) for endpoint, values in timings.items()}
            row = {"input": name, "calls": calls}
            for endpoint, figures in stats.items():
                row[f"{endpoint}_p50_ms"], row[f"{endpoint}_p95_ms"] = figures["p50_ms"], figures["p95_ms"]
            row["segment_minus_echo_ms"] = round(row["segment_p50_ms"] - row["echo_p50_ms"], 1)
            row["handler_ms"] = {step: round(float(np.median([s[step] for s in splits if step in s])), 1)
                                 for step in (splits[0] if splits else {})}
            rows.append(row)
        while requests < args.memory_requests:
            client.predict(handle_file(inputs["500x375 JPEG"]), "pets", "pet", 0.5, api_name="/segment")
            requests += 1
        result.update(rows=rows, requests=requests, server_rss_mb=round(rss_mb(process.pid), 1),
                      server_peak_rss_mb=round(rss_mb(process.pid, peak=True), 1))
    finally:
        process.kill()
        process.wait()

    cold = result["cold_start"]
    print(f"cold start: import gradio {cold['import_gradio_s']} s; app.py -> page {cold['page_s']} s "
          f"(+{cold['page_minus_import_gradio_s']} s), -> first segment answer {cold['first_segment_s']} s")
    print_table(rows, ["input", "calls", "segment_p50_ms", "segment_p95_ms", "echo_p50_ms", "echo_p95_ms",
                       "segment_minus_echo_ms", "echo_tiny_p50_ms", "echo_unqueued_p50_ms"])
    for row in rows:
        print(f"{row['input']}: handler " + ", ".join(f"{k} {v} ms" for k, v in row["handler_ms"].items()))
    print(f"server after {requests} requests: RSS {result['server_rss_mb']} MB, peak {result['server_peak_rss_mb']} MB")
    print_json(result)


if __name__ == "__main__":
    main()
