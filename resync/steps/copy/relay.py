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

Only the donor feeds the stream (protocol 2). The receiver lets in one connection, from the
donor's runbook address (resolved on the recipient; the sender binds that address as its source
where it is one of the donor's own) presenting the run's token; any other is logged on stderr
(`RESYNC rejected peer <ip>: why`) and dropped, and it listens on until its listen timeout. The
token is born on the donor, as the hot copy's one-time password is: a planned action runs the
program's `token` role there (as root), which writes 32 random bytes (hex) into a 0600 file of a
0700 directory under /run and prints only their sha256. That hash, a verifier and no secret, is
captured and handed to the receiver on its command line; the sender reads the token from its file
(named by the hash) and deletes it. So the token itself is never in a command line, the journal
or the plan, never crosses the controller, and the recipient holds nothing it could replay. It
crosses the wire in clear, as the data does (the stream method is for trusted networks): what it
stops is a stray or spoofed client connecting first, not an eavesdropper on the path. A new token
is made for every attempt, and the receiver takes a single sender.
"""

from __future__ import annotations

import hashlib
import re

from resync.actions.quoting import q
from resync.actions.types import Ref, Shell
from resync.model.keys import Key

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
# resync copy relay, protocol 2: one end of a datadir copy. It moves the tar stream between a pipe
# and one TCP connection, counting and checksumming every byte in the same pass. Python 3.5+ stdlib.
#   token DIR                   a new one-time token in DIR/<its sha256> (0600; DIR 0700): prints the sha256
#   send HOST PORT DIGEST --token FILE [--source ADDRESS]
#       stdin (tar -c) -> connects to HOST:PORT, from ADDRESS where it is one of this host's (the donor)
#   receive HOST PORT DIGEST --token-sha256 HEX [--peer ADDRESS] [--timeout SECONDS]
#       listens on HOST:PORT, one relay peer -> stdout (tar -x)                         (the recipient)
# The receiver lets in one connection: from ADDRESS (as resolved here), presenting the token whose
# sha256 it was given. Any other is logged (RESYNC rejected peer IP: why) and dropped, and it listens
# on, for SECONDS at most. The sender reads the token from FILE and deletes it: it serves once.
# Last line on stderr: RESYNC sent|received bytes=N DIGEST=HEX. The receiver also answers its count
# and checksum back over the connection: a sender that reads another answer fails.
import binascii, errno, fcntl, hashlib, hmac, ipaddress, os, socket, stat, sys, time, zlib
HELLO, CHUNK, TOKEN_CHARS = b"resync-relay 2\\n", 1 << 20, 64
TURNED_AWAY = ("the receiver turns away a peer that is not the donor or lacks the run's token "
               "(its log says RESYNC rejected peer)")
role, host = sys.argv[1], sys.argv[2]
port, digest = (0, "") if role == "token" else (int(sys.argv[3]), sys.argv[4])
opts = dict(zip(sys.argv[5::2], sys.argv[6::2]))

class Crc32:
    value = 0
    def update(self, data):
        self.value = zlib.crc32(data, self.value)
    def hexdigest(self):
        return "%08x" % self.value

check = Crc32() if digest == "crc32" else hashlib.new(digest) if digest else None

def report(total):
    print("RESYNC %s bytes=%d %s=%s" % ("sent" if role == "send" else "received", total, digest,
                                        check.hexdigest()), file=sys.stderr)

def fail(why):
    sys.exit("resync relay (%s %s): %s" % (role, host if role == "token" else "%s:%d" % (host, port),
                                           why))

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

def token():  # host: the directory, root's and private; a file per token, named by its sha256
    try:
        os.mkdir(host, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(host)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid():
        fail("not a directory of this user's")
    os.chmod(host, 0o700)
    for name in os.listdir(host):  # the tokens of ends that never started (a day old)
        try:
            if time.time() - os.lstat(os.path.join(host, name)).st_mtime > 86400:
                os.unlink(os.path.join(host, name))
        except OSError:
            pass
    secret = binascii.hexlify(os.urandom(TOKEN_CHARS // 2))
    name = hashlib.sha256(secret).hexdigest()
    fd = os.open(os.path.join(host, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(secret)
    print(name)

def read_token(path):
    with open(path, "rb") as f:
        secret = f.read(TOKEN_CHARS + 1).strip()
    os.unlink(path)  # used once
    if len(secret) != TOKEN_CHARS or hashlib.sha256(secret).hexdigest() != os.path.basename(path):
        fail("%s is not a relay token" % path)
    return secret

def loopback(address):
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False

def bind_source(sock, family, target):  # the donor's own address, where it is one of this host's
    # (NAT: not). Never a loopback source towards another host: Debian maps a host's own name
    # to 127.0.1.1, and a socket bound there cannot reach another machine (EINVAL)
    try:
        for info in socket.getaddrinfo(opts["--source"], 0, family, socket.SOCK_STREAM):
            if loopback(info[4][0]) and not loopback(target[0]):
                continue
            try:
                sock.bind(info[4])
                return True
            except OSError:
                pass
    except socket.gaierror:
        pass
    return False

def connect():
    family, kind, proto, _, address = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    deadline = time.monotonic() + 30
    bind = "--source" in opts
    while True:
        sock = socket.socket(family, kind, proto)
        bound = bind and bind_source(sock, family, address)
        try:
            sock.connect(address)
            return sock
        except ConnectionRefusedError:  # the receiver is not listening yet
            sock.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
        except OSError as exc:  # the source cannot reach it: let the kernel choose, once
            sock.close()
            if not bound or exc.errno not in (errno.EINVAL, errno.EADDRNOTAVAIL, errno.ENETUNREACH):
                raise
            bind = False

def send():
    if "--token" not in opts:
        fail("no --token")
    secret = read_token(opts["--token"])
    sock = connect()
    sock.sendall(HELLO + secret + b"\\n")
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
    if not answer:
        fail("the receiver closed the connection without its count and checksum: it failed, or "
             + TURNED_AWAY)
    if answer != [b"%d" % total, check.hexdigest().encode()]:
        fail("the receiver answered %r" % b" ".join(answer))

def normal(ip):  # an IPv4 peer of an IPv6 listener: ::ffff:a.b.c.d
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip

def rejected(sock, ip, donors, expected):  # why this is not the sender (None: it is)
    if donors is not None and ip not in donors:
        return "not the donor's address (%s)" % opts["--peer"]
    sock.settimeout(5)
    try:
        if read_exactly(sock, len(HELLO)) != HELLO:
            return "not a resync relay of protocol 2"
        presented = read_exactly(sock, TOKEN_CHARS + 1)
    except OSError:
        return "no greeting within 5 s"
    if not (presented.endswith(b"\\n") and hmac.compare_digest(
            hashlib.sha256(presented[:-1]).hexdigest().encode(), expected)):
        return "wrong or missing token"
    return None

def turned_away(seen, ip, why):  # each peer and reason said once (a flood must not fill stderr,
    key = (ip, why)                  # which nobody reads before the end)
    seen[key] = seen.get(key, 0) + 1
    if seen[key] == 1 and len(seen) <= 20:
        print("RESYNC rejected peer %s: %s" % key, file=sys.stderr, flush=True)

def receive():
    expected = opts.get("--token-sha256", "").encode()
    if len(expected) != 64:
        fail("no --token-sha256")
    donors = None
    if "--peer" in opts:
        donors = set(normal(info[4][0]) for info in
                     socket.getaddrinfo(opts["--peer"], None, 0, socket.SOCK_STREAM))
    family, kind, proto, _, address = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)[0]
    server = socket.socket(family, kind, proto)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(address)
    server.listen(8)
    limit, seen = float(opts.get("--timeout", "30")), {}
    deadline = time.monotonic() + limit
    while True:  # anything else that connects (a port scan, a stray client) is turned away
        if time.monotonic() >= deadline:
            fail("no sender from %s with the run's token within %gs (%d other connection(s) "
                 "turned away)" % (opts.get("--peer", "any address"), limit, sum(seen.values())))
        server.settimeout(deadline - time.monotonic())
        try:
            sock, peer = server.accept()
        except socket.timeout:
            continue
        ip = normal(peer[0])
        why = rejected(sock, ip, donors, expected)
        if why is None:
            break
        sock.close()
        turned_away(seen, ip, why)
    server.close()
    if seen:
        print("RESYNC turned away %d connection(s)" % sum(seen.values()), file=sys.stderr)
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
    {"token": token, "send": send, "receive": receive}[role]()
except (ConnectionResetError, BrokenPipeError) as exc:
    fail("%s; %s" % (exc, TURNED_AWAY) if role == "send" else exc)
except OSError as exc:
    fail(exc)
'''

VERSION = hashlib.sha256(PROGRAM.encode()).hexdigest()[:8]
PATH = f"/tmp/resync-relay-{VERSION}.py"
_EOF = f"RESYNC_RELAY_{VERSION}"
TOKEN_DIR = "/run/resync-relay"  # root's, 0700: the donor's one-time tokens, a file each
# the verifier (no secret) of the copy's token, and of the preflight's bandwidth probe's: a run's
# values are captured once each (the journal's plan is filled with them)
TOKEN_SHA256 = Key("copy.token_sha256")
PROBE_TOKEN_SHA256 = Key("probe.token_sha256")

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


def new_token(host: str, into: Key = TOKEN_SHA256) -> Shell:
    """On the donor: a fresh one-time token in its 0600 file; only its sha256 is printed (captured
    `into`: the receiver checks what the sender presents against it)."""
    return Shell.line(host, f"python3 {PATH} token {TOKEN_DIR}", privileged=True, into=into)


def _head(role: str, address: str, port: int, digest: str) -> str:
    if digest not in DIGESTS:
        raise ValueError(f"relay digest '{digest}': one of {', '.join(DIGESTS)}")
    return f"python3 {PATH} {role} {q(address)} {port} {digest}"


def receive(address: str, port: int, digest: str, *, peer: str, timeout: float,
            token: Key = TOKEN_SHA256) -> tuple[str | Ref, ...]:
    """The recipient's end (TCP -> stdout): it lets in only `peer` with the token `token` is the
    sha256 of."""
    return (_head("receive", address, port, digest) + " --token-sha256 ", Ref(token),
            (f" --peer {q(peer)}" if peer else "") + f" --timeout {timeout:g}")


def send(address: str, port: int, digest: str, *, source: str,
         token: Key = TOKEN_SHA256) -> tuple[str | Ref, ...]:
    """The donor's end (stdin -> TCP): it presents the token of `new_token` (and uses it up),
    from the donor's own address `source` where it can."""
    return (_head("send", address, port, digest) + f" --token {TOKEN_DIR}/", Ref(token),
            f" --source {q(source)}" if source else "")
