"""The copy relay program itself, run for real between two ends on 127.0.0.1: the bytes arrive
whole and both ends report the same count and checksum; a stream cut short or a byte changed on
the way is seen (a tampering proxy sits between the two ends)."""

from __future__ import annotations

import ast
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from resync.steps.copy import relay


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "relay.py"
    path.write_text(relay.PROGRAM)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Ends:
    sent: subprocess.CompletedProcess[bytes]
    received: subprocess.CompletedProcess[bytes]
    output: bytes

    def report(self, role: str) -> tuple[int, str] | None:
        err = (self.sent if role == "sent" else self.received).stderr.decode()
        found = [m for m in relay.REPORT.finditer(err) if m.group(1) == role]
        return (int(found[-1].group(2)), found[-1].group(4)) if found else None


def run_ends(program: Path, data: bytes, digest: str = "crc32",
             between: Callable[[int, int], None] | None = None) -> Ends:
    """receive | (optionally a proxy) | send, with `data` on the sender's stdin."""
    port = free_port()
    sink = program.with_name(f"received-{port}")
    with sink.open("wb") as out:  # a file: a pipe nobody reads yet would stop the receiver
        receiver = subprocess.Popen([sys.executable, str(program), "receive", "127.0.0.1",
                                     str(port), digest], stdout=out, stderr=subprocess.PIPE)
    try:
        to = port
        if between is not None:
            to = free_port()
            between(to, port)
        sent = subprocess.run([sys.executable, str(program), "send", "127.0.0.1", str(to), digest],
                              input=data, capture_output=True, timeout=60)
        _, err = receiver.communicate(timeout=60)
    finally:  # a failed test leaves no receiver listening
        receiver.kill()
        receiver.wait()
    out = sink.read_bytes()
    return Ends(sent, subprocess.CompletedProcess(receiver.args, receiver.returncode, out, err), out)


def connect(port: int) -> socket.socket:
    """To the receiver, once it listens (it is a process just started)."""
    for _ in range(200):
        try:
            return socket.create_connection(("127.0.0.1", port))
        except ConnectionRefusedError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def proxy(change: Callable[[bytearray], bytes]) -> Callable[[int, int], None]:
    """A man in the middle: takes the sender's whole stream, hands `change(stream)` on."""
    def start(listen: int, target: int) -> None:
        server = socket.create_server(("127.0.0.1", listen))

        def serve() -> None:
            conn, _ = server.accept()
            server.close()
            stream = bytearray()
            while chunk := conn.recv(1 << 20):
                stream += chunk
            out = connect(target)
            out.sendall(change(stream))
            out.shutdown(socket.SHUT_WR)
            while answer := out.recv(1024):  # the receiver's answer goes back to the sender
                conn.sendall(answer)
            conn.close()
            out.close()

        threading.Thread(target=serve, daemon=True).start()
    return start


@pytest.fixture
def data() -> Iterator[bytes]:
    yield os.urandom(5 * 2**20 + 12345)  # several chunks and a partial one


@pytest.mark.parametrize("digest", relay.DIGESTS)
def test_bytes_arrive_whole_and_both_ends_agree(program: Path, data: bytes, digest: str) -> None:
    import hashlib

    ends = run_ends(program, data, digest)
    assert ends.sent.returncode == 0, ends.sent.stderr
    assert ends.received.returncode == 0, ends.received.stderr
    assert ends.output == data
    expected = (f"{zlib.crc32(data):08x}" if digest == "crc32"
                else hashlib.sha256(data).hexdigest())
    assert ends.report("sent") == ends.report("received") == (len(data), expected)


def test_an_empty_stream_is_carried_too(program: Path) -> None:
    ends = run_ends(program, b"")
    assert ends.sent.returncode == ends.received.returncode == 0
    assert ends.report("sent") == ends.report("received") == (0, "00000000")


def test_a_stream_cut_short_is_seen(program: Path, data: bytes) -> None:
    ends = run_ends(program, data, between=proxy(lambda s: bytes(s[:-1000])))
    assert ends.report("received") == (len(data) - 1000, f"{zlib.crc32(data[:-1000]):08x}")
    assert ends.report("sent") == (len(data), f"{zlib.crc32(data):08x}"), "the controller compares"
    assert ends.sent.returncode != 0, "and the sender itself fails on the receiver's answer"
    assert b"the receiver answered" in ends.sent.stderr


@pytest.mark.parametrize("digest", relay.DIGESTS)
def test_a_changed_byte_is_seen(program: Path, data: bytes, digest: str) -> None:
    def flip(stream: bytearray) -> bytes:
        stream[len(stream) // 2] ^= 0x01
        return bytes(stream)

    ends = run_ends(program, data, digest, between=proxy(flip))
    sent, received = ends.report("sent"), ends.report("received")
    assert sent is not None and received is not None
    assert sent[0] == received[0] == len(data), "as many bytes"
    assert sent[1] != received[1], "another checksum"
    assert ends.sent.returncode != 0


def test_a_stranger_connecting_first_is_turned_away(program: Path, data: bytes) -> None:
    def stranger_first(listen: int, target: int) -> None:
        with connect(target) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        proxy(bytes)(listen, target)

    ends = run_ends(program, data, between=stranger_first)
    assert ends.output == data and ends.sent.returncode == 0
    assert b"turned away" in ends.received.stderr


def test_a_receiver_that_cannot_write_fails(program: Path, data: bytes) -> None:
    port = free_port()
    receiver = subprocess.Popen(f"{sys.executable} {program} receive 127.0.0.1 {port} crc32 "
                                "| head -c 10 > /dev/null", shell=True, stderr=subprocess.PIPE,
                                executable="/bin/bash", start_new_session=True)
    try:
        sent = subprocess.run([sys.executable, str(program), "send", "127.0.0.1", str(port),
                               "crc32"], input=data, capture_output=True, timeout=60)
        _, err = receiver.communicate(timeout=60)
    finally:  # the whole pipeline, whatever happened
        if receiver.poll() is None:
            os.killpg(receiver.pid, signal.SIGKILL)
        receiver.wait()
    assert b"Broken pipe" in err and b"RESYNC received" not in err
    assert sent.returncode != 0


def test_an_unknown_host_or_a_taken_port_is_a_clear_error(program: Path) -> None:
    sent = subprocess.run([sys.executable, str(program), "send", "nowhere.invalid", "7", "crc32"],
                          input=b"x", capture_output=True, timeout=60)
    assert sent.returncode == 1 and b"resync relay (send nowhere.invalid:7): " in sent.stderr
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        received = subprocess.run([sys.executable, str(program), "receive", "127.0.0.1", str(port),
                                   "crc32"], capture_output=True, timeout=60)
    assert received.returncode == 1 and b"Address already in use" in received.stderr


def test_the_planned_install_writes_the_program_byte_for_byte(tmp_path: Path) -> None:
    text = relay.install("h").render().replace(relay.PATH, str(tmp_path / "relay.py"))
    subprocess.run(["bash", "-o", "pipefail", "-c", text], check=True)
    assert (tmp_path / "relay.py").read_text() == relay.PROGRAM
    assert oct((tmp_path / "relay.py").stat().st_mode & 0o777) == "0o644"
    assert relay.PATH.endswith(f"-{relay.VERSION}.py") and len(relay.VERSION) == 8


def test_the_program_is_plain_python_3_5() -> None:
    tree = ast.parse(relay.PROGRAM, feature_version=(3, 5))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"fcntl", "hashlib", "os", "socket", "sys", "time", "zlib"}, "stdlib only"
    assert not any(isinstance(n, ast.JoinedStr | ast.NamedExpr) for n in ast.walk(tree))
    assert "\t" not in relay.PROGRAM, "the install's <<- strips leading tabs"
