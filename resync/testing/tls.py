"""Certificates for sandbox servers (tests and demos only): a CA and, per server, a certificate
it signs for the server's address, made with the openssl command line.

`Sandbox(tls=True)` calls `server_options` for each server while it writes its my.cnf: the CA is
made once under <root>/tls, each server gets <root>/tls/<name>-cert.pem and -key.pem (the key
readable by root and group mysql only). The certificate names the server's address, 127.0.0.1 and localhost
as subjectAltName, so that a client verifying the host name (MASTER_SSL_VERIFY_SERVER_CERT=1,
pymysql's check_hostname) accepts it. `make_ca` alone makes another CA: one that signed nothing
the servers present (a wrong CA for a test).
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from resync.model.errors import ResyncError

TLS_DIR = "tls"
DAYS = "3650"
# EC P-256 keys: made in milliseconds (an RSA key takes a noticeable fraction of a second)
_NEW_KEY = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")


class CertificateError(ResyncError):
    """openssl could not make a sandbox certificate."""


@dataclass(frozen=True)
class CertificateAuthority:
    cert: Path
    key: Path


@dataclass(frozen=True)
class ServerCertificate:
    ca: Path
    cert: Path
    key: Path


def _openssl(*args: str, what: str) -> None:
    if shutil.which("openssl") is None:
        raise CertificateError("openssl is not installed: apt-get install openssl")
    done = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=60,
                          check=False)
    if done.returncode != 0:
        raise CertificateError(f"openssl ({what}) exited {done.returncode}: "
                               f"{done.stderr.strip()[-500:]}")


def make_ca(directory: Path, name: str = "resync sandbox CA") -> CertificateAuthority:
    """A self-signed CA in `directory` (ca.pem, ca-key.pem 0600); made once, reused after."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    ca = CertificateAuthority(directory / "ca.pem", directory / "ca-key.pem")
    if not ca.cert.exists():
        _openssl("req", "-x509", *_NEW_KEY, "-keyout", str(ca.key), "-out", str(ca.cert),
                 "-days", DAYS, "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", what="the CA")
        ca.key.chmod(0o600)
        ca.cert.chmod(0o644)
    return ca


def _subject_alt_names(names: tuple[str, ...]) -> str:
    entries = []
    for name in dict.fromkeys(names):
        try:
            ipaddress.ip_address(name)
            entries.append(f"IP:{name}")
        except ValueError:
            entries.append(f"DNS:{name}")
    return ",".join(entries)


def server_certificate(ca: CertificateAuthority, directory: Path, name: str,
                       addresses: tuple[str, ...]) -> ServerCertificate:
    """A certificate for server `name`, signed by `ca`, valid for `addresses` (and 127.0.0.1,
    localhost); its key is owned by root, group mysql, 0640 (mariadbd reads it as mysql)."""
    out = ServerCertificate(ca.cert, directory / f"{name}-cert.pem", directory / f"{name}-key.pem")
    csr, ext = directory / f"{name}.csr", directory / f"{name}.ext"
    ext.write_text("subjectAltName=" + _subject_alt_names((*addresses, "127.0.0.1", "localhost"))
                   + "\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n")
    _openssl("req", *_NEW_KEY, "-keyout", str(out.key), "-out", str(csr), "-subj", f"/CN={name}",
             what=f"the key of {name}")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
             "-CAcreateserial", "-out", str(out.cert), "-days", DAYS, "-extfile", str(ext),
             what=f"the certificate of {name}")
    csr.unlink()
    ext.unlink()
    shutil.chown(out.key, "root", "mysql")
    out.key.chmod(0o640)
    out.cert.chmod(0o644)
    return out


def server_options(root: Path, name: str, address: str) -> str:
    """The my.cnf lines that make server `name` offer TLS with a certificate of the sandbox CA
    (made under <root>/tls on the first call). performance_schema is on (~100 MB a server) so
    that a test can see which connections are encrypted: MariaDB tells another session's TLS only
    there (threads.CONNECTION_TYPE 'SSL/TLS', status_by_thread Ssl_cipher)."""
    directory = root / TLS_DIR
    ca = make_ca(directory)
    cert = server_certificate(ca, directory, name, (address,))
    return f"performance_schema=ON\nssl-ca={cert.ca}\nssl-cert={cert.cert}\nssl-key={cert.key}\n"


def sandbox_ca(root: Path) -> Path:
    """The CA certificate of a TLS sandbox under `root` (the runbooks' `ca:`)."""
    return root / TLS_DIR / "ca.pem"
