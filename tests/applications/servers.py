"""Real HTTP servers on 127.0.0.1 for the application examples: uvicorn (ASGI) and
wsgiref (WSGI, threaded), each on a free port, in a thread of the test process."""

from __future__ import annotations

import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "applications"


def import_example(name: str) -> Any:
    if str(EXAMPLES) not in sys.path:
        sys.path.insert(0, str(EXAMPLES))
    return __import__(name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def asgi_server(app: Any) -> Iterator[str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _ThreadedWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


@contextmanager
def wsgi_server(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, server_class=_ThreadedWSGIServer, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(20)


def mixed_request(http: Any, client: str, i: int) -> Any:
    """Request `i` of one client in the web scenario: a point read from a sync endpoint,
    one from an async endpoint, a customer added, a visit counted (read-modify-write)."""
    kind = i % 4
    if kind == 0:
        return http.get("/customers/counter")
    if kind == 1:
        return http.get("/async/customers/counter")
    if kind == 2:
        return http.post("/customers", json={"name": f"Web {client}-{i}",
                                             "emails": [f"w{client}.{i}@example.org"]})
    return http.post("/customers/counter/visits")
