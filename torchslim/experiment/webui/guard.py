"""What keeps the web UI's server standing: a bounded worker pool, socket timeouts, a long
listen queue, and a Host check against DNS rebinding.

- ``http.server``'s threading server starts a thread per connection (300 idle connections
  = 300 threads) and listens with a queue of 5 (a burst of requests times out). Here a
  fixed pool of workers serves connections from a queue; the kernel's accept queue is long;
  an idle or half-open connection gives its worker back after :data:`SOCKET_TIMEOUT_S`.
- A page on ``evil.example`` whose name is re-pointed at 127.0.0.1 reaches this server
  with ``Host: evil.example``: only the names of the bound address are served.
"""
from __future__ import annotations

import ipaddress
import queue
import socket
import threading
from http.server import HTTPServer
from typing import Any

LISTEN_QUEUE = 1024
WORKERS = 32
SOCKET_TIMEOUT_S = 5.0  # per connection, between requests and while reading one
_LOCAL_NAMES = {"localhost", "127.0.0.1", "::1", "localhost.localdomain"}
_WILDCARDS = {"", "0.0.0.0", "::"}


def allowed_host_names(bound_host: str) -> set[str] | None:
    """Host names (without port) a request may carry for a server bound to ``bound_host``;
    None means "any IP literal or this machine's names" (a wildcard bind)."""
    if bound_host in _WILDCARDS:
        return None
    names = {bound_host.lower()}
    try:
        if ipaddress.ip_address(bound_host).is_loopback:
            names |= _LOCAL_NAMES
    except ValueError:  # bound by name
        if bound_host.lower() == "localhost":
            names |= _LOCAL_NAMES
    return names


def split_host(header: str) -> tuple[str, str | None]:
    """``'name:port'`` / ``'[::1]:port'`` / ``'name'`` -> (lower-case name, port or None)."""
    header = header.strip().lower()
    if header.startswith("["):
        name, _, rest = header[1:].partition("]")
        return name, rest[1:] if rest.startswith(":") else None
    if header.count(":") == 1:
        name, port = header.split(":")
        return name, port
    return header, None


def host_allowed(header: str | None, bound_host: str, port: int) -> bool:
    """Whether a request's ``Host`` header names this server."""
    if not header:
        return False
    name, given_port = split_host(header)
    if given_port is not None and given_port != str(port):
        return False
    names = allowed_host_names(bound_host)
    if names is not None:
        return name in names
    if name in _LOCAL_NAMES or name in {socket.gethostname().lower(), socket.getfqdn().lower()}:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class PooledHTTPServer(HTTPServer):
    """An HTTPServer whose connections are served by a fixed pool of daemon workers."""

    request_queue_size = LISTEN_QUEUE
    workers = WORKERS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._jobs: queue.SimpleQueue[tuple[Any, Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        super().__init__(*args, **kwargs)
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, name=f"webui-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def process_request(self, request: Any, client_address: Any) -> None:
        self._jobs.put((request, client_address))

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            request, client_address = job
            try:
                self.finish_request(request, client_address)
            except Exception:  # noqa: BLE001 - one bad connection must not end a worker
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)

    def server_close(self) -> None:
        super().server_close()
        for _ in self._threads:
            self._jobs.put(None)
