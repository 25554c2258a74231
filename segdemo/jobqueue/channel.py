"""One job's keys in the queue's storage (Huey's key/value store: a Redis hash, or a SQLite table), which the app
and the worker both reach and nothing else needs to: the job's inputs, its events in order, the files it returns
(sample predictions, the model), the stop flag and both sides' heartbeats. Every key carries the job's random
id, which only the session that started the job holds: a job's result reaches that session only."""

import itertools
import threading
import time

from huey.constants import EmptyData

from segdemo.jobqueue.broker import QUEUE_ERRORS

KEY_PREFIX = "segdemo:job"
BEAT_SECONDS = 2.0  # how often each side says it is still there
STOP_POLL_SECONDS = 0.5
APP_GONE_SECONDS = 120  # a worker stops a job whose app has not beaten for this long (the replica went away)
EVENT_POLL_SECONDS = 0.1


def stored(data):
    """The value the storage returned, None for Huey's "nothing under that key" marker."""
    return None if data is EmptyData else bytes(data)


class JobChannel:
    """The keys of job `job_id` in `huey`'s storage; bytes in, bytes out (the job's wire format is the caller's)."""

    def __init__(self, huey, job_id):
        self.storage, self.job_id = huey.storage, job_id
        self._sent, self._received = itertools.count(), itertools.count()
        self._next_received = next(self._received)

    def key(self, part):
        return f"{KEY_PREFIX}:{self.job_id}:{part}"

    def put_inputs(self, data):
        self.storage.put_data(self.key("inputs"), data)

    def take_inputs(self):
        return stored(self.storage.pop_data(self.key("inputs")))

    def emit(self, data):
        """Worker: the job's next event."""
        self.storage.put_data(self.key(f"event:{next(self._sent)}"), data)

    def next_event(self):
        """App: the job's next event, or None when it has not come yet."""
        data = stored(self.storage.pop_data(self.key(f"event:{self._next_received}")))
        if data is None:
            return None
        self._next_received = next(self._received)
        return data

    def put_file(self, name, data):
        self.storage.put_data(self.key(f"file:{name}"), data)

    def take_file(self, name):
        data = stored(self.storage.pop_data(self.key(f"file:{name}")))
        if data is None:
            raise FileNotFoundError(f"the job's file {name!r} is not in the queue's storage")
        return data

    def request_stop(self):
        self.storage.put_data(self.key("stop"), b"1")

    def stop_requested(self):
        return self.storage.has_data_for_key(self.key("stop"))

    def beat(self, side, count):
        self.storage.put_data(self.key(f"beat:{side}"), str(count).encode())

    def last_beat(self, side):
        return stored(self.storage.peek_data(self.key(f"beat:{side}")))

    def clear(self, files=()):
        """Remove the job's control keys and the files named (events and files are removed as they are read)."""
        for part in ("inputs", "stop", "beat:app", "beat:worker", *(f"file:{name}" for name in files)):
            self.storage.delete_data(self.key(part))


class Silence:
    """How long a side's heartbeat has stood still, by this side's clock (the two machines' clocks may differ)."""

    def __init__(self, channel, side):
        self.channel, self.side = channel, side
        self._last, self._since = None, time.monotonic()

    def seconds(self):
        beat = self.channel.last_beat(self.side)
        if beat != self._last:
            self._last, self._since = beat, time.monotonic()
        return time.monotonic() - self._since


class WorkerLink:
    """Worker side, while a job runs: beats every BEAT_SECONDS, and sets `stop` when the app asks for it or has
    not beaten for APP_GONE_SECONDS (then `abandoned`: nobody will read the result)."""

    def __init__(self, channel, stop):
        self.channel, self.stop, self.abandoned = channel, stop, False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"job-link-{channel.job_id}", daemon=True)
        self._thread.start()

    def _run(self):
        app = Silence(self.channel, "app")
        last_beat = 0.0
        for count in itertools.count():
            try:
                if time.monotonic() - last_beat >= BEAT_SECONDS:
                    self.channel.beat("worker", count)
                    last_beat = time.monotonic()
                if self.channel.stop_requested():
                    self.stop.set()
                if app.seconds() > APP_GONE_SECONDS:
                    self.abandoned = True
                    self.stop.set()
            except QUEUE_ERRORS:
                pass  # the queue is away for a moment: the app sees the silence and says so
            if self._done.wait(STOP_POLL_SECONDS):
                return

    def close(self):
        self._done.set()
        self._thread.join()
