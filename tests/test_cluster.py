"""The cluster with real processes, no mocks: redis-server and HAProxy from Debian, two replicas (`python app.py`
with SEGDEMO_QUEUE) behind the balancer with sticky sessions, two fine-tune workers (`python -m segdemo.worker`),
all started once for this module by `segdemo.deploy.cluster.Cluster` (the launcher's own code). Skipped where
redis-server or haproxy is missing, except in CI (SEGDEMO_REQUIRE_BROWSER=1: `.ci/run` installs them)."""

import os
import re
import signal
import subprocess
import sys
import time
import zipfile

import pytest
from gradio_client import Client, handle_file

from segdemo.deploy.cluster import (
    CLUSTER_DIR,
    COMPOSE_BIND,
    COMPOSE_REPLICAS,
    Cluster,
    haproxy_config,
    missing_commands,
)
from tests.helpers import ROOT, add_square_pairs

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    bool(missing_commands()) and not os.environ.get("SEGDEMO_REQUIRE_BROWSER"),
    reason=f"Debian's {' and '.join(missing_commands())} not installed (apt-get install -y redis-server haproxy)")]

KEEP, NEW = "keep the base model's classes", "define new classes"
QUICK = dict(steps=12, learning_rate=1e-3, batch_size=2, input_size=64, val_share=0.25, augment=False,
             loss="ce_dice", freeze_encoder=True, flip_tta=False)
WORKER_LOST_S = 30  # the bound: a session hears of a killed worker within this
WORKER_SILENT_S = 10  # the replicas call a worker gone after this (default 20 s; the test of it waits that long)
CAT = "examples/chelsea_cat.png"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    environment = {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False", "SEGDEMO_MODEL_PROCESS": "off",
                   "SEGDEMO_WORKER_SILENT_SECONDS": str(WORKER_SILENT_S)}
    with Cluster(replicas=2, workers=2, folder=tmp_path_factory.mktemp("cluster"), environment=environment,
                 worker_args=["--no-preload"]) as started:
        started.wait_for_workers()
        yield started
        for process in [started.balancer, *started.replicas, *started.workers]:
            print(f"--- {process.name}\n{open(process.log_path).read()[-1500:]}")


@pytest.fixture(scope="module")
def pairs_zip(tmp_path_factory):
    path = tmp_path_factory.mktemp("pairs") / "pairs.zip"
    with zipfile.ZipFile(path, "w") as archive:
        add_square_pairs(archive, 6, seed=7)
    return str(path)


def finetune(client, pairs_zip, class_mode=KEEP, class_names="", **overrides):
    return client.submit([handle_file(pairs_zip)], "pets", class_mode, class_names, *{**QUICK, **overrides}.values(),
                         api_name="/finetune")


def wait_for_status(job, pattern, timeout=120):
    """The first streamed status matching `pattern` (the regex's match)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for update in job.outputs():
            found = re.search(pattern, str(update[0]))
            if found:
                return found
        time.sleep(0.1)
    raise AssertionError(f"no status matching {pattern!r} in {timeout}s: {[u[0] for u in job.outputs()][-3:]}")


def worker_pids(cluster):
    return {worker.pid for worker in cluster.workers}


def test_the_compose_balancer_config_is_the_template_filled_in():
    assert (CLUSTER_DIR / "haproxy.cfg").read_text() == haproxy_config(COMPOSE_BIND, COMPOSE_REPLICAS)
    checked = subprocess.run(["haproxy", "-c", "-f", str(CLUSTER_DIR / "haproxy.cfg")], capture_output=True,
                             text=True)
    assert checked.returncode == 0 and "Configuration file is valid" in checked.stdout + checked.stderr


def test_an_unreachable_queue_at_start_is_a_clear_error_naming_the_variable():
    closed = "redis://127.0.0.1:9/0"  # the discard port: nothing listens
    for command in ([sys.executable, "-m", "segdemo.worker"], [sys.executable, "app.py"]):
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "SEGDEMO_QUEUE": closed, "HF_HUB_OFFLINE": "1"})
        assert result.returncode == 2, result.stderr[-2000:]
        assert f"SEGDEMO_QUEUE={closed} cannot be reached" in result.stderr and "Traceback" not in result.stderr


def test_two_sessions_fine_tune_at_once_on_two_workers_and_segment_with_their_own(cluster, pairs_zip):
    first, second = Client(cluster.url, verbose=False), Client(cluster.url, verbose=False)
    assert first.cookies["SEGDEMO_REPLICA"] != second.cookies["SEGDEMO_REPLICA"]  # round robin, then sticky
    jobs = [finetune(first, pairs_zip), finetune(second, pairs_zip, NEW, "background, square")]
    running = {}  # job index -> (first seen training, seen done), by this test's clock
    while len(running) < 2 or any(end is None for _, end in running.values()):
        for index, job in enumerate(jobs):
            statuses = [str(update[0]) for update in job.outputs()]
            if index not in running and any(s.startswith(("Training on", "Round")) for s in statuses):
                running[index] = (time.monotonic(), None)
            if index in running and running[index][1] is None and job.done():
                running[index] = (running[index][0], time.monotonic())
        time.sleep(0.05)
    (start_a, end_a), (start_b, end_b) = running[0], running[1]
    assert start_a < end_b and start_b < end_a  # their running times overlap
    summaries = [job.result(timeout=60)[4] for job in jobs]
    workers = [summary["worker"] for summary in summaries]
    assert {worker["pid"] for worker in workers} == worker_pids(cluster)  # one job on each worker
    assert all(summary["device"].startswith(("CPU", "GPU")) and summary["steps_run"] == 12 for summary in summaries)
    assert "on " + workers[0]["host"] in jobs[0].result()[0]  # the tab's status says where it ran
    # each session segments with its own model, by the name the API returned
    segments = [client.submit(handle_file(CAT), summary["model_name"], "background", 0.5, api_name="/segment")
                for client, summary in zip((first, second), summaries)]  # at once: each replica loads its model
    areas = [segment.result(timeout=120)[4] for segment in segments]
    assert "pet" in str(areas[0]) and "square" not in str(areas[0])
    assert "square" in str(areas[1]) and "pet" not in str(areas[1])


def test_a_worker_killed_mid_job_the_session_is_told_trains_again_and_stop_reaches_it(cluster, pairs_zip):
    """A killed worker: the session hears of it and trains again on the worker left, where Stop (through Redis,
    in another process) ends its job (one test: the second job is both the new start and the one stopped)."""
    client = Client(cluster.url, verbose=False)
    job = finetune(client, pairs_zip, steps=2000)
    pid = int(wait_for_status(job, r"process (\d+)").group(1))
    assert pid in worker_pids(cluster)
    time.sleep(2)  # into the job: reading its inputs, loading the base, training
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()
    with pytest.raises(Exception, match="stopped answering .* press Train to start again") as raised:
        job.result(timeout=WORKER_LOST_S + 30)
    assert time.monotonic() - killed < WORKER_LOST_S, raised.value
    cluster.workers = [worker for worker in cluster.workers if worker.pid != pid]
    # the same session starts again, on the worker left; its training set and models were left as they were
    job = finetune(client, pairs_zip, steps=200)  # a round every 20 steps
    wait_for_status(job, r"^Round")
    assert client.predict(api_name="/stop_finetune") == "Stopping after the current step…"
    status, *_, summary, files = job.result(timeout=300)
    assert "Done" in status and summary["worker"]["pid"] == cluster.workers[0].pid
    assert summary["stopped_by_user"] and summary["steps_run"] < 200
    assert "stopped by you" in status and any(path.endswith(".keras") for path in files)


def test_a_browser_through_the_balancer_trains_and_uses_its_model(cluster, tmp_path):
    from tests.test_browser import CHROMIUM, browser_page, quick_training_options

    if not os.path.exists(CHROMIUM) and not os.environ.get("SEGDEMO_REQUIRE_BROWSER"):
        pytest.skip("Debian chromium is not installed (apt-get install -y chromium)")
    archive = tmp_path / "pairs.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        add_square_pairs(handle, 6, seed=5)
    with browser_page(cluster.url) as page:
        page.get_by_role("tab", name="Fine-tune").click()
        page.locator("#finetune-files input[type=file]").set_input_files(str(archive))
        page.locator("#pairs-report").get_by_text("6 pairs ready").wait_for(timeout=60_000)
        quick_training_options(page, 10)
        page.locator("#train-button").click()
        page.locator("#finetune-status").get_by_text("process").first.wait_for(timeout=120_000)
        page.locator("#finetune-status").get_by_text("Done").wait_for(timeout=240_000)
        assert re.search(r"on \S+ \(process \d+", page.locator("#finetune-status").inner_text())
        page.locator("#use-finetuned input").check()
        page.get_by_role("tab", name="Segment").click()
        page.locator("#input-image input[type=file]").set_input_files(CAT)
        page.locator("#segment-info").get_by_text("fine-tuned").first.wait_for(timeout=60_000)


def test_redis_gone_while_running_train_says_so_and_segment_keeps_working(cluster, pairs_zip):
    client = Client(cluster.url, verbose=False)
    cluster.redis.terminate()
    cluster.redis.wait(timeout=20)
    with pytest.raises(Exception, match=f"SEGDEMO_QUEUE={re.escape(cluster.queue_url)} cannot be reached"):
        finetune(client, pairs_zip).result(timeout=60)
    *_, info, _ = client.predict(handle_file(CAT), "pets", "pet", 0.5, api_name="/segment")
    assert "ms" in info
