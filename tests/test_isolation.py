"""Sessions never see each other's results; session files are removed at the end or when stale."""

import os
import threading
import time

import numpy as np
from gradio_client import Client, handle_file
from PIL import Image

from segdemo.app import sessions


def test_concurrent_sessions_get_their_own_results(app_url, tmp_path):
    sizes = {"a": (64, 48), "b": (37, 101)}
    paths = {}
    for name, size in sizes.items():
        paths[name] = tmp_path / f"{name}.png"
        Image.new("RGB", size, (120, 60, 30)).save(paths[name])
    errors, seen = [], {name: [] for name in sizes}

    def work(name):
        client = Client(app_url, verbose=False)
        for _ in range(8):
            try:
                *_, mask_file = client.predict(handle_file(str(paths[name])), "pets", "pet", 0.5,
                                               api_name="/segment")
                seen[name].append(Image.open(mask_file).size)
            except Exception as error:  # noqa: BLE001 - collected and asserted below
                errors.append(error)

    threads = [threading.Thread(target=work, args=(name,)) for name in sizes for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    for name, size in sizes.items():
        assert seen[name] == [size] * 16  # every answer is for the session's own image


def test_forget_session_removes_state_and_files():
    folder = sessions.session_folder("test-forget")
    (folder / "mask.png").write_bytes(b"x")
    sessions.RESULTS.put("test-forget", object())
    sessions.training_set_of("test-forget").add(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4), np.uint8),
                                                ("a", "b"), [(0, 0, 0), (255, 255, 255)])
    sessions.forget_session("test-forget")
    assert not folder.exists() and sessions.RESULTS.get("test-forget") is None
    assert "test-forget" not in sessions.TRAINING_SETS  # the training set goes with the session


def test_stale_session_folders_are_swept(tmp_path):
    stale, fresh = tmp_path / "stale-session", tmp_path / "fresh-session"
    stale.mkdir()
    fresh.mkdir()
    old = time.time() - sessions.SESSION_FILES_MAX_AGE_S - 60
    os.utime(stale, (old, old))
    sessions.sweep_stale_sessions(root=tmp_path)
    assert not stale.exists() and fresh.exists()


def test_client_disconnecting_mid_upload_leaves_the_server_healthy(app_url):
    import socket
    from urllib.parse import urlparse

    address = urlparse(app_url)
    for _ in range(3):
        with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
            boundary = "segdemoboundary"
            head = (f"POST /gradio_api/upload HTTP/1.1\r\nHost: {address.netloc}\r\n"
                    f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: 5000000\r\n\r\n"
                    f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
                    "Content-Type: image/png\r\n\r\n")
            sock.sendall(head.encode() + b"\x89PNG" + b"\0" * 100_000)  # then hang up, 4.9 MB short
    client = Client(app_url, verbose=False)
    *_, mask_file = client.predict(handle_file("examples/coffee_cup.png"), "pets", "pet", 0.5, api_name="/segment")
    assert Image.open(mask_file).size == (600, 400)
