"""A real web tier on 127.0.0.1: a tiny application, HAProxy with its admin socket, nginx with a
flag-file page. Used by `resync demo --with-web` and by the maintenance-page tests (through
tests/integration/webtier.py). Free ports, files in a temporary directory, and every process
stopped by its own pid afterwards. Context managers (`with web_root() as root, running_app() as
app, running_haproxy(root, app) as lb: ...`).

HAProxy (one process, two frontends in front of the application):
- `page`: the map-driven page of the field notes, `http-request return status 503 ... file
  maint.html if { str(maint),map(maint.map) -m found }`: the map's key is the constant `maint`;
  /health is exempt.
- `pool`: backend `web` with two servers (both the application) and `errorfile 503`: with every
  server in maint HAProxy serves the page; /health goes to backend `health`, never in maint.
nginx: `if (-f maintenance.flag) { return 503; }` with `error_page 503 /maint.html`; /health exempt.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from resync.model.errors import ResyncError

MARKER = "Down for maintenance"
APP_TEXT = "hello from the application"
PAGE_HTML = f"<html><body><h1>{MARKER}</h1></body></html>\n"


class WebTierError(ResyncError):
    """A program of the web tier is not installed, or does not start."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str, timeout: float = 3.0) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError:
        return None, ""


def wait_listening(port: int | Path, what: str, proc: subprocess.Popen[str] | None = None,
                   timeout: float = 10.0) -> None:
    """Until something accepts connections on 127.0.0.1:`port` (a Path: on that Unix socket);
    WebTierError when `proc` exits first or after `timeout` seconds."""
    address: str | tuple[str, int]
    if isinstance(port, Path):
        family, address, where = socket.AF_UNIX, str(port), str(port)
    else:
        family, address, where = socket.AF_INET, ("127.0.0.1", port), f"127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise WebTierError(f"{what} exited {proc.returncode}: {proc.communicate()[1]}")
        with socket.socket(family) as s:
            if s.connect_ex(address) == 0:
                return
        time.sleep(0.05)
    raise WebTierError(f"{what} does not listen on {where} after {timeout:g}s")


def runtime_command(admin_socket: Path, command: str) -> str:
    """One HAProxy runtime API command on its admin socket; its whole answer."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(admin_socket))
        s.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode()


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class _App(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = (b"ok\n" if self.path == "/health" else f"{APP_TEXT}\n".encode())
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class App:
    port: int
    server: ThreadingHTTPServer

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"


@dataclass
class HAProxy:
    root: Path
    page_port: int  # frontend `page` (map-driven)
    pool_port: int  # frontend `pool` (servers of backend `web`)
    socket: Path
    map: Path
    proc: subprocess.Popen[str]

    def url(self, port: int, path: str = "/") -> str:
        return f"http://127.0.0.1:{port}{path}"

    def runtime(self, command: str) -> str:
        """One runtime API command, for the tests' own checks."""
        return runtime_command(self.socket, command)


@dataclass
class Nginx:
    root: Path
    port: int
    flag: Path
    proc: subprocess.Popen[str]

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def missing_tools(*tools: str) -> list[str]:
    """The programs among `tools` that are not installed (PATH or /usr/sbin)."""
    return [t for t in tools if shutil.which(t) is None and not Path(f"/usr/sbin/{t}").exists()]


def install_hint(missing: list[str]) -> str:
    return f"{', '.join(missing)} not installed (apt-get install {' '.join(missing)})"


def require_tools(*tools: str) -> None:
    if missing := missing_tools(*tools):
        raise WebTierError(install_hint(missing))


def _binary(name: str) -> str:
    return shutil.which(name) or f"/usr/sbin/{name}"


@contextmanager
def web_root() -> Iterator[Path]:
    """A directory any user can read (nginx workers may run as nobody), removed afterwards."""
    root = Path(tempfile.mkdtemp(prefix="resync-web-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def running_app() -> Iterator[App]:
    """The application: 200 with APP_TEXT on every path, `ok` on /health (a thread)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield App(int(server.server_address[1]), server)
    finally:
        server.shutdown()
        server.server_close()


def haproxy_config(root: Path, page_port: int, pool_port: int, app_port: int) -> str:
    page_on = f"{{ str(maint),map({root}/maint.map) -m found }} !{{ path /health }}"
    return f"""global
    stats socket {root}/admin.sock level admin
defaults
    mode http
    timeout connect 2s
    timeout client 10s
    timeout server 10s
frontend page
    bind 127.0.0.1:{page_port}
    http-request return status 503 content-type text/html file {root}/maint.html if {page_on}
    default_backend app
frontend pool
    bind 127.0.0.1:{pool_port}
    use_backend health if {{ path /health }}
    default_backend web
backend app
    server app1 127.0.0.1:{app_port}
backend web
    errorfile 503 {root}/maint.http
    server s1 127.0.0.1:{app_port}
    server s2 127.0.0.1:{app_port}
backend health
    server h1 127.0.0.1:{app_port}
"""


@contextmanager
def running_haproxy(web_root: Path, app: App) -> Iterator[HAProxy]:
    """HAProxy in the foreground (our child), its admin socket in `web_root`; stopped by pid."""
    require_tools("haproxy", "socat")
    root = web_root / "haproxy"
    root.mkdir()
    (root / "maint.html").write_text(PAGE_HTML)
    (root / "maint.map").write_text("")
    (root / "maint.http").write_text(
        "HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/html\r\nCache-Control: no-cache"
        f"\r\nConnection: close\r\n\r\n{PAGE_HTML}")
    page_port, pool_port = free_port(), free_port()
    config = root / "haproxy.cfg"
    config.write_text(haproxy_config(root, page_port, pool_port, app.port))
    with haproxy_process(config, page_port, pool_port) as proc:
        yield HAProxy(root, page_port, pool_port, root / "admin.sock", root / "maint.map", proc)


@contextmanager
def haproxy_process(config: Path, *listening: int | Path) -> Iterator[subprocess.Popen[str]]:
    """`haproxy -db -f config` (checked with -c first) in the foreground, our child, in the
    config's directory, until it listens on every port (or Unix socket) of `listening`; stopped
    by pid afterwards."""
    subprocess.run([_binary("haproxy"), "-c", "-q", "-f", str(config)], check=True)
    proc = subprocess.Popen([_binary("haproxy"), "-db", "-f", str(config)], cwd=config.parent,
                            text=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        for where in listening:
            wait_listening(where, "haproxy", proc)
        yield proc
    finally:
        stop(proc)


def nginx_config(root: Path, port: int, flag: Path) -> str:
    return f"""daemon off;
master_process on;
worker_processes 1;
user root;
pid {root}/nginx.pid;
error_log {root}/error.log;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {root}/www;
        error_page 503 /maint.html;
        location = /health {{ return 200 "ok\\n"; }}
        location = /maint.html {{ internal; }}
        location / {{
            if (-f {flag}) {{ return 503; }}
            try_files $uri /index.html;
        }}
    }}
}}
"""


@contextmanager
def running_nginx(web_root: Path) -> Iterator[Nginx]:
    """nginx in the foreground (our child) serving a small root from `web_root`; the page is on
    while the flag file exists; stopped by pid."""
    require_tools("nginx")
    root = web_root / "nginx"
    (root / "www").mkdir(parents=True)
    (root / "tmp").mkdir()
    (root / "www" / "index.html").write_text(f"{APP_TEXT}\n")
    (root / "www" / "maint.html").write_text(PAGE_HTML)
    flag = root / "maintenance.flag"
    port = free_port()
    config = root / "nginx.conf"
    config.write_text(nginx_config(root, port, flag))
    base = [_binary("nginx"), "-p", str(root), "-e", str(root / "error.log"), "-c", str(config)]
    subprocess.run([*base, "-t", "-q"], check=True)
    proc = subprocess.Popen(base, text=True, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_listening(port, "nginx", proc)
        yield Nginx(root, port, flag, proc)
    finally:
        stop(proc)
