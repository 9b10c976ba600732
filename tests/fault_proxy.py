"""A loopback HTTP proxy in front of an OpenAI-compatible server that fails a fixed share of the
chat calls the way hosted providers do: 429 rate limits, 503s, dropped connections and hangs.

The faults reach the real OpenAI client (``langchain-openai``), so the tests see the provider's
own exceptions (``RateLimitError``, ``InternalServerError``, ``APIConnectionError``,
``APITimeoutError``) and our retries, not a patched code path. The journal is kept in memory:
requests carry the API key, and nothing here writes it anywhere.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

# One hang in seven faults: a hang costs the client its whole timeout.
FAULTS = ("rate_limit", "reset", "timeout", "unavailable", "rate_limit", "reset", "unavailable")


@dataclass
class FaultProxy:
    """The proxy's ``/v1`` URL and its journal: one entry per chat call, the fault or 'ok'."""

    url: str
    journal: list[str] = field(default_factory=list)
    abandoned: int = 0
    """Forwarded calls whose client hung up before the reply (its own timeout, not a fault)."""

    @property
    def faults(self) -> int:
        return sum(entry != "ok" for entry in self.journal)


@contextlib.contextmanager
def fault_proxy(
    upstream: str,
    failing: tuple[int, ...] = (1, 4, 7),
    every: int = 10,
    hang_seconds: float = 60.0,
) -> Iterator[FaultProxy]:
    """Proxy ``upstream`` (a ``.../v1`` URL); chat call n fails when ``n % every`` is in
    ``failing`` (3 in 10 by default), with the next kind of ``FAULTS`` each time. A 'timeout'
    holds the call for ``hang_seconds`` (longer than the client's timeout), then drops it."""
    target = urlsplit(upstream)
    origin = f"{target.scheme}://{target.netloc}"
    lock, stopping = threading.Lock(), threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # no access log (and no headers) on stderr
            pass

        def do_GET(self) -> None:
            self._forward(None)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if self.path.endswith("/chat/completions"):
                with lock:  # the journal is the count: call n is entry n
                    fault = None
                    if len(proxy.journal) % every in failing:
                        fault = FAULTS[proxy.faults % len(FAULTS)]
                    proxy.journal.append(fault or "ok")
                if fault:
                    return self._fail(fault)
            self._forward(body)

        def _fail(self, fault: str) -> None:
            if fault in {"rate_limit", "unavailable"}:
                status = 429 if fault == "rate_limit" else 503
                message = {
                    429: "Rate limit reached for requests (injected by the test proxy)",
                    503: "The server is overloaded (injected by the test proxy)",
                }[status]
                self._reply(status, json.dumps({"error": {"message": message}}).encode())
                return
            if fault == "timeout":
                stopping.wait(hang_seconds)
            # reset: close with SO_LINGER 0, so the client reads a connection reset
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()

        def _forward(self, body: bytes | None) -> None:
            headers = {
                name: value
                for name, value in self.headers.items()
                if name.lower() in {"authorization", "content-type", "accept"}
            }
            request = urllib.request.Request(
                origin + self.path, data=body, headers=headers, method=self.command
            )
            try:
                with urllib.request.urlopen(request, timeout=600) as response:
                    status, payload = response.status, response.read()
            except urllib.error.HTTPError as error:
                status, payload = error.code, error.read()
            try:
                self._reply(status, payload)
            except (BrokenPipeError, ConnectionResetError):
                with lock:
                    proxy.abandoned += 1

        def _reply(self, status: int, payload: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def finish(self) -> None:
            with contextlib.suppress(OSError, ValueError):  # a reset connection is closed already
                super().finish()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    proxy = FaultProxy(url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    thread = threading.Thread(target=server.serve_forever, name="fault-proxy", daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
