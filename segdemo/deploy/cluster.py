"""segdemo as a cluster on one machine, for trying it:

    python -m segdemo.deploy.cluster --replicas 2 --workers 2 --port 8080

starts `redis-server` (the fine-tune job queue), the fine-tune workers (`python -m segdemo.worker`), the replicas
(`python app.py`, each on a port of its own) and HAProxy in front of them with sticky sessions, from the Debian
packages (apt-get install redis-server haproxy) and this checkout; prints the URL; stops them all on Ctrl-C or
SIGTERM. Each process's log is in the folder it prints. deploy/cluster/ holds HAProxy's configuration template
and a compose.yaml for Docker (replicas, a GPU worker, Redis, the balancer)."""

import argparse
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from string import Template

from segdemo.config import PROJECT_ROOT, QUEUE_ENV

CLUSTER_DIR = PROJECT_ROOT / "deploy" / "cluster"
HAPROXY_TEMPLATE = CLUSTER_DIR / "haproxy.cfg.template"
COMPOSE_REPLICAS = ("app1:7860", "app2:7860")  # compose.yaml's replicas, which deploy/cluster/haproxy.cfg lists
COMPOSE_BIND = ":8080"
START_TIMEOUT_S = 240
COMMANDS = {"redis-server": "redis-server", "haproxy": "haproxy"}  # command -> its Debian package


def haproxy_config(bind, replicas):
    """HAProxy's configuration: the template with the address it listens on and one server line per replica."""
    servers = "\n".join(f"    server replica{index} {address} check inter 2s cookie replica{index}"
                        for index, address in enumerate(replicas, 1))
    return Template(HAPROXY_TEMPLATE.read_text()).substitute(bind=bind, servers=servers)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def missing_commands():
    """The Debian packages this needs and the machine lacks."""
    return [package for command, package in COMMANDS.items() if shutil.which(command) is None]


def wait_for_url(url, process, log_path, timeout=START_TIMEOUT_S):
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited early:\n{Path(log_path).read_text()[-3000:]}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout}s:\n{Path(log_path).read_text()[-3000:]}")


class Cluster:
    """Redis, `workers` fine-tune workers, `replicas` app replicas and HAProxy on `port`, logs in `folder`.
    `environment`: extra variables for the replicas and workers. Use as a context manager, or start()/stop()."""

    def __init__(self, replicas=2, workers=2, port=0, folder=None, environment=None, worker_args=()):
        self.replica_count, self.worker_count = replicas, workers
        self.port = port or free_port()
        self.folder = Path(folder or tempfile.mkdtemp(prefix="segdemo_cluster_"))
        self.folder.mkdir(parents=True, exist_ok=True)
        self.environment, self.worker_args = dict(environment or {}), list(worker_args)
        self.redis_port = free_port()
        self.queue_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis, self.balancer, self.replicas, self.workers = None, None, [], []
        self.replica_urls = []

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}/"

    def _spawn(self, name, command, environment=None):
        import os

        log_file = open(self.folder / f"{name}.log", "w")
        env = {**os.environ, **self.environment, QUEUE_ENV: self.queue_url, **(environment or {})}
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
        process.log_path, process.name = log_file.name, name
        log_file.close()
        return process

    def start_worker(self):
        """One more fine-tune worker on the cluster's queue; returns its process."""
        worker = self._spawn(f"worker{len(self.workers) + 1}",
                             [sys.executable, "-m", "segdemo.worker", *self.worker_args])
        self.workers.append(worker)
        return worker

    def start(self):
        missing = missing_commands()
        if missing:
            raise RuntimeError(f"needs {', '.join(missing)}: apt-get install -y {' '.join(missing)}")
        self.redis = self._spawn("redis", ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1",
                                           "--save", "", "--appendonly", "no"])
        for _ in range(self.worker_count):
            self.start_worker()
        for index in range(1, self.replica_count + 1):
            port = free_port()
            self.replicas.append(self._spawn(f"replica{index}", [sys.executable, "app.py"], {
                "GRADIO_SERVER_NAME": "127.0.0.1", "GRADIO_SERVER_PORT": str(port)}))
            self.replica_urls.append(f"http://127.0.0.1:{port}/")
        config = self.folder / "haproxy.cfg"
        config.write_text(haproxy_config(f"127.0.0.1:{self.port}", [url[7:-1] for url in self.replica_urls]))
        for replica, url in zip(self.replicas, self.replica_urls):
            wait_for_url(url, replica, replica.log_path)
        self.balancer = self._spawn("haproxy", ["haproxy", "-f", str(config), "-db"])
        wait_for_url(self.url, self.balancer, self.balancer.log_path)
        return self

    def wait_for_workers(self, timeout=START_TIMEOUT_S):
        """Wait until every worker has said it takes jobs."""
        started = time.monotonic()
        for worker in self.workers:
            while "takes jobs from" not in Path(worker.log_path).read_text():
                if worker.poll() is not None or time.monotonic() - started > timeout:
                    raise RuntimeError(f"worker did not start:\n{Path(worker.log_path).read_text()[-3000:]}")
                time.sleep(0.2)

    def stop(self):
        """Stop everything, the balancer first and Redis last."""
        processes = [self.balancer, *self.replicas, *self.workers, self.redis]
        for process in processes:
            if process is not None and process.poll() is None:
                process.terminate()
        for process in processes:
            if process is not None:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc_info):
        self.stop()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicas", type=int, default=2, help="app processes behind the balancer")
    parser.add_argument("--workers", type=int, default=2, help="fine-tune worker processes")
    parser.add_argument("--port", type=int, default=8080, help="the balancer's port (on 127.0.0.1)")
    args = parser.parse_args(argv)
    if args.replicas < 1 or args.workers < 0:
        parser.exit(2, "segdemo.deploy.cluster: --replicas must be at least 1, --workers at least 0\n")
    if missing_commands():
        parser.exit(2, f"segdemo.deploy.cluster: install {' '.join(missing_commands())} (Debian: apt-get install "
                       f"-y {' '.join(missing_commands())})\n")
    cluster = Cluster(args.replicas, args.workers, args.port)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # SIGTERM stops everything, as Ctrl-C does
    try:
        with cluster:
            print(f"segdemo: {cluster.url} ({args.replicas} replicas, {args.workers} fine-tune workers, Redis at "
                  f"{cluster.queue_url}; logs in {cluster.folder}). Ctrl-C stops it all.", flush=True)
            while all(process.poll() is None for process in [cluster.balancer, *cluster.replicas]):
                time.sleep(1)
            print("segdemo: a replica or the balancer ended; stopping the cluster", flush=True)
    except KeyboardInterrupt:
        pass
    except RuntimeError as error:
        parser.exit(1, f"segdemo.deploy.cluster: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
