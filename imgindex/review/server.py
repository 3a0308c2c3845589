"""Serving the review page on this machine: a socket bound first (so the address is known
before the server starts), then uvicorn until stopped."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def address(sock: socket.socket) -> tuple[str, int]:
    host, port = sock.getsockname()[:2]
    return host, port


def _server(app: Any) -> uvicorn.Server:
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    return uvicorn.Server(config)


def serve(app: Any, sock: socket.socket, *, started: Callable[[], None] | None = None) -> None:
    """Serve ``app`` on ``sock`` until interrupted (Ctrl-C)."""
    server = _server(app)
    if started is not None:
        threading.Thread(target=_when_started, args=(server, started), daemon=True).start()
    server.run(sockets=[sock])


def _when_started(server: uvicorn.Server, started: Callable[[], None]) -> None:
    while not server.started and not server.should_exit:
        threading.Event().wait(0.05)
    if server.started:
        started()


@contextmanager
def serving(app: Any, sock: socket.socket) -> Iterator[None]:
    """Serve ``app`` on ``sock`` in a thread for the ``with`` block (for tests and tools)."""
    server = _server(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the review server did not start")
            threading.Event().wait(0.02)
        yield
    finally:
        server.should_exit = True
        thread.join(30)
