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
    return CopySpec(**{**base.__dict__, **overrides})


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


# -- addresses are shell-quoted (a runbook's address is data, never shell code) -------------------

ODD_ADDRESS = "db-1.example.internal; touch /tmp/pwned"


@pytest.mark.parametrize("address", ["10.0.0.2", "fd00::2", "db1.example.internal", ODD_ADDRESS])
def test_stream_tools_quote_the_address(address: str) -> None:
    import shlex

    from resync.steps.copy.commands import connect, listen

    host = f"[{address}]" if ":" in address else address  # socat reads host:port
    assert shlex.split(listen("socat", address, 7878)) == [
        "socat", "-u", f"TCP-LISTEN:7878,bind={host},reuseaddr", "STDOUT"]
    assert shlex.split(connect("socat", address, 7878)) == [
        "socat", "-u", "STDIN", f"TCP:{host}:7878"]
    assert shlex.split(connect("bash-tcp", address, 7878)) == ["cat", ">", f"/dev/tcp/{address}/7878"]
    assert shlex.split(listen("nc-openbsd", address, 7878)) == ["nc", "-d", "-l", address, "7878"]
    assert shlex.split(connect("nc-openbsd", address, 7878)) == ["nc", "-N", address, "7878"]


def test_an_odd_address_stays_one_word_in_the_whole_copy_pipeline() -> None:
    s = spec(listen_address=ODD_ADDRESS, listener="socat", connector="bash-tcp")
    recv = receiver(s)
    assert recv is not None
    assert f"'TCP-LISTEN:7878,bind={ODD_ADDRESS},reuseaddr'" in recv.render()
    assert f"'/dev/tcp/{ODD_ADDRESS}/7878'" in sender(s).render()


def test_socat_brackets_an_ipv6_address() -> None:
    from resync.steps.copy.commands import connect, listen

    assert "TCP:[fd00::2]:7878" in connect("socat", "fd00::2", 7878)
    assert "bind=[fd00::2]" in listen("socat", "fd00::2", 7878)


def test_ssh_reachability_probe_captures_into_the_key() -> None:
    import shlex

    from resync.model.keys import Key
    from resync.steps.copy.commands import ssh_reachability

    s = spec(method="ssh", ssh_target="admin@db 1", ssh_options=("-i", "/k k"))
    probe = ssh_reachability(s, Key("preflight.d.ssh_probe"))
    assert (probe.host, probe.into, probe.check, probe.privileged) == (
        "d", Key("preflight.d.ssh_probe"), False, True)
    words = shlex.split(probe.render())
    assert words[:9] == ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-i", "/k k",
                         "admin@db 1", "true"]
    assert probe.render().endswith("2>&1 && echo RESYNC-SSH-OK")
