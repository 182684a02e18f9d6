"""The copy relay program itself, run for real between two ends on 127.0.0.1: the bytes arrive
whole and both ends report the same count and checksum; a stream cut short or a byte changed on
the way is seen (a tampering proxy sits between the two ends). Only the donor feeds the stream:
the receiver turns away another address, and a peer without the run's one-time token (Linux
routes all of 127/8 to lo: 127.0.0.2 stands for the donor, 127.0.0.1 for a stranger)."""

from __future__ import annotations

import ast
import contextlib
import hashlib
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from resync.steps.copy import relay

DONOR, STRANGER = "127.0.0.2", "127.0.0.1"


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


def new_token(program: Path) -> tuple[Path, str]:
    """The donor's `token` role, as planned: (the token's file, its sha256 as printed)."""
    directory = program.with_name("tokens")
    done = subprocess.run([sys.executable, str(program), "token", str(directory)],
                          capture_output=True, text=True, check=True, timeout=30)
    digest = done.stdout.strip()
    return directory / digest, digest


def receiver_argv(program: Path, port: int, digest: str, *options: str) -> list[str]:
    return [sys.executable, str(program), "receive", "127.0.0.1", str(port), "crc32",
            "--token-sha256", digest, *options]


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
             between: Callable[[int, int], None] | None = None,
             receive_options: Sequence[str] = (), send_options: Sequence[str] = ()) -> Ends:
    """receive | (optionally a proxy, or strangers first) | send, `data` on the sender's stdin."""
    port = free_port()
    token, token_sha256 = new_token(program)
    sink = program.with_name(f"received-{port}")
    with sink.open("wb") as out:  # a file: a pipe nobody reads yet would stop the receiver
        receiver = subprocess.Popen([sys.executable, str(program), "receive", "127.0.0.1",
                                     str(port), digest, "--token-sha256", token_sha256,
                                     *receive_options], stdout=out, stderr=subprocess.PIPE)
    try:
        to = port
        if between is not None:
            to = free_port()
            between(to, port)
        sent = subprocess.run([sys.executable, str(program), "send", "127.0.0.1", str(to), digest,
                               "--token", str(token), *send_options],
                              input=data, capture_output=True, timeout=60)
        _, err = receiver.communicate(timeout=60)
    finally:  # a failed test leaves no receiver listening
        receiver.kill()
        receiver.wait()
    out = sink.read_bytes()
    return Ends(sent, subprocess.CompletedProcess(receiver.args, receiver.returncode, out, err), out)


def connect(port: int, source: str = STRANGER) -> socket.socket:
    """To the receiver from `source`, once it listens (it is a process just started)."""
    for _ in range(200):
        try:
            return socket.create_connection(("127.0.0.1", port), source_address=(source, 0))
        except ConnectionRefusedError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")


def refused(sock: socket.socket) -> bool:
    """The receiver closed this connection without a word (it sends nothing before data)."""
    sock.settimeout(10)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True


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
        stream[len(stream) // 2 + 200] ^= 0x01  # in the data, not in the greeting
        return bytes(stream)

    ends = run_ends(program, data, digest, between=proxy(flip))
    sent, received = ends.report("sent"), ends.report("received")
    assert sent is not None and received is not None
    assert sent[0] == received[0] == len(data), "as many bytes"
    assert sent[1] != received[1], "another checksum"
    assert ends.sent.returncode != 0


# -- only the donor feeds the stream ----------------------------------------------------------------

def test_a_stranger_connecting_first_is_turned_away(program: Path, data: bytes) -> None:
    def stranger_first(listen: int, target: int) -> None:
        with connect(target) as s:
            s.sendall(b"GET / HTTP/1.0\r\n\r\n")
            assert refused(s)
        proxy(bytes)(listen, target)

    ends = run_ends(program, data, between=stranger_first)
    assert ends.output == data and ends.sent.returncode == 0
    assert b"RESYNC rejected peer 127.0.0.1: not a resync relay of protocol 2" in \
        ends.received.stderr


def test_another_address_is_rejected_and_the_donor_gets_in(program: Path) -> None:
    """The receiver lets in only the donor's address (resolved there); the sender binds it as its
    source. A stranger is turned away even with the right greeting and the token itself."""
    port = free_port()
    token, digest = new_token(program)
    stolen = token.read_bytes()
    receiver = subprocess.Popen(receiver_argv(program, port, digest, "--peer", DONOR),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with connect(port, STRANGER) as stranger:
            stranger.sendall(b"resync-relay 2\n" + stolen + b"\nforged datadir")
            assert refused(stranger)
        sent = subprocess.run([sys.executable, str(program), "send", "127.0.0.1", str(port),
                               "crc32", "--token", str(token), "--source", DONOR],
                              input=b"from the donor", capture_output=True, timeout=60)
        out, err = receiver.communicate(timeout=60)
    finally:
        receiver.kill()
        receiver.wait()
    assert sent.returncode == 0 and receiver.returncode == 0, (sent.stderr, err)
    assert out == b"from the donor", "only the donor's bytes arrived"
    assert f"RESYNC rejected peer {STRANGER}: not the donor's address ({DONOR})".encode() in err
    assert stolen not in err


def test_the_donor_unbound_from_its_address_is_rejected_too(program: Path) -> None:
    """A sender that does not present the donor's address (here: no --source, so 127.0.0.1) is
    turned away; it fails with a hint, the receiver gives up at its timeout."""
    port = free_port()
    token, digest = new_token(program)
    receiver = subprocess.Popen(receiver_argv(program, port, digest, "--peer", DONOR,
                                              "--timeout", "3"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sent = subprocess.run([sys.executable, str(program), "send", "127.0.0.1", str(port),
                               "crc32", "--token", str(token)], input=os.urandom(4 << 20),
                              capture_output=True, timeout=60)
        _, err = receiver.communicate(timeout=60)
    finally:
        receiver.kill()
        receiver.wait()
    assert sent.returncode == 1 and b"(its log says RESYNC rejected peer)" in sent.stderr
    assert receiver.returncode == 1
    assert f"RESYNC rejected peer {STRANGER}: not the donor's address".encode() in err


@pytest.mark.parametrize("greeting", [
    b"resync-relay 2\n" + b"0" * 64 + b"\n",  # a wrong token
    b"resync-relay 2\n",  # none, then the connection closed
    b"resync-relay 1\n",  # the old protocol: no token
], ids=["wrong", "missing", "protocol-1"])
def test_a_peer_without_the_token_is_dropped_and_the_receiver_waits_on(
        program: Path, greeting: bytes) -> None:
    port = free_port()
    token, digest = new_token(program)
    receiver = subprocess.Popen(receiver_argv(program, port, digest), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    try:
        with connect(port, STRANGER) as stranger:
            # the receiver may drop it before the end is sent (protocol 1: on its first line)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError, OSError):
                stranger.sendall(greeting + b"forged datadir")
                stranger.shutdown(socket.SHUT_WR)
            assert refused(stranger)
        sent = subprocess.run([sys.executable, str(program), "send", "127.0.0.1", str(port),
                               "crc32", "--token", str(token)],
                              input=b"the real datadir", capture_output=True, timeout=60)
        out, err = receiver.communicate(timeout=60)
    finally:
        receiver.kill()
        receiver.wait()
    assert sent.returncode == 0 and receiver.returncode == 0, (sent.stderr, err)
    assert out == b"the real datadir"
    why = "not a resync relay of protocol 2" if b" 1\n" in greeting else "wrong or missing token"
    assert f"RESYNC rejected peer {STRANGER}: {why}".encode() in err


def test_a_sender_with_another_runs_token_is_rejected(program: Path) -> None:
    port = free_port()
    _, digest = new_token(program)
    other, _ = new_token(program)
    receiver = subprocess.Popen(receiver_argv(program, port, digest, "--timeout", "3"),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sent = subprocess.run([sys.executable, str(program), "send", "127.0.0.1", str(port),
                               "crc32", "--token", str(other)],
                              input=os.urandom(4 << 20), capture_output=True, timeout=60)
        _, err = receiver.communicate(timeout=60)
    finally:
        receiver.kill()
        receiver.wait()
    assert sent.returncode == 1 and b"(its log says RESYNC rejected peer)" in sent.stderr
    assert b"RESYNC rejected peer 127.0.0.1: wrong or missing token" in err
    assert receiver.returncode == 1 and b"no sender from any address with the run's token " \
        b"within 3s" in err, "it listened on until its timeout"


def test_the_receiver_gives_up_after_its_listen_timeout(program: Path) -> None:
    _, digest = new_token(program)
    started = time.monotonic()
    received = subprocess.run(receiver_argv(program, free_port(), digest, "--peer", DONOR,
                                            "--timeout", "1"), capture_output=True, timeout=60)
    assert received.returncode == 1 and time.monotonic() - started < 30
    assert f"no sender from {DONOR} with the run's token within 1s".encode() in received.stderr


def test_the_token_is_private_used_once_and_only_its_hash_is_printed(program: Path) -> None:
    token, digest = new_token(program)
    secret = token.read_bytes()
    assert len(secret) == 64 and int(secret, 16) >= 0
    assert digest == hashlib.sha256(secret).hexdigest() and token.name == digest
    assert secret.decode() not in digest
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert stat.S_IMODE(token.parent.stat().st_mode) == 0o700
    assert new_token(program)[1] != digest, "a new token each time"
    port = free_port()
    receiver = subprocess.Popen(receiver_argv(program, port, digest), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    try:
        first = subprocess.run([sys.executable, str(program), "send", "127.0.0.1", str(port),
                                "crc32", "--token", str(token)], input=b"x", capture_output=True,
                               timeout=60)
        receiver.communicate(timeout=60)
    finally:
        receiver.kill()
        receiver.wait()
    assert first.returncode == 0 and not token.exists(), "the sender used it up"
    again = subprocess.run([sys.executable, str(program), "send", "127.0.0.1", str(port), "crc32",
                            "--token", str(token)], input=b"x", capture_output=True, timeout=60)
    assert again.returncode == 1 and b"No such file" in again.stderr


def test_a_token_directory_of_another_user_or_a_link_is_refused(program: Path,
                                                                tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "elsewhere")
    done = subprocess.run([sys.executable, str(program), "token", str(tmp_path / "link")],
                          capture_output=True, timeout=30)
    assert done.returncode == 1 and b"not a directory of this user's" in done.stderr
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_no_token_in_any_command_line_while_the_relay_runs(program: Path) -> None:
    """/proc/*/cmdline sampled while both ends run (the sender fed slowly): only the token's
    sha256 (a verifier) and its file's name appear, never the token."""
    port = free_port()
    token, digest = new_token(program)
    secret = token.read_bytes()
    receiver = subprocess.Popen(receiver_argv(program, port, digest, "--peer", "127.0.0.1"),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    sender = subprocess.Popen(f"(for i in $(seq 20); do echo chunk $i; sleep 0.05; done) | "
                              f"{sys.executable} {program} send 127.0.0.1 {port} crc32 --token "
                              f"{token} --source 127.0.0.1", shell=True, executable="/bin/bash",
                              stderr=subprocess.PIPE, start_new_session=True)
    seen, samples, relays = [], 0, 0
    try:
        while sender.poll() is None and samples < 2000:
            for cmdline in _command_lines():
                seen += [cmdline] if secret in cmdline else []
                relays += str(program).encode() in cmdline
            samples += 1
        _, err = sender.communicate(timeout=60)
        receiver.communicate(timeout=60)
    finally:
        for proc in (receiver, sender):
            proc.kill()
            proc.wait()
    assert sender.returncode == 0, err
    assert samples > 5 and relays > 0, "the relays were running while sampled"
    assert seen == []


def _command_lines() -> list[bytes]:
    out = []
    for proc in Path("/proc").iterdir():
        try:
            out.append((proc / "cmdline").read_bytes())
        except OSError:
            continue
    return out


def test_a_source_address_not_of_this_host_is_left_to_the_kernel(program: Path) -> None:
    """NAT: the donor's runbook address is not one of its own; it connects from whatever the
    route gives (a receiver with --peer would then say why it turns it away)."""
    ends = run_ends(program, b"via NAT", send_options=("--source", "192.0.2.1"))
    assert ends.sent.returncode == ends.received.returncode == 0, ends.sent.stderr
    assert ends.output == b"via NAT"


def test_a_receiver_that_cannot_write_fails(program: Path, data: bytes) -> None:
    port = free_port()
    token, digest = new_token(program)
    receiver = subprocess.Popen(f"{sys.executable} {program} receive 127.0.0.1 {port} crc32 "
                                f"--token-sha256 {digest} | head -c 10 > /dev/null", shell=True,
                                stderr=subprocess.PIPE, executable="/bin/bash",
                                start_new_session=True)
    try:
        sent = subprocess.run([sys.executable, str(program), "send", "127.0.0.1", str(port),
                               "crc32", "--token", str(token)], input=data, capture_output=True,
                              timeout=60)
        _, err = receiver.communicate(timeout=60)
    finally:  # the whole pipeline, whatever happened
        if receiver.poll() is None:
            os.killpg(receiver.pid, signal.SIGKILL)
        receiver.wait()
    assert b"Broken pipe" in err and b"RESYNC received" not in err
    assert sent.returncode != 0


def test_an_unknown_host_or_a_taken_port_is_a_clear_error(program: Path) -> None:
    token, digest = new_token(program)
    sent = subprocess.run([sys.executable, str(program), "send", "nowhere.invalid", "7", "crc32",
                           "--token", str(token)], input=b"x", capture_output=True, timeout=60)
    assert sent.returncode == 1 and b"resync relay (send nowhere.invalid:7): " in sent.stderr
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        received = subprocess.run(receiver_argv(program, port, digest), capture_output=True,
                                  timeout=60)
    assert received.returncode == 1 and b"Address already in use" in received.stderr
    for role, missing in (("send", "--token"), ("receive", "--token-sha256")):
        done = subprocess.run([sys.executable, str(program), role, "127.0.0.1", "7", "crc32"],
                              capture_output=True, timeout=60)
        assert done.returncode == 1 and f"no {missing}".encode() in done.stderr


def test_the_planned_install_writes_the_program_byte_for_byte(tmp_path: Path) -> None:
    text = relay.install("h").render().replace(relay.PATH, str(tmp_path / "relay.py"))
    subprocess.run(["bash", "-o", "pipefail", "-c", text], check=True)
    assert (tmp_path / "relay.py").read_text() == relay.PROGRAM
    assert oct((tmp_path / "relay.py").stat().st_mode & 0o777) == "0o644"
    assert relay.PATH.endswith(f"-{relay.VERSION}.py") and len(relay.VERSION) == 8
    assert "protocol 2" in relay.PROGRAM.splitlines()[0]


def test_the_program_is_plain_python_3_5() -> None:
    tree = ast.parse(relay.PROGRAM, feature_version=(3, 5))
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert imported <= {"binascii", "errno", "fcntl", "hashlib", "hmac", "os", "socket", "stat", "sys",
                        "time", "zlib", "ipaddress"}, "stdlib only"
    assert not any(isinstance(n, ast.JoinedStr | ast.NamedExpr) for n in ast.walk(tree))
    assert "\t" not in relay.PROGRAM, "the install's <<- strips leading tabs"


def test_a_flood_of_strangers_neither_gets_in_nor_stops_the_receiver(program: Path) -> None:
    """Thousands of connections from another address before the sender: each reason is said
    once (nobody reads the receiver's stderr before it ends: a line each would fill the pipe and
    stop it), with a count at the end."""
    port = free_port()
    token, digest = new_token(program)
    receiver = subprocess.Popen(receiver_argv(program, port, digest, "--peer", DONOR),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        strangers = 0
        while strangers < 3000:
            with connect(port, STRANGER) as stranger:
                stranger.sendall(b"resync-relay 2\n" + b"f" * 64 + b"\n" + b"x" * 100)
                assert refused(stranger)
            strangers += 1
        sent = subprocess.run([sys.executable, str(program), "send", "127.0.0.1", str(port),
                               "crc32", "--token", str(token), "--source", DONOR],
                              input=b"from the donor", capture_output=True, timeout=60)
        out, err = receiver.communicate(timeout=60)
    finally:
        receiver.kill()
        receiver.wait()
    assert sent.returncode == 0 and receiver.returncode == 0, (sent.stderr, err)
    assert out == b"from the donor"
    assert err.count(b"RESYNC rejected peer") == 1
    assert f"RESYNC turned away {strangers} connection(s)".encode() in err


def test_a_loopback_source_is_not_bound_towards_another_address() -> None:
    """Regression: with the donor's address resolving to a loopback address on the donor (Debian
    maps a host's own name to 127.0.1.1; the bench's namespaces), the sender bound it as its
    source and connect() to a non-loopback receiver failed with EINVAL."""
    import ipaddress

    tree = ast.parse(relay.PROGRAM)
    wanted = [n for n in tree.body if isinstance(n, ast.FunctionDef)
              and n.name in ("loopback", "bind_source")]
    space: dict[str, Any] = {"ipaddress": ipaddress, "socket": socket,
                             "opts": {"--source": "127.0.0.1"}}
    exec(compile(ast.Module(body=wanted, type_ignores=[]), "relay", "exec"), space)
    with socket.socket() as far, socket.socket() as near:
        assert space["bind_source"](far, socket.AF_INET, ("10.0.0.9", 1)) is False
        assert space["bind_source"](near, socket.AF_INET, ("127.0.0.2", 1)) is True
        assert near.getsockname()[0] == "127.0.0.1"
