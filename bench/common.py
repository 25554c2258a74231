"""What the benchmark scripts share: a server on a free loopback port, timing loops, percentiles, memory
readings, and the output format (a table, then one JSON line)."""

import json
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.helpers import start_app  # noqa: E402  (the same launch as the tests')


def start_server(log_path, script="app.py", **env):
    """Start `script` (a Gradio app) on a free loopback port, with extra environment variables; returns
    (process, url, seconds until the page answered)."""
    return start_app(log_path, script, **env)


def rss_mb(pid=None, peak=False):
    """Resident memory of a process in MB (VmHWM, the peak, with `peak`)."""
    field = "VmHWM:" if peak else "VmRSS:"
    for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def child_pids(pid):
    """The child processes of `pid` (the model process, the spare fine-tune worker)."""
    return [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()]


def children_rss_mb(pid):
    """RSS in MB of each child process of `pid`, by pid."""
    return {child: round(rss_mb(child), 1) for child in child_pids(pid)}


def cpu_seconds(pid):
    """CPU time (user + system) a process has used so far; 0 once it has gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until_children_quiet(pid, quiet_s=3.0, limit_s=120.0):
    """Wait until the children of `pid` (the spare fine-tune worker starting: 20-30 s of one core after the
    first answer) use under 5% of a core for `quiet_s`; returns the seconds waited (`limit_s` at most)."""
    started = time.perf_counter()
    while time.perf_counter() - started < limit_s:
        children = child_pids(pid)
        before = sum(map(cpu_seconds, children))
        time.sleep(quiet_s)
        if sum(map(cpu_seconds, children)) - before < 0.05 * quiet_s:
            break
    return time.perf_counter() - started


def percentiles(seconds):
    values = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(values, 50)), 2), "p95_ms": round(float(np.percentile(values, 95)), 2),
            "n": len(values)}


def time_calls(function, runs, warmup=3):
    """Seconds of each of `runs` calls of `function()`, after `warmup` untimed calls."""
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return seconds


def print_table(rows, columns):
    """Rows (dicts) as an aligned text table of `columns`."""
    cells = [[str(row.get(column, "")) for column in columns] for row in rows]
    widths = [max(len(column), *(len(line[i]) for line in cells)) for i, column in enumerate(columns)]
    print("  ".join(column.ljust(width) for column, width in zip(columns, widths)))
    for line in cells:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths)))


def print_json(result):
    """The last line of every benchmark: its figures as one JSON object."""
    print(json.dumps(result), flush=True)


def seed_color3(labels, colors):
    """The seeds' way of colouring a mask (seed 000's `color3`): a Python loop over every pixel."""
    height, width = labels.shape
    rgb = np.zeros((height, width, 3), np.uint8)
    for y in range(height):
        for x in range(width):
            rgb[y, x] = colors[labels[y, x]]
    return rgb
