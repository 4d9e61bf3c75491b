"""Serving an ASGI app (FastAPI) on a free port of 127.0.0.1 from a background thread."""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

from alignkit.errors import AlignkitError


@dataclass
class LocalServer:
    """A running server: its `url` (http://127.0.0.1:PORT); `stop` ends it."""

    url: str
    server: object  # uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)


def serve_in_thread(app, name: str, timeout_s: float = 30.0) -> LocalServer:
    """Start uvicorn with `app` on 127.0.0.1 (a free port) in a daemon thread; return once it accepts
    connections, or raise AlignkitError naming `name` after `timeout_s`."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=name, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            server.should_exit = True
            raise AlignkitError(f"{name} did not start on 127.0.0.1 within {timeout_s:g} s")
        time.sleep(0.01)
    return LocalServer(f"http://127.0.0.1:{sock.getsockname()[1]}", server, thread)
