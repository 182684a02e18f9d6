"""The copy relay: one small stdlib-only Python program per end of a stream copy, instead of
`nc` plus a `tee` into a separate hasher.

Each end moves the bytes and checksums them in the same pass: the donor's end reads tar's output
from its stdin, checksums it and sends it over one TCP connection; the recipient's end listens,
checksums what arrives and writes it to tar's stdin. The bytes are copied once per end, as `nc`
copies them; the `tee` into `openssl dgst` copied them twice more and cost 0.4-0.6 of the raw
speed (README, Benchmarks).

The program is shipped with the plan: a planned action writes it on each host as a named,
versioned file (`/tmp/resync-relay-<sha8>.py`, sha8: of its content's sha256), shown in full in
that action, right before the ends that use it (the copy's, and the preflight's bandwidth probe's);
each end is then a one-line command naming it, and the same name means the same program. Nothing
is downloaded or installed from anywhere: python3 is on every Debian host (preflight checks it).
It holds no secret: the journal records it like any command.
"""

from __future__ import annotations

import hashlib
import re

from resync.actions.quoting import q
from resync.actions.types import Shell

# Why CRC-32 on plaintext TCP (the stream method): what it must catch is a stream that arrived
# different from what tar wrote: cut short (an end killed, a connection reset: the byte counts
# differ, whatever the checksum) or bytes damaged where TCP's own 16-bit sum misses them (a NIC,
# a driver, a middlebox rewriting them with a fixed-up sum). CRC-32 detects every error burst up
# to 32 bits and any other damage but for a 2**-32 chance; the counts catch every truncation.
# What it does not stop is a deliberate forger on the wire (CRC-32 is linear: one can rewrite
# bytes and keep it): no unkeyed checksum would, for the stream is plaintext anyway, so the
# stream method is for trusted networks only and `copy.method: ssh` (AEAD) is the answer there.
# Cost (1 MiB chunks, one core of the 2-core EPYC the bench runs on, 2026-12): zlib.crc32
# 2.6-3.4 GB/s, hashlib.sha256 1.4-1.5 GB/s (SHA-NI; a CPU without it: ~0.4), blake2b 0.4, md5
# 0.37. Where the two ends share the cores with both tars, every pass counts (bench/copy_bench.py,
# resync/raw `tar | nc`): CRC-32 1.08-1.20 on loopback and 0.98-1.16 on a 4 Gbit/s link (the
# relay's big buffers beat nc's), SHA-256 0.99 and 0.93. sha256 stays available (CopySpec.digest).
DIGESTS = ("crc32", "sha256")

PROGRAM = '''\
# resync copy relay, protocol 1: one end of a datadir copy. It moves the tar stream between a pipe
# and one TCP connection, counting and checksumming every byte in the same pass. Python 3.5+ stdlib.
#   send HOST PORT DIGEST      stdin (tar -c) -> connects to HOST:PORT                (the donor)
#   receive HOST PORT DIGEST   listens on HOST:PORT, one relay peer -> stdout (tar -x) (the recipient)
# Last line on stderr: RESYNC sent|received bytes=N DIGEST=HEX. The receiver also answers its count
# and checksum back over the connection: a sender that reads another answer fails.
import fcntl, hashlib, os, socket, sys, time, zlib
HELLO, CHUNK = b"resync-relay 1\\n", 1 << 20
role, host, port, digest = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]

class Crc32:
    value = 0
    def update(self, data):
        self.value = zlib.crc32(data, self.value)
    def hexdigest(self):
        return "%08x" % self.value

check = Crc32() if digest == "crc32" else hashlib.new(digest)

def report(total):
    print("RESYNC %s bytes=%d %s=%s" % ("sent" if role == "send" else "received", total, digest,
                                        check.hexdigest()), file=sys.stderr)

def fail(why):
    sys.exit("resync relay (%s %s:%d): %s" % (role, host, port, why))

def read_exactly(sock, n):  # n bytes, or fewer at the end of the stream
    data = b""
    while len(data) < n:
        part = sock.recv(n - len(data))
        if not part:
            break
        data += part
    return data

def big_pipe(fd):  # a 1 MiB pipe to tar: fewer, larger reads and writes (a file: no matter)
    try:
        fcntl.fcntl(fd, 1031, CHUNK)  # F_SETPIPE_SZ
    except OSError:
        pass

def send():
    deadline = time.monotonic() + 30
    while True:
        try:
            sock = socket.create_connection((host, port))
            break
        except ConnectionRefusedError:  # the receiver is not listening yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
    sock.sendall(HELLO)
    big_pipe(0)
    buf, total = memoryview(bytearray(CHUNK)), 0
    while True:
        n = os.readv(0, [buf])
        if not n:
            break
        check.update(buf[:n])
        sock.sendall(buf[:n])
        total += n
    sock.shutdown(socket.SHUT_WR)
    answer = read_exactly(sock, 200).split()
    report(total)
    if answer != [b"%d" % total, check.hexdigest().encode()]:
        fail("the receiver answered %r" % b" ".join(answer))

def receive():
    family, kind, proto, _, address = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    server = socket.socket(family, kind, proto)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(address)
    server.listen(8)
    while True:  # anything else that connects (a port scan) is turned away
        sock, peer = server.accept()
        sock.settimeout(10)
        try:
            if read_exactly(sock, len(HELLO)) == HELLO:
                break
        except OSError:
            pass
        sock.close()
        print("resync relay: turned away %s: not a resync relay" % (peer,), file=sys.stderr)
    server.close()
    sock.settimeout(None)
    big_pipe(1)
    buf, total = memoryview(bytearray(CHUNK)), 0
    while True:
        n = sock.recv_into(buf, CHUNK, socket.MSG_WAITALL)
        if not n:
            break
        check.update(buf[:n])
        view = buf[:n]
        while view:
            view = view[os.write(1, view):]
        total += n
    os.close(1)  # tar sees the end of its archive
    report(total)
    sock.sendall(b"%d %s\\n" % (total, check.hexdigest().encode()))

try:
    {"send": send, "receive": receive}[role]()
except OSError as exc:
    fail(exc)
'''

VERSION = hashlib.sha256(PROGRAM.encode()).hexdigest()[:8]
PATH = f"/tmp/resync-relay-{VERSION}.py"
_EOF = f"RESYNC_RELAY_{VERSION}"

# the last line each end prints on stderr
REPORT = re.compile(r"^RESYNC (sent|received) bytes=(\d+) (\w+)=([0-9a-f]+)$", re.MULTILINE)


def install(host: str) -> Shell:
    """Write the program on `host` (root's file, 0644, in the sticky /tmp: nobody else can swap
    it; `install` replaces whatever was at that name, a link included). The here-document's lines
    are indented with a tab, which `<<-` strips: the plan shows the program as a block under its
    command."""
    body = "".join(f"\t{line}\n" for line in PROGRAM.splitlines())
    return Shell.line(host, f"install -m 0644 /dev/stdin {PATH} <<-'{_EOF}'\n{body}\t{_EOF}",
                      privileged=True)


def relay(role: str, address: str, port: int, digest: str) -> str:
    """The command line of one end: `send` (stdin -> TCP) or `receive` (TCP -> stdout)."""
    if digest not in DIGESTS:
        raise ValueError(f"relay digest '{digest}': one of {', '.join(DIGESTS)}")
    return f"python3 {PATH} {role} {q(address)} {port} {digest}"
