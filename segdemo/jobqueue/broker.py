"""The queue itself: a Huey instance on the backend a URL names. "sqlite:///PATH": Huey's SQLite storage, one file
on this machine (the embedded default: no server); "redis://HOST:PORT/DB": Redis, which workers on other machines
reach too. Nothing of our own queues, orders or hands out jobs: Huey does."""

import sqlite3
from urllib.parse import urlsplit, urlunsplit

from redis import ConnectionPool
from redis.exceptions import RedisError

from segdemo.config import QUEUE_ENV
from segdemo.errors import InputError

QUEUE_NAME = "segdemo"
REDIS_SCHEMES = ("redis", "rediss", "unix")
REDIS_TIMEOUT_S = 5  # a Redis that does not answer fails a request after this, instead of hanging it
QUEUE_ERRORS = (OSError, sqlite3.Error, RedisError)  # what the storage raises when it cannot be reached
WHILE_RUNNING = " Fine-tuning waits for it to answer again; Segment and the other tabs keep working."


class QueueUnreachableError(InputError):
    """The queue cannot be reached: the message names SEGDEMO_QUEUE and says what to do."""


def shown_url(url):
    """The URL without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, f"{parts.username or ''}:***@{host}", parts.path, parts.query, parts.fragment))


def open_queue(url):
    """The Huey instance of `url` (see the module's docstring); InputError for a URL of another kind."""
    from huey import RedisHuey, SqliteHuey

    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return SqliteHuey(QUEUE_NAME, filename=url[len("sqlite:///"):], results=False, timeout=30)
    if scheme in REDIS_SCHEMES:
        pool = ConnectionPool.from_url(url, socket_timeout=REDIS_TIMEOUT_S + 2,  # over the 1 s blocking read
                                       socket_connect_timeout=REDIS_TIMEOUT_S)
        return RedisHuey(QUEUE_NAME, connection_pool=pool, results=False, blocking=True, read_timeout=1)
    raise InputError(f"{QUEUE_ENV} must be redis://HOST:PORT/DB (or unset: fine-tunes run on this machine); "
                     f"got {shown_url(url)!r}")


def unreachable(url, error, hint=WHILE_RUNNING):
    """The QueueUnreachableError for `url` failing with `error`."""
    return QueueUnreachableError(f"The fine-tune job queue {QUEUE_ENV}={shown_url(url)} cannot be reached "
                            f"({type(error).__name__}: {error}).{hint}")


def check_reachable(huey, url):
    """Raise QueueUnreachableError unless the queue's storage answers now."""
    try:
        huey.storage.has_data_for_key(f"{QUEUE_NAME}:ping")
    except QUEUE_ERRORS as error:
        raise unreachable(url, error, hint=" Start Redis there, or set the variable to one that runs.") from None


def check_queue(url):
    """At start: InputError unless `url` ("" is the embedded queue: nothing to check) names a queue that answers."""
    if url:
        check_reachable(open_queue(url), url)
