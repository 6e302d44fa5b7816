"""A scripted HTTP server on 127.0.0.1 for what a real patchreg server will not do on demand:
answer 503, drop a connection mid-body, send the wrong bytes or the wrong ETag."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    cut_after: int | None = None  # close the connection after this many body bytes


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


Script = Callable[[Seen], Reply]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script: Script
    seen: list[Seen]

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        if length:
            self.rfile.read(length)
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()})
        self.seen.append(seen)
        reply = self.script(seen)
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(reply.body)))
        if reply.cut_after is not None:
            self.send_header("Connection", "close")
        self.end_headers()
        if reply.cut_after is None:
            self.wfile.write(reply.body)
        else:
            self.wfile.write(reply.body[: reply.cut_after])
            self.wfile.flush()
            self.close_connection = True

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@contextmanager
def fake_server(script: Script, port: int = 0) -> Iterator[tuple[str, list[Seen]]]:
    """Serve `script` (request -> reply) until the block ends; yields the URL and the requests seen."""
    seen: list[Seen] = []
    handler = type("Handler", (_Handler,), {"script": staticmethod(script), "seen": seen})
    httpd = ThreadingHTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)
