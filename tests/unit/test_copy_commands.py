"""Which stream tools the copy picks, and that both ends always hash what they carry."""

from __future__ import annotations

import pytest

from resync.model.errors import ResyncError
from resync.steps.copy.commands import (
    CONNECTORS,
    LISTENERS,
    CopySpec,
    excludes_for,
    pick,
    receiver,
    sender,
)


def spec(**overrides: object) -> CopySpec:
    base = CopySpec(donor="d", recipient="r", donor_datadir="/d", recipient_datadir="/r",
                    listen_address="10.0.0.2", port=7878, owner="mysql:mysql",
                    excludes=excludes_for("mariadb"))
    return CopySpec(**{**base.__dict__, **overrides})  # type: ignore[arg-type]


@pytest.mark.parametrize(("available", "wanted", "expected"), [
    ({"nc-openbsd", "socat", "bash-tcp"}, LISTENERS, "nc-openbsd"),
    ({"socat", "bash-tcp"}, LISTENERS, "socat"),
    ({"bash-tcp"}, CONNECTORS, "bash-tcp"),
])
def test_pick_prefers_openbsd_nc_then_socat_then_bash(available: set[str],
                                                      wanted: tuple[str, ...], expected: str) -> None:
    assert pick(available, wanted, "h", "receive") == expected


def test_no_listener_is_a_clear_error() -> None:
    with pytest.raises(ResyncError, match="apt-get install netcat-openbsd"):
        pick({"bash-tcp"}, LISTENERS, "db2", "receive")


@pytest.mark.parametrize("overrides", [
    {}, {"listener": "socat", "connector": "bash-tcp"}, {"compress": "zstd"},
    {"rate_limit_mb_per_s": 50.0},
])
def test_stream_ends_hash_and_count(overrides: dict[str, object]) -> None:
    s = spec(**overrides)
    recv, send = receiver(s), sender(s)
    assert recv is not None
    for end in (recv.render(), send.render()):
        assert "openssl dgst -sha256" in end and "--totals" in end
    assert "RESYNC received sha256" in recv.render() and "RESYNC sent sha256" in send.render()
    assert "nc -N" in send.render() or "socat" in send.render() or "/dev/tcp/" in send.render()


def test_ssh_method_has_no_listener_and_runs_the_receiving_half_remotely() -> None:
    s = spec(method="ssh", ssh_target="admin@10.0.0.2", ssh_options=("-i", "/k"), ssh_sudo=True)
    assert receiver(s) is None
    line = sender(s).render()
    assert "ssh -o BatchMode=yes -c aes128-gcm@openssh.com -i /k admin@10.0.0.2" in line
    assert "sudo -n bash -c" in line and "RESYNC received sha256" in line
