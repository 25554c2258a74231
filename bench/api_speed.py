"""End to end through the API with `gradio_client`: `segment` round trips beside trivial echo endpoints in the
same run, the handler's own time split, and the memory of the server and of its spare fine-tune worker over
many requests. (The cold start: bench/cold_start.py.)

    python bench/api_speed.py [--calls 30] [--memory-requests 300]

1. Round trips on `bench/api_server.py` (the app plus /echo, /echo_tiny, /echo_unqueued), once the spare
   fine-tune worker has started (it takes a core for 20-30 s after the first answer): for a 500x375 JPEG,
   a 12 MP JPEG and a 1x1 PNG, `segment` and `echo` calls alternate; medians and p95, the difference, the
   handler's decode / preprocess / model / postprocess / encode split as `segment` reports it, and the
   difference inside the server (Gradio's own request traces, GRADIO_PROFILING=1: queue to result, upload
   excluded) against what lies outside it (the client fetching `segment`'s five output files against echo's
   three). Then one output file fetched the way `gradio_client` fetches each (a new HTTP client per file)
   against a kept-alive connection.
2. Memory: the server's RSS once started (after its first answer), after the round trips, then after the
   100th and the last of --memory-requests further 500x375 `segment` calls (growth between them would be a
   leak), its peak (VmHWM), and the spare fine-tune worker's RSS (the server's child).
Prints a table, then one JSON line. Everything stays on 127.0.0.1.
"""

import argparse
import re
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from common import (
    children_rss_mb,
    percentiles,
    print_json,
    print_table,
    rss_mb,
    start_server,
    time_calls,
    wait_until_children_quiet,
)
from handler_speed import make_inputs

STEP_PATTERN = re.compile(r"\((decode [^)]*) ms\)")


def handler_split(info):
    """{'decode': ms, ...} from segment's info line."""
    match = STEP_PATTERN.search(info)
    if not match:
        return {}
    return {step: float(value) for step, value in (part.rsplit(" ", 1) for part in match.group(1).split(" · "))}


def server_p50_ms(url, endpoint, phase="total"):
    """Median of a phase (total: queue to result, upload excluded) of `endpoint`'s requests since the last
    `clear_traces`, from Gradio's profiler."""
    traces = httpx.get(f"{url}gradio_api/profiling/traces").json()
    values = [trace[f"{phase}_ms"] for trace in traces if trace["fn_name"] == endpoint]
    return round(float(np.median(values)), 1) if values else float("nan")


def clear_traces(url):
    httpx.post(f"{url}gradio_api/profiling/clear")


def file_fetch_ms(file_url, runs=20):
    """p50 ms to fetch one output file the way gradio_client does (`httpx.stream` without a client: a new one,
    and a new connection, per file) against one kept-alive `httpx.Client`."""
    def fetch_new():
        with httpx.stream("GET", file_url) as response:
            response.read()

    with httpx.Client() as client:
        kept_alive = percentiles(time_calls(lambda: client.get(file_url).content, runs))["p50_ms"]
    return {"new_client": percentiles(time_calls(fetch_new, runs))["p50_ms"], "kept_alive": kept_alive}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=30)
    parser.add_argument("--memory-requests", type=int, default=300)
    args = parser.parse_args()
    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="segdemo-api-bench-"))
    inputs = make_inputs(work)
    result = {}
    memory = {}
    process, url, _ = start_server(work / "server.log", script="bench/api_server.py", GRADIO_PROFILING="1")
    requests = 0
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(inputs["500x375 JPEG"]), "pets", "pet", 0.5, api_name="/segment")
        requests += 1
        result["spare_worker_busy_s"] = round(wait_until_children_quiet(process.pid), 1)
        memory["after_start"] = round(rss_mb(process.pid), 1)
        rows = []
        for name, path in inputs.items():
            calls = args.calls if "12 MP" not in name else max(5, args.calls // 3)
            timings = {"segment": [], "echo": [], "echo_tiny": [], "echo_unqueued": []}
            splits = []
            clear_traces(url)
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
            row["server_segment_p50_ms"] = server_p50_ms(url, "segment")
            row["server_echo_p50_ms"] = server_p50_ms(url, "echo")
            row["in_server_ms"] = round(row["server_segment_p50_ms"] - row["server_echo_p50_ms"], 1)
            row["outside_server_ms"] = round(row["segment_minus_echo_ms"] - row["in_server_ms"], 1)
            row["handler_ms"] = {step: round(float(np.median([s[step] for s in splits if step in s])), 1)
                                 for step in (splits[0] if splits else {})}
            rows.append(row)
        urls_only = Client(url, verbose=False, download_files=False)
        output = urls_only.predict(handle_file(inputs["1x1 PNG"]), "pets", "pet", 0.5, api_name="/segment")
        requests += 1
        result["file_fetch_p50_ms"] = file_fetch_ms(output[0]["url"])
        memory[f"after_round_trips_{requests}"] = round(rss_mb(process.pid), 1)
        for count in range(1, args.memory_requests + 1):  # then only 500x375 segment calls
            client.predict(handle_file(inputs["500x375 JPEG"]), "pets", "pet", 0.5, api_name="/segment")
            requests += 1
            if count in (100, args.memory_requests):
                memory[f"segment_{count}"] = round(rss_mb(process.pid), 1)
        result.update(rows=rows, requests=requests, server_rss_mb=memory, server_peak_rss_mb=round(
            rss_mb(process.pid, peak=True), 1), spare_worker_rss_mb=children_rss_mb(process.pid))
    finally:
        process.kill()
        process.wait()

    print_table(rows, ["input", "calls", "segment_p50_ms", "segment_p95_ms", "echo_p50_ms", "echo_p95_ms",
                       "segment_minus_echo_ms", "in_server_ms", "outside_server_ms", "echo_tiny_p50_ms",
                       "echo_unqueued_p50_ms"])
    for row in rows:
        print(f"{row['input']}: handler " + ", ".join(f"{k} {v} ms" for k, v in row["handler_ms"].items()))
    print(f"the spare worker's start took {result['spare_worker_busy_s']} s after the first answer; one output "
          f"file fetched as gradio_client does: {result['file_fetch_p50_ms']['new_client']} ms, kept alive: "
          f"{result['file_fetch_p50_ms']['kept_alive']} ms")
    print(f"server RSS (MB): {result['server_rss_mb']}, peak {result['server_peak_rss_mb']}; spare worker RSS "
          f"(MB, by pid): {result['spare_worker_rss_mb']}")
    print_json(result)


if __name__ == "__main__":
    main()
