"""Cold start of `python app.py`, in one run: the floors (`python -c "import gradio"`, `python -c "import keras"`)
beside the app started with an empty graph cache (a new user's first start), with the cache that start wrote
(every later start), and with that cache but without the model process (SEGDEMO_MODEL_PROCESS=off: the app
loads the model itself after the page, as before the process existed), each to the page and to the first
answered `segment`.

    python bench/cold_start.py [--runs 3] [--baseline DIR]

`--baseline DIR`: also start an older checkout's app.py (e.g. main's, unpacked with
`git archive main | tar -x -C DIR` and weights/ copied in) in the same runs, for a before/after pair.

Each run: import gradio, import keras, then app.py with a new empty SEGDEMO_GRAPH_CACHE, then app.py again on that
cache, with and without the model process. A start is a fresh process; one client connects as soon as the page answers
and sends `segment` (the request waits for the model). The app's own start-up profile (its "startup profile" and
registry log lines) is printed per start. Medians over the runs; a table, then one JSON line. Stays on 127.0.0.1.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from common import ROOT, children_rss_mb, print_json, print_table, rss_mb

from tests.helpers import free_port, stop_app

IMAGE = ROOT / "examples" / "chelsea_cat.png"
PROFILE = re.compile(r"(startup profile: .*|model \S+ (?:served from the graph cache|loaded, traced and frozen) .*)")
STARTS = (("empty_cache", {}), ("cached", {}), ("no_process", {"SEGDEMO_MODEL_PROCESS": "off"}))


def import_seconds(module):
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, capture_output=True)
    return time.perf_counter() - started


def app_start(log_path, cache_dir, root=ROOT, **env):
    """(seconds to the page, seconds to the first answered segment, the app's profile lines, RSS in MB of the app
    and of its children (the model process) at the first answer) of `root`'s app."""
    from gradio_client import Client, handle_file

    started = time.perf_counter()
    process, url, page_s = start_app(log_path, root, SEGDEMO_GRAPH_CACHE=str(cache_dir), **env)
    try:
        client = Client(url, verbose=False)
        client.predict(handle_file(str(IMAGE)), "pets", "pet", 0.5, api_name="/segment")
        answer_s = time.perf_counter() - started
        memory = {"app": round(rss_mb(process.pid), 1), "children": children_rss_mb(process.pid)}
    finally:
        stop_app(process)
    return page_s, answer_s, PROFILE.findall(Path(log_path).read_text()), memory


def start_app(log_path, root, **env):
    """`python app.py` in `root` on a free port: (process, URL, seconds until the page answered)."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), "HF_HUB_OFFLINE": "1",
           "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(root), **env}
    started = time.perf_counter()
    with open(log_path, "w") as log_file:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=root, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    while process.poll() is None:
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url, time.perf_counter() - started
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"app exited early:\n{Path(log_path).read_text()[-3000:]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="an older checkout whose app.py is started too")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="segdemo-cold-"))
    rows = []
    for run in range(args.runs):
        cache = work / f"graphs{run}"  # empty: the first start builds it
        row = {"run": run + 1, "import_gradio_s": import_seconds("gradio"), "import_keras_s": import_seconds("keras")}
        starts = [(label, ROOT, env) for label, env in STARTS] + (
            [("baseline", args.baseline, {})] if args.baseline else [])
        for label, root, env in starts:
            page_s, answer_s, profile, memory = app_start(work / f"{label}{run}.log", cache, root, **env)
            row[f"{label}_page_s"], row[f"{label}_first_answer_s"] = page_s, answer_s
            print(f"run {run + 1} {label}: page {page_s:.1f} s, first answer {answer_s:.1f} s; RSS at the first "
                  f"answer (MB): app {memory['app']}, its children {memory['children']}; " + " | ".join(profile))
        for label, *_ in starts:  # the answer in units of `import gradio` (holds better on a loaded machine)
            row[f"{label}_answer_per_import_gradio"] = row[f"{label}_first_answer_s"] / row["import_gradio_s"]
        rows.append({key: round(value, 2) if isinstance(value, float) else value for key, value in row.items()})
    medians = {key: round(statistics.median(row[key] for row in rows), 2) for key in rows[0] if key != "run"}
    print_table([*rows, {"run": "median", **medians}],
                ["run", "import_gradio_s", "import_keras_s", "baseline_page_s", "baseline_first_answer_s",
                 "no_process_page_s", "no_process_first_answer_s", "empty_cache_page_s", "empty_cache_first_answer_s",
                 "cached_page_s", "cached_first_answer_s", "no_process_answer_per_import_gradio",
                 "cached_answer_per_import_gradio"])
    print_json({"runs": args.runs, "medians": medians, "rows": rows})


if __name__ == "__main__":
    main()
