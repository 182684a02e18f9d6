"""A real haproxy for the load-balancer tests: an admin socket, a frontend on 127.0.0.1 and
backend `web` (web1, web2) whose servers are local HTTP servers that can hold a request open, so
that it stays a current session of its server."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
from aws import serve

from resync.testing.web import free_port, haproxy_process, install_hint, missing_tools, runtime_command

# -- haproxy ----------------------------------------------------------------------------------


class HeldBackend:
    """An HTTP server whose answers wait until `release()`: a request through HAProxy stays a
    current session of its server meanwhile."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        gate = self.gate

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                gate.wait(60)
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.server, self.url = serve(Handler)
        self.port = self.server.server_address[1]

    def hold(self) -> None:
        self.gate.clear()

    def release(self) -> None:
        self.gate.set()


@dataclass
class Haproxy:
    socket: Path
    frontend: str
    backends: dict[str, HeldBackend]

    def command(self, line: str) -> str:
        return runtime_command(self.socket, line)


@pytest.fixture(name="haproxy")
def haproxy_fixture(tmp_path: Path) -> Iterator[Haproxy]:
    if missing := missing_tools("haproxy", "socat"):
        pytest.skip(install_hint(missing))
    backends = {"web1": HeldBackend(), "web2": HeldBackend()}
    sock = tmp_path / "admin.sock"
    port = free_port()
    servers = "\n".join(f"    server {n} 127.0.0.1:{b.port}" for n, b in backends.items())
    config = tmp_path / "haproxy.cfg"
    config.write_text(f"""global
    stats socket {sock} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend fe
    bind 127.0.0.1:{port}
    default_backend web
backend web
    balance roundrobin
{servers}
""")
    try:
        with haproxy_process(config, port, sock):
            try:
                yield Haproxy(sock, f"http://127.0.0.1:{port}/", backends)
            finally:
                for b in backends.values():
                    b.release()  # before haproxy stops: no request left waiting
    finally:
        for b in backends.values():
            b.server.shutdown()
