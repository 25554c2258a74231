"""Shared fixtures: offline Hub, quiet TensorFlow, a launched app server, small generated images."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import socket  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SERVER_START_TIMEOUT = 180
SLOW_FIXTURES = {"app_url", "server_log", "page"}  # a launched server or a browser: marked slow by themselves


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def server_log(tmp_path_factory):
    """Where the launched app server writes its log."""
    return tmp_path_factory.mktemp("server") / "server.log"


def start_app(log_path, **env):
    """Start `python app.py` on a free local port with extra environment variables; returns (process, URL)
    once the page answers."""
    port = free_port()
    env = {**os.environ, "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port), **env}
    with open(log_path, "w") as log_file:
        process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log_file,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + SERVER_START_TIMEOUT
    while time.time() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"app exited early:\n{log_path.read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return process, url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"app did not start in {SERVER_START_TIMEOUT}s:\n{log_path.read_text()[-3000:]}")


def stop_app(process, log_path):
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    print(log_path.read_text()[-2000:])


@pytest.fixture(scope="session")
def app_url(server_log):
    """Start `python app.py` as a real server on a free local port; yield its URL."""
    process, url = start_app(server_log)
    yield url
    stop_app(process, server_log)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def blocky_image(rng, height=96, width=128, block=16):
    """An RGB image of flat random-colour blocks (interpolation only changes block edges)."""
    small = rng.integers(0, 256, (height // block + 1, width // block + 1, 3), dtype=np.uint8)
    return np.repeat(np.repeat(small, block, 0), block, 1)[:height, :width]
