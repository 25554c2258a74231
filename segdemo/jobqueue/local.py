"""The embedded default: with SEGDEMO_QUEUE unset, the app's queue is a SQLite file of its own and one worker
process of its own serves it (`python -m segdemo.worker` at the lowest CPU priority, so serving keeps the CPU).
It is started ahead of the first job and keeps TensorFlow imported and the bundled bases loaded, so a job's first
figures arrive seconds after Train; it ends with the app (it watches the app's process id), and is started again
when it has died."""

import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from segdemo.config import PROJECT_ROOT, QUEUE_ENV

WORKER_NICENESS = 19
PARENT_ENV = "SEGDEMO_WORKER_PARENT"  # the app's process id: its local worker exits when the app is gone
QUEUE_DIR = Path(tempfile.gettempdir()) / "segdemo_queue"


def embedded_url():
    """This app process's own SQLite queue (a fresh file: jobs of an earlier run of the app are not taken)."""
    QUEUE_DIR.mkdir(exist_ok=True)
    path = QUEUE_DIR / f"{os.getpid()}.db"
    for leftover in QUEUE_DIR.glob(f"{path.name}*"):  # the file and its -wal/-shm companions
        leftover.unlink(missing_ok=True)
    return f"sqlite:///{path}"


class LocalWorker:
    """The app's own worker process on the embedded queue `url`, started with `environment` (the app's models)."""

    def __init__(self):
        self.process, self.log_path, self._lock = None, None, threading.Lock()
        self.starts = 0

    def ensure(self, url, environment):
        """Start the worker unless it runs; returns the process."""
        with self._lock:
            if self.process is None or self.process.poll() is not None:
                self.process = self._launch(url, environment)
            return self.process

    def _launch(self, url, environment):
        self.starts += 1
        with tempfile.NamedTemporaryFile("w", prefix="segdemo_worker_", suffix=".log", delete=False) as log_file:
            self.log_path = log_file.name
            environment = {**os.environ, **environment, QUEUE_ENV: url, PARENT_ENV: str(os.getpid())}
            return subprocess.Popen([sys.executable, "-m", "segdemo.worker"], cwd=PROJECT_ROOT, env=environment,
                                    stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                    preexec_fn=lambda: os.nice(WORKER_NICENESS))

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def close(self):
        with self._lock:
            if self.alive():
                self.process.terminate()
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self.process.kill()
            self.process = None


def exit_with_parent(parent_pid, poll_seconds=1.0):
    """In the local worker: end this process when the app that started it is gone (a thread)."""

    def watch():
        while os.getppid() == parent_pid:
            threading.Event().wait(poll_seconds)
        os.kill(os.getpid(), signal.SIGKILL)  # nothing to keep: its jobs' results had nobody to go to

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
