"""IMDSv2 against a local stand-in: the token first, then GETs carrying it; a clear error, at
once, when nothing answers. No test contacts 169.254.169.254."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from resync.lb.base import LOCAL_HOST
from resync.lb.imds import DEFAULT_ENDPOINT, ENDPOINT_ENV, ImdsError, ImdsIdentity, endpoint, read_identity
from resync.run.executor import Executor
from resync.run.journal import MemoryJournal

TOKEN = "tok-1"
ISSUED = [TOKEN]  # what the PUT answers
VALUES = {"instance-id": "i-0abc1234567890def", "local-ipv4": "10.0.0.5",
          "placement/availability-zone": "eu-west-1b"}


@pytest.fixture(autouse=True)
def never_the_real_imds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, f"http://127.0.0.1:{closed_port()}")
    monkeypatch.delenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", raising=False)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def stand_in() -> Iterator[tuple[str, list[str]]]:
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def answer(self, code: int, body: str) -> None:
            self.send_response(code)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        def do_PUT(self) -> None:
            seen.append(f"PUT {self.path}")
            ok = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            self.answer(200 if ok else 400, ISSUED[0] if ok else "")

        def do_GET(self) -> None:
            seen.append(f"GET {self.path} {self.headers.get('X-aws-ec2-metadata-token')}")
            value = VALUES.get(self.path.removeprefix("/latest/meta-data/"))
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                self.answer(401, "")
            else:
                self.answer(200 if value else 404, value or "")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", seen
    server.shutdown()


def test_token_then_gets(stand_in: tuple[str, list[str]]) -> None:
    url, seen = stand_in
    found = read_identity(url)
    assert (found.instance_id, found.address, found.availability_zone) == tuple(VALUES.values())
    assert seen[0] == "PUT /latest/api/token"
    assert all(s.endswith(f" {TOKEN}") for s in seen[1:]) and len(seen) == 4


def test_the_action_captures_the_identity(stand_in: tuple[str, list[str]],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT_ENV, stand_in[0] + "/")
    assert endpoint() == stand_in[0]
    exe = Executor(MemoryJournal("t"), hosts=lambda n: None, connect=lambda n: None)  # type: ignore[arg-type,return-value]
    exe.run([ImdsIdentity(base=endpoint())])
    assert {k: exe.captured[k] for k in ("self.instance_id", "self.address",
                                         "self.availability_zone")} == {
        "self.instance_id": "i-0abc1234567890def", "self.address": "10.0.0.5",
        "self.availability_zone": "eu-west-1b"}
    (record,) = exe.journal.data.commands
    assert record.kind == "imds" and record.host == LOCAL_HOST and record.ok


def test_unreachable_is_a_clear_error_at_once() -> None:
    started = time.monotonic()
    with pytest.raises(ImdsError, match=r"IMDS at http://127\.0\.0\.1:\d+ did not answer") as e:
        read_identity()
    assert time.monotonic() - started < 5
    assert e.value.exit_code == 2 and "--instance ID" in (e.value.hint or "")


def test_a_refused_token_is_an_error(stand_in: tuple[str, list[str]]) -> None:
    url, _ = stand_in
    ISSUED[0] = "not-the-token"  # the GETs carry a token the service does not accept
    try:
        with pytest.raises(ImdsError, match=r"GET .*/instance-id answered 401"):
            read_identity(url)
    finally:
        ISSUED[0] = TOKEN


def test_the_default_endpoint_is_the_link_local_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENDPOINT_ENV)
    assert endpoint() == DEFAULT_ENDPOINT == "http://169.254.169.254"
    monkeypatch.setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9/")
    assert endpoint() == "http://127.0.0.1:9"
